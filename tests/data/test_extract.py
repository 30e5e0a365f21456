"""Cutout extraction from coadd tiles, one task per brick: real FITS tiles written with astropy, stamps checked
against the tile arrays sliced by hand and against :func:`cutout_from_tiles`, each brick's tiles read once,
per-object errors recorded, reruns skipping finished bricks, and a Dask LocalCluster giving the same bytes."""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from hypothesis import given, settings
from hypothesis import strategies as st

from lenslib.cli import main
from lenslib.data import coadd
from lenslib.data.cutouts import load_cutout, save_cutout
from lenslib.data.extract import ExtractError, extract_cutouts
from lenslib.data.storage import open_store
from lenslib.parallel import LocalExecutor

NPIX, SCALE = 240, 0.262 / 3600
# brick → (tile centre ra, dec, bands written); "1503p020" has no z tile and an invvar hole in r
BRICKS = {"1500p020": (150.00, 2.0, "grz"), "1501p020": (150.03, 2.0, "grz"), "1503p020": (150.06, 2.0, "gr")}
HOLE = (slice(100, 104), slice(110, 115))  # (rows, columns) of the r tile of 1503p020 with invvar = 0
HALF_BOX = 0.0075  # the brick list's boxes: ±0.0075 deg around the tile centre (the tile is ±0.0087)


def _wcs(ra0: float, dec0: float) -> WCS:
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra0, dec0]
    w.wcs.crpix = [NPIX / 2 + 1, NPIX / 2 + 1]
    w.wcs.cd = np.array([[-SCALE, 0], [0, SCALE]])
    return w


def _tile(k: int, b: int) -> np.ndarray:
    """Pixel values that encode (brick, band, row, column)."""
    yy, xx = np.mgrid[:NPIX, :NPIX]
    return (1e6 * k + 1e5 * b + yy * NPIX + xx).astype(np.float32)


def _write_tiles(root: Path) -> None:
    for k, (brick, (ra0, dec0, bands)) in enumerate(BRICKS.items()):
        hdr = _wcs(ra0, dec0).to_header()
        d = root / brick
        d.mkdir(parents=True, exist_ok=True)
        for b, band in enumerate("grz"):
            if band not in bands:
                continue
            ivar = np.ones((NPIX, NPIX), np.float32)
            if brick == "1503p020" and band == "r":
                ivar[HOLE] = 0
            fits.PrimaryHDU(_tile(k, b), header=hdr).writeto(d / f"legacysurvey-{brick}-image-{band}.fits")
            fits.PrimaryHDU(ivar, header=hdr).writeto(d / f"legacysurvey-{brick}-invvar-{band}.fits")


def _brick_table() -> pd.DataFrame:
    names = list(BRICKS)
    ra = np.array([BRICKS[n][0] for n in names])
    dec = np.array([BRICKS[n][1] for n in names])
    return pd.DataFrame({"brickname": names, "ra1": ra - HALF_BOX, "ra2": ra + HALF_BOX,
                         "dec1": dec - HALF_BOX, "dec2": dec + HALF_BOX})


def _write_brick_fits(path: Path) -> Path:
    t = _brick_table()
    cols = [fits.Column("BRICKNAME", "8A", array=list(t["brickname"]))]
    cols += [fits.Column(c.upper(), "D", array=t[c].to_numpy()) for c in ("ra1", "ra2", "dec1", "dec2")]
    fits.BinTableHDU.from_columns(cols).writeto(path)
    return path


def _positions() -> pd.DataFrame:
    """Objects in every brick (brick given or left to the brick list), an edge one, and four that fail."""
    rows = []
    for brick, (ra0, dec0, _) in BRICKS.items():
        for j, (dx, dy) in enumerate([(0.0, 0.0), (0.002, -0.001), (-0.004, 0.003)]):
            rows.append((f"{brick}_{j}", ra0 + dx, dec0 + dy, brick if j != 1 else None))
    rows += [("edge_0", 150.0 + 0.0070, 2.0, None),  # 24 px from the tile's edge: a quarter of the stamp off it
             ("nowhere", 10.0, -5.0, None),  # in no brick of the list
             ("unknown", 150.0, 2.0, "0000p000"),  # a brick without tiles
             ("outside", 150.5, 2.0, "1500p020"),  # far outside the brick's tile
             ("bad_brick", 150.0, 2.0, "../etc")]
    df = pd.DataFrame(rows, columns=["id", "ra", "dec", "brick"])
    return df.sample(frac=1.0, random_state=3).reset_index(drop=True)  # bricks interleaved


@pytest.fixture(scope="module")
def tiles(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("coadd")
    _write_tiles(root)
    return root


@pytest.fixture(scope="module")
def local_run(tiles, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("local")
    extract_cutouts(open_store(str(tiles)), _positions(), out, bricks=_brick_table(), progress=False)
    return out


class CountingReader:
    """A read(key) function that counts the reads of every key that exists."""

    def __init__(self, root: Path):
        self.store, self.counts = open_store(str(root)), {}

    def __call__(self, key: str) -> bytes:
        data = self.store.read_bytes(key)
        self.counts[key] = self.counts.get(key, 0) + 1
        return data


def _expected_stamp(brick: str, ra: float, dec: float) -> tuple[np.ndarray, np.ndarray]:
    """The stamp sliced by hand from the arrays written, at astropy's pixel of (ra, dec), NaN outside the tile
    and where invvar = 0; and the (101, 101) mask of its pixels inside the tile."""
    k = list(BRICKS).index(brick)
    ra0, dec0, bands = BRICKS[brick]
    x, y = _wcs(ra0, dec0).all_world2pix([[ra, dec]], 0)[0]
    xc, yc = int(round(float(x))), int(round(float(y)))
    out = np.full((3, 101, 101), np.nan, np.float32)
    inside = np.zeros((101, 101), bool)
    for b, band in enumerate("grz"):
        if band not in bands:
            continue
        tile = _tile(k, b)
        if brick == "1503p020" and band == "r":
            tile[HOLE] = np.nan
        for i in range(101):
            for j in range(101):
                r, c = yc - 50 + i, xc - 50 + j
                if 0 <= r < NPIX and 0 <= c < NPIX:
                    out[b, i, j] = tile[r, c]
                    inside[i, j] = True
    return out, inside


def test_stamps_equal_the_tiles_and_cutout_from_tiles_rows_in_input_order(tiles, local_run):
    pos = _positions()
    res = pd.read_parquet(local_run / "extracted.parquet")
    assert res["id"].tolist() == pos["id"].tolist()
    assert res["ra"].tolist() == pos["ra"].tolist() and res["dec"].tolist() == pos["dec"].tolist()
    ok = res[res["error"].isna()]
    assert len(ok) == 10  # 3 × 3 objects and the edge one
    reader = open_store(str(tiles)).read_bytes
    table = _brick_table()
    for r in ok.itertuples():
        box = table[table["brickname"] == r.brick].iloc[0]
        assert box.ra1 <= r.ra < box.ra2 and box.dec1 <= r.dec < box.dec2  # the brick found or given
        cut = load_cutout(local_run / r.path)
        want, inside = _expected_stamp(r.brick, r.ra, r.dec)
        np.testing.assert_array_equal(cut.image, want)
        ref = coadd.cutout_from_tiles(reader, r.brick, r.ra, r.dec)
        np.testing.assert_array_equal(cut.image, ref.image)
        assert r.missing_bands == ",".join(ref.flags["missing_bands"]) and r.edge == ref.flags["edge"]
        assert (r.centre_x, r.centre_y) == ref.flags["centre_pixel"]
        for b, band in enumerate("grz"):
            masked = getattr(r, f"masked_{band}")
            if band in BRICKS[r.brick][2]:
                assert masked == int(np.isnan(want[b][inside]).sum())
            else:
                assert pd.isna(masked)
        assert cut.meta["galaxy_id"] == r.id and cut.meta["brickname"] == r.brick
        assert cut.meta["ra"] == r.ra and cut.meta["dec"] == r.dec
        assert [cut.meta[f"nan_count_{b}"] for b in "grz"] == [int(np.isnan(want[b]).sum()) for b in range(3)]
    hole = ok[ok["brick"] == "1503p020"]
    assert (hole["missing_bands"] == "z").all() and (hole["masked_r"] > 0).any()
    edge = ok[ok["id"] == "edge_0"].iloc[0]
    assert edge.edge and edge.masked_g == 0 and np.isnan(load_cutout(local_run / edge.path).image).any()
    assert not res[res["id"] == "1500p020_0"].iloc[0].edge


def test_the_cutout_file_has_the_layout_load_cutout_reads(local_run):
    res = pd.read_parquet(local_run / "extracted.parquet")
    path = local_run / res.dropna(subset=["path"])["path"].iloc[0]
    with zipfile.ZipFile(path) as zf:  # read back with zipfile and numpy's format reader, not np.load
        names = set(zf.namelist())
        assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in zf.infolist())
        raw = np.lib.format.read_array(io.BytesIO(zf.read("cutout.npy")))
        galaxy = np.lib.format.read_array(io.BytesIO(zf.read("meta_galaxy_id.npy")))
    assert "cutout.npy" in names and all(n.startswith("meta_") for n in names - {"cutout.npy"})
    assert raw.dtype == np.float32 and raw.shape == (101, 101, 3)  # HWC on disk
    assert galaxy.ndim == 0 and str(galaxy) == path.stem
    np.testing.assert_array_equal(load_cutout(path).image, raw.transpose(2, 0, 1))


def test_failures_are_recorded_per_object_with_a_clear_message(tiles, local_run):
    res = pd.read_parquet(local_run / "extracted.parquet").set_index("id")
    assert "no brick contains ra=10.000000, dec=-5.000000" in res.loc["nowhere", "error"]
    assert "brick 0000p000: no image tile in any band" in res.loc["unknown", "error"]
    assert f"under {tiles} (an unknown brick" in res.loc["unknown", "error"]
    assert "lies outside brick 1500p020" in res.loc["outside", "error"]
    assert "unknown brick '../etc'" in res.loc["bad_brick", "error"]
    failed = res.loc[["nowhere", "unknown", "outside", "bad_brick"]]
    assert failed["path"].isna().all() and failed["edge"].isna().all()
    assert sorted(p.stem for p in (local_run / "shards").iterdir()) == sorted([*BRICKS, "0000p000"])
    assert sorted(p.name for p in (local_run / "cutouts").rglob("*.npz")) == \
        sorted(f"{i}.npz" for i in res.index[res["error"].isna()])


def test_each_brick_reads_its_tiles_once(tiles, tmp_path):
    reader = CountingReader(tiles)
    extract_cutouts(reader, _positions(), tmp_path, bricks=_brick_table(), progress=False)
    assert reader.counts and max(reader.counts.values()) == 1
    images = {k for k in reader.counts if "-image-" in k}
    assert images == {f"{b}/legacysurvey-{b}-image-{band}.fits" for b, (_, _, bands) in BRICKS.items()
                      for band in bands}


def test_a_rerun_skips_the_finished_bricks(tiles, local_run, tmp_path):
    extract_cutouts(open_store(str(tiles)), _positions(), tmp_path, bricks=_brick_table(), progress=False)
    files = sorted(p for p in tmp_path.rglob("*") if p.is_file() and p.name != "extracted.parquet")
    stamps = {p: p.stat().st_mtime_ns for p in files}
    victim = tmp_path / "shards" / "1501p020.parquet"
    victim.unlink()
    reader = CountingReader(tiles)
    extract_cutouts(reader, _positions(), tmp_path, bricks=_brick_table(), progress=False)
    assert {k.split("/")[0] for k in reader.counts} == {"1501p020"}  # only the brick without a shard was read
    redone = {p for p in files if p.exists() and p.stat().st_mtime_ns != stamps[p]}
    assert redone == {victim} | {p for p in files if p.parts[-2] == "1501p020" and p.suffix == ".npz"}
    assert victim.exists()
    assert (tmp_path / "extracted.parquet").read_bytes() == (local_run / "extracted.parquet").read_bytes()
    again = CountingReader(tiles)
    extract_cutouts(again, _positions(), tmp_path, bricks=_brick_table(), progress=False)
    assert again.counts == {}  # nothing left to do
    moved = _positions()
    moved.loc[moved["id"] == "1500p020_0", "ra"] += 0.001  # a changed position redoes its brick only
    changed = CountingReader(tiles)
    extract_cutouts(changed, moved, tmp_path, bricks=_brick_table(), progress=False)
    assert {k.split("/")[0] for k in changed.counts} == {"1500p020"}


def test_bad_inputs_are_refused_naming_the_parameter(tiles, tmp_path):
    store = open_store(str(tiles))
    pos = _positions()
    with pytest.raises(ExtractError, match=r"row \d+ has no brick and parameter 'bricks'"):
        extract_cutouts(store, pos, tmp_path, progress=False)
    with pytest.raises(ExtractError, match=rf"id '{pos['id'][0]}' \(column 'id'\) appears more than once"):
        extract_cutouts(store, pd.concat([pos, pos.iloc[:1]], ignore_index=True), tmp_path, bricks=_brick_table(),
                        progress=False)
    with pytest.raises(ExtractError, match=r"lacks columns \['dec'\]"):
        extract_cutouts(store, pos.drop(columns="dec"), tmp_path, bricks=_brick_table(), progress=False)
    with pytest.raises(ExtractError, match="parameter 'read_or_store' must be"):
        extract_cutouts(42, pos, tmp_path, bricks=_brick_table(), progress=False)

    class FakeDask(LocalExecutor):
        kind = "dask"

    with pytest.raises(ExtractError, match="cannot be sent to Dask workers.*pass the Store or its URI"):
        extract_cutouts(store.read_bytes, pos, tmp_path, bricks=_brick_table(), executor=FakeDask(),
                        progress=False)
    assert not list(tmp_path.iterdir())  # nothing written by a refused call


def test_integer_ids_and_another_stamp_size(tiles, tmp_path):
    pos = _positions()
    one = pos[pos["brick"] == "1501p020"].assign(id=[7, 3])
    df = extract_cutouts(open_store(str(tiles)), one, tmp_path, size=21, progress=False)
    assert df["id"].tolist() == [7, 3] and df["path"].tolist() == ["cutouts/1501p020/7.npz", "cutouts/1501p020/3.npz"]
    assert pd.read_parquet(tmp_path / "extracted.parquet")["id"].dtype == np.int64
    for r in df.itertuples():
        small = load_cutout(tmp_path / r.path, size=21).image
        np.testing.assert_array_equal(small, _expected_stamp(r.brick, r.ra, r.dec)[0][:, 40:61, 40:61])
    reader = CountingReader(tiles)
    extract_cutouts(reader, one, tmp_path, size=31, progress=False)  # another size: the brick is redone
    assert reader.counts and load_cutout(tmp_path / df["path"][0], size=31).image.shape == (3, 31, 31)


@settings(max_examples=15, deadline=None, derandomize=True, database=None)
@given(st.lists(st.floats(-1e4, 1e4, width=32) | st.just(float("nan")), min_size=27, max_size=27),
       st.text(st.characters(min_codepoint=48, max_codepoint=122), min_size=1, max_size=12))
def test_save_cutout_round_trips_and_always_gives_the_same_bytes(tmp_path_factory, values, ident):
    d = tmp_path_factory.mktemp("w")
    chw = np.resize(np.asarray(values, np.float32), (3, 101, 101))
    save_cutout(d / "a.npz", chw, {"galaxy_id": ident, "ra": 1.5})
    save_cutout(d / "b.npz", chw.copy(), {"galaxy_id": ident, "ra": 1.5})
    assert (d / "a.npz").read_bytes() == (d / "b.npz").read_bytes()
    with zipfile.ZipFile(d / "a.npz") as zf:  # no member carries the time it was written
        assert {i.date_time for i in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    with np.load(d / "a.npz") as z:
        np.testing.assert_array_equal(z["cutout"], chw.transpose(1, 2, 0))
        assert str(z["meta_galaxy_id"]) == ident and float(z["meta_ra"]) == 1.5


def test_the_extract_command(tiles, local_run, tmp_path):
    table = tmp_path / "positions.parquet"
    _positions().to_parquet(table, index=False)
    bricks = _write_brick_fits(tmp_path / "bricks.fits")
    out = tmp_path / "out"
    assert main(["extract", "--positions", str(table), "--tiles", str(tiles), "--bricks", str(bricks),
                 "--out", str(out), "--no-progress"]) == 0
    assert (out / "extracted.parquet").read_bytes() == (local_run / "extracted.parquet").read_bytes()
    assert main(["extract", "--positions", str(tmp_path / "none.csv"), "--tiles", str(tiles),
                 "--out", str(out)]) == 1


@pytest.mark.slow
def test_a_dask_cluster_writes_the_same_bytes(tiles, local_run, tmp_path):
    distributed = pytest.importorskip("distributed")
    from lenslib.parallel import DaskExecutor

    store = open_store(str(tiles))
    with pytest.raises(TypeError):
        pickle.dumps(store)  # the store does not pickle: the workers reopen it from its URI
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=":0") as cluster, \
            DaskExecutor(cluster.scheduler_address, log=lambda *a: None) as ex:
        df = extract_cutouts(store, _positions(), tmp_path, bricks=_brick_table(), executor=ex, progress=False)
        pids = ex.client.run(lambda: __import__("os").getpid())
    assert len(set(pids.values())) == 2 and df["error"].notna().sum() == 4
    assert store.reads == {}  # the tiles were read by the workers' own stores, not by this one
    mine = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    theirs = sorted(p.relative_to(local_run) for p in local_run.rglob("*") if p.is_file())
    assert mine == theirs and len(mine) == 10 + 4 + 1  # cutouts, shards, extracted.parquet
    for rel in mine:
        assert (tmp_path / rel).read_bytes() == (local_run / rel).read_bytes(), rel

"""Catalogues, the HEALPix split, manifests, the cutout Dataset, and cutouts from FITS coadd tiles."""

import hashlib
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from lenslib.data import catalogues, coadd, manifests, spatial
from lenslib.data.cutouts import CutoutDataset, load_cutouts, save_cutout


@pytest.fixture(scope="module")
def desi(shared):
    return catalogues.read_catalogue(shared("catalogs", "desi_candidates.csv"), "desi")


def test_positive_catalogue_tiers_and_dedup(desi, shared):
    assert len(desi) == 5104 and desi["tier"].value_counts().to_dict() == {"B": 4669, "A": 435}
    assert set(desi.loc[desi["grading"] == "confident", "tier"]) == {"A"}
    lenscat = catalogues.read_catalogue(shared("catalogs", "lenscat_catalog.csv"), "lenscat")
    both = catalogues.positives_table([desi, lenscat])
    assert (both["catalog"] == "desi").sum() == 5104  # the first catalogue wins every duplicate
    assert len(both) < len(desi) + len(lenscat)
    c = catalogues.SkyCoord(both["ra"].to_numpy() * catalogues.u.deg, both["dec"].to_numpy() * catalogues.u.deg)
    _, sep, _ = c.match_to_catalog_sky(c, nthneighbor=2)
    assert sep.arcsec.min() > 1.0  # no two kept entries within the match radius


def test_dedup_keeps_the_first_and_records_the_other():
    a = pd.DataFrame(dict(name=["x", "y"], ra=[10.0, 20.0], dec=[0.0, 0.0], zlens=np.nan, type="galaxy",
                          grading=["probable", "confident"], tier=["B", "A"], ref="", catalog="desi"))
    b = a.assign(name=["x2", "z"], ra=[10.0 + 0.5 / 3600, 30.0], catalog="lenscat")
    out = catalogues.positives_table([a, b])
    assert out["name"].tolist() == ["y", "x", "z"] and out.loc[out["name"] == "x", "also_in"].item() == "lenscat"


@pytest.mark.parametrize("text, needle", [("name,ra\nA,1\n", "missing column"),
                                          ("name,ra,dec,grading\nA,1,95,probable\n", "line 2"),
                                          ("name,ra,dec,grading\nA,x,1,probable\n", "without a valid position")])
def test_bad_catalogues(tmp_path, text, needle):
    f = tmp_path / "cat.csv"
    f.write_text(text)
    with pytest.raises(catalogues.CatalogueError, match=needle):
        catalogues.read_catalogue(f, "desi")
    with pytest.raises(catalogues.CatalogueError, match="no such"):
        catalogues.read_catalogue(tmp_path / "none.csv", "desi")


def test_healpix_is_nested_nside_128():
    rng = np.random.default_rng(0)
    ra, dec = rng.uniform(0, 360, 500), np.degrees(np.arcsin(rng.uniform(-1, 1, 500)))
    p128, p64 = spatial.healpix_index(ra, dec, 128), spatial.healpix_index(ra, dec, 64)
    assert np.array_equal(p128 // 4, p64)  # nested: a parent holds its 4 children (not true in RING order)
    assert p128.min() >= 0 and p128.max() < 12 * 128**2
    with pytest.raises(spatial.SplitError, match="row 1"):
        spatial.healpix_index([1.0, np.nan], [0.0, 0.0])


def test_split_follows_the_sha256_rule():
    pixels = np.arange(2000)
    got = spatial.split_for_pixels(pixels, seed=42)
    for p in (0, 1, 17, 999, 1999):
        h = struct.unpack(">I", hashlib.sha256(f"{p}_42".encode()).digest()[:4])[0] / 4294967296
        assert got[p] == ("train" if h < 0.70 else "val" if h < 0.85 else "test")
    share = pd.Series(got).value_counts(normalize=True)
    assert abs(share["train"] - 0.70) < 0.04 and abs(share["test"] - 0.15) < 0.03
    assert not np.array_equal(got, spatial.split_for_pixels(pixels, seed=43))
    with pytest.raises(spatial.SplitError, match="sum to 1"):
        spatial.split_for_pixels(pixels, allocations={"train": 0.7, "val": 0.2})


def test_assign_splits_parity_and_no_shared_tier_a_pixels(desi):
    df = spatial.assign_splits(desi)
    assert set(df["split"]) == {"train", "val"}
    counts = spatial.check_no_shared_pixels(df)
    assert counts["train"] > counts["val"] > 0
    leak = df.copy()
    a = leak.index[leak["tier"] == "A"][:2]
    leak.loc[a[1], ["ra", "dec"]] = leak.loc[a[0], ["ra", "dec"]].to_numpy() + 1e-5
    leak.loc[a[1], "split"] = "val" if leak.loc[a[0], "split"] == "train" else "train"
    with pytest.raises(spatial.SplitError, match="both train and val"):
        spatial.check_no_shared_pixels(leak)


def test_negatives_near_known_lenses_are_excluded():
    lens_ra, lens_dec = np.array([150.0]), np.array([2.0])
    off = np.array([5.0, 10.9, 11.1, 60.0]) / 3600
    ra = 150.0 + off / np.cos(np.radians(2.0))
    mask = spatial.near_known_lenses(np.r_[ra, ra], np.full(8, 2.0), np.r_[lens_ra, 10.0], np.r_[lens_dec, 0.0])
    assert mask.tolist() == [True, True, False, False] * 2


def _manifest(tmp_path, n=40):
    rng = np.random.default_rng(1)
    rows = []
    for k in range(n):
        img = rng.normal(0, 0.01, (101, 101, 3)).astype(np.float32)
        label = k % 4 == 0
        if label:
            img[45:56, 45:56, :] += 1.0
        path = save_cutout(tmp_path / "cutouts" / f"g{k:03d}.npz", img, {"galaxy_id": f"g{k:03d}"})
        rows.append(dict(galaxy_id=f"g{k:03d}", cutout_path=str(path.relative_to(tmp_path)), ra=rng.uniform(0, 360),
                         dec=rng.uniform(-30, 30), split="train" if k < 30 else "val", label=int(label),
                         tier="A" if label else "N", sample_weight=1.0, psfsize_r=1.2, psfdepth_r=2000.0))
    return pd.DataFrame(rows)


def test_manifest_round_trip_summary_and_dataset(tmp_path):
    df = _manifest(tmp_path)
    path = manifests.write_manifest(df, tmp_path / "m.parquet")
    back = manifests.read_manifest(path)
    assert back.equals(df)
    assert str(manifests.pq.read_schema(path).field("label").type) == "int64"
    comp = manifests.composition(back)
    assert comp.loc["tier_a", "train"] == 8 and comp.loc["negatives", "val"] == 8 and comp.loc["total", "all"] == 40
    summ = manifests.write_split_summary(back, tmp_path / "m.json", nside=128, seed=42)
    assert manifests.read_split_summary(summ)["split_settings"] == {"nside": 128, "seed": 42}
    ds = CutoutDataset(back, root=tmp_path)
    img, lab = ds[0]
    assert tuple(img.shape) == (3, 101, 101) and float(lab) == 1.0 and float(img[:, 50, 50].mean()) > 0.5
    batch = load_cutouts(back["cutout_path"].tolist(), root=tmp_path, workers=4)
    assert batch.shape == (40, 3, 101, 101) and np.array_equal(batch[0], img.numpy())


@pytest.mark.parametrize("change, needle", [
    (lambda d: d.drop(columns="label"), "missing column"),
    (lambda d: d.assign(label=2), "label must be 0 or 1"),
    (lambda d: d.assign(split="holdout"), "unknown split"),
])
def test_bad_manifests(tmp_path, change, needle):
    df = change(_manifest(tmp_path, 4))
    with pytest.raises(manifests.ManifestError, match=needle):
        manifests.validate_manifest(df, "m.parquet")
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(manifests.ManifestError, match="bad.parquet: not a readable parquet"):
        manifests.read_manifest(tmp_path / "bad.parquet")


# --- coadd tiles -----------------------------------------------------------------------------

BRICK, RA0, DEC0, NPIX = "1500p020", 150.0, 2.0, 240


def _wcs() -> WCS:
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [RA0, DEC0]
    w.wcs.crpix = [NPIX / 2 + 1, NPIX / 2 + 1]  # 0-based pixel (120, 120)
    w.wcs.cd = np.array([[-0.262 / 3600, 0], [0, 0.262 / 3600]])
    return w


def _write_tiles(root: Path, bands=("g", "r", "z"), hole=None):
    yy, xx = np.mgrid[:NPIX, :NPIX]
    hdr = _wcs().to_header()
    for b, band in enumerate(bands):
        img = (1000 * b + yy * NPIX + xx).astype(np.float32)  # encodes (band, row, column)
        ivar = np.ones_like(img)
        if hole is not None:
            ivar[hole] = 0
        d = root / BRICK
        d.mkdir(parents=True, exist_ok=True)
        fits.PrimaryHDU(img, header=hdr).writeto(d / f"legacysurvey-{BRICK}-image-{band}.fits", overwrite=True)
        fits.PrimaryHDU(ivar, header=hdr).writeto(d / f"legacysurvey-{BRICK}-invvar-{band}.fits", overwrite=True)


def _reader(root: Path):
    from lenslib.data.storage import open_store

    return open_store(str(root)).read_bytes


def test_cutout_from_tiles_centre_band_order_and_orientation(tmp_path):
    _write_tiles(tmp_path)
    cut = coadd.cutout_from_tiles(_reader(tmp_path), BRICK, RA0, DEC0)
    x0, y0 = cut.flags["centre_pixel"]
    assert (x0, y0) == (120, 120) and not cut.flags["edge"] and cut.flags["missing_bands"] == []
    for b in range(3):
        assert cut.image[b, 50, 50] == 1000 * b + y0 * NPIX + x0
    assert cut.image[1, 51, 50] - cut.image[1, 50, 50] == NPIX  # rows follow the tile's y axis
    # one pixel east (RA larger) is one column to the left with this CD matrix
    east = coadd.cutout_from_tiles(_reader(tmp_path), BRICK, RA0 + 0.262 / 3600 / np.cos(np.radians(DEC0)), DEC0)
    assert east.flags["centre_pixel"] == (x0 - 1, y0)


def test_cutout_edges_missing_band_and_masked_pixels(tmp_path):
    hole = (slice(100, 103), slice(118, 121))
    _write_tiles(tmp_path, bands=("g", "r"), hole=hole)
    cut = coadd.cutout_from_tiles(_reader(tmp_path), BRICK, RA0, DEC0)
    assert cut.flags["missing_bands"] == ["z"] and np.isnan(cut.image[2]).all()
    assert cut.flags["masked_pixels"]["r"] == 9 and np.isnan(cut.image[1, 30:33, 48:51]).all()
    corner = _wcs().pixel_to_world_values(5, 5)
    edge = coadd.cutout_from_tiles(_reader(tmp_path), BRICK, float(corner[0]), float(corner[1]))
    assert edge.flags["edge"] and np.isnan(edge.image[1, :45]).all() and np.isfinite(edge.image[1, 45:, 45:]).all()
    with pytest.raises(coadd.CoaddError, match="outside brick"):
        coadd.cutout_from_tiles(_reader(tmp_path), BRICK, RA0 + 1.0, DEC0)
    with pytest.raises(coadd.CoaddError, match="no image tile"):
        coadd.cutout_from_tiles(_reader(tmp_path), "0000p000", RA0, DEC0)


def test_brick_list(tmp_path):
    cols = [fits.Column("BRICKNAME", "8A", array=["1500p020", "1502p020"]),
            fits.Column("RA1", "D", array=[149.875, 150.125]), fits.Column("RA2", "D", array=[150.125, 150.375]),
            fits.Column("DEC1", "D", array=[1.875, 1.875]), fits.Column("DEC2", "D", array=[2.125, 2.125])]
    path = tmp_path / "bricks.fits.gz"
    fits.BinTableHDU.from_columns(cols).writeto(path)
    bricks = coadd.read_bricks(path)
    assert coadd.brick_for(bricks, 150.0, 2.0) == "1500p020" and coadd.brick_for(bricks, 150.2, 2.0) == "1502p020"
    with pytest.raises(coadd.CoaddError, match="no brick contains"):
        coadd.brick_for(bricks, 10.0, 2.0)

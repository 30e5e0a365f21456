"""The compute side of the gallery (§E.6, §F.12–F.14): what :func:`write_gallery_artefacts` writes has the
structure of the published D06 files, the book's readers work on it unchanged, and r mag, the display
stretch and the catalogue cross-match agree with independent computations."""

from __future__ import annotations

import io
import json
import math

import matplotlib
import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord

from lenslib import LenslibError
from lenslib.data.catalogues import read_catalogue
from lenslib.data.storage import open_store
from lenslib.experiments import gallery
from lenslib.experiments.artefacts import D06Artefacts
from lenslib.experiments.compute.gallery import (
    GalleryInputError,
    brick_position,
    render_thumbnail,
    write_gallery_artefacts,
)

LABELS = ("0.75", "1.5", "2.5")
REAL_SCORES = [0.05, 0.95, 0.0006, 0.6, 0.25, 0.99, 0.31, 0.12]  # REAL_001, 003, 005, 008 are missed at 0.3
BLOCK = (0.02, 0.05, 0.08)  # g, r, z value (nmgy) of REAL_001's uniform central block
rng = np.random.default_rng(20260217)
YY, XX = np.mgrid[:101, :101]


def _image(flux: float, seed: int) -> np.ndarray:
    r = np.random.default_rng(seed)
    blob = np.exp(-((XX - 50) ** 2 + (YY - 50) ** 2) / (2 * 3.0 ** 2))
    img = r.normal(0.0, 0.003, (3, 101, 101)) + flux * np.stack([0.4 * blob, blob, 1.6 * blob])
    return img.astype(np.float32)


def _brick_name(ra: float, dec: float) -> str:
    return f"{int(ra * 10):04d}{'m' if dec < 0 else 'p'}{int(abs(dec) * 10):03d}"


def _real_inputs() -> list[dict]:
    out = []
    for i, score in enumerate(REAL_SCORES):
        ra, dec = 10.0 + 7.3 * i + 0.034, -5.0 - 3.1 * i - 0.081
        img = _image(0.3 + 0.2 * i, seed=i)
        if i == 0:  # a uniform central block for the stretch check, a bright corner source sets hi
            img[:, 35:66, 35:66] = np.asarray(BLOCK, dtype=np.float32)[:, None, None]
            img[:, 5:20, 5:20] = 0.4
        if i == 1:
            img[0, :3, :5] = np.nan  # NaN pixels are allowed
        out.append({"cutout_path": f"/data/positives/{_brick_name(ra, dec)}_{100 + i}.npz", "image": img,
                    "score": score, "ra": ra, "dec": dec, "galaxy_id": f"gal{i}"})
    return out


def _injection_inputs() -> dict[str, list[dict]]:
    out = {}
    for j, label in enumerate(LABELS):
        items = []
        for k in range(4):
            cell = 35 * j + 1 + k // 2
            items.append({"cutout_path": f"cell{cell:05d}_inj{k % 2:05d}", "score": float(rng.uniform(0, 1)),
                          "image": _image(0.2 + 0.1 * k, 100 + 10 * j + k), "theta_e": float(label),
                          "cell_idx": cell, "inj_idx": k % 2})
        out[label] = items
    out["1.5"][0]["theta_e"] = 1.25  # the true θ_E of an item in the wrong block (the E.6 bug) is kept
    return out


def _catalogue(real: list[dict]) -> tuple[pd.DataFrame, dict[str, str]]:
    """A DESI-like catalogue through the real reader: for each real lens the true entry 0.01° away, a decoy
    exactly at the brick centre parsed from its file name (closer to the brick centre than the true entry)."""
    lines, truth = ["name,ra,dec,zlens,type,grading,ref"], {}
    for i, r in enumerate(real):
        name = f"DESI-TRUE-{i:02d}"
        truth[f"REAL_{i + 1:03d}"] = name
        lines.append(f"{name},{r['ra'] + 0.01:.5f},{r['dec']:.5f},{0.3 + 0.01 * i:.4f},galaxy,confident,test")
        bra, bdec = brick_position(r["cutout_path"])
        lines.append(f"DESI-DECOY-{i:02d},{bra:.5f},{bdec:.5f},0.9,galaxy,probable,test")
    return read_catalogue("\n".join(lines).encode(), "desi"), truth


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    real, inj = _real_inputs(), _injection_inputs()
    cat, truth = _catalogue(real)
    backend, figs = matplotlib.get_backend(), plt.get_fignums()
    summary = write_gallery_artefacts(root, real, inj, catalogue=cat)
    assert matplotlib.get_backend() == backend and plt.get_fignums() == figs  # caller's matplotlib untouched
    return {"root": root, "real": real, "inj": inj, "cat": cat, "truth": truth, "summary": summary}


def _load(written, *parts):
    return json.loads(written["root"].joinpath(*parts).read_text())


def canon(obj):
    """The structure of a JSON value: key sets and nesting, the set of element structures of each list,
    and scalar type names (int and float distinct)."""
    if isinstance(obj, dict):
        return ("dict", tuple(sorted((k, canon(v)) for k, v in obj.items())))
    if isinstance(obj, list):
        return ("list", tuple(sorted({canon(v) for v in obj}, key=repr)))
    return type(obj).__name__


@pytest.mark.parametrize("parts", [("gallery", "gallery_data.json"), ("gallery", "missed_tier_a.json"),
                                   ("comparison_figure", "comparison_audit_v2.json")])
def test_json_structure_equals_published(written, shared, parts):
    ref = json.loads(shared("d06", *parts).read_text())
    assert canon(_load(written, *parts)) == canon(ref)


def test_files_and_summary(written):
    root, s = written["root"], written["summary"]
    n_inj = sum(len(v) for v in written["inj"].values())
    thumbs = sorted(p.name for p in (root / "gallery" / "thumbs").iterdir())
    assert len(thumbs) == s["n_thumbs"] == len(REAL_SCORES) + n_inj
    assert {"REAL_001.png", "REAL_008.png", "INJ_075_001.png", "INJ_15_004.png", "INJ_25_004.png"} <= set(thumbs)
    assert not list(root.rglob("*.part*"))
    assert s["n_missed"] == s["n_missed_matched"] == 4 and s["n_real_shown"] == 6 and s["n_injections_shown"] == 6
    for p in s["paths"].values():
        assert (root / p).exists()
    png = mpimg.imread(root / "comparison_figure" / "fig5_comparison.png")
    assert png.shape[1] == 1050  # 7 in at 150 dpi


def test_gallery_data_values(written):
    g = _load(written, "gallery", "gallery_data.json")
    assert [r["uid"] for r in g["real_lenses"]] == [f"REAL_{i:03d}" for i in range(1, 9)]
    assert list(g["injections"]) == list(LABELS)
    assert [r["uid"] for r in g["injections"]["0.75"]] == [f"INJ_075_{i:03d}" for i in range(1, 5)]
    assert [r["uid"] for r in g["injections"]["1.5"]][:1] == ["INJ_15_001"]
    for item, row in zip(written["real"], g["real_lenses"], strict=True):
        total = float(np.nansum(item["image"][1].astype(np.float64)))
        assert row["r_mag"] == round(22.5 - 2.5 * math.log10(total), 2)
        assert row["score"] == round(item["score"], 4) and row["cutout_path"] == item["cutout_path"]
        assert row["thumb"] == f"thumbs/{row['uid']}.png"
    got = g["injections"]["1.5"][0]
    src = written["inj"]["1.5"][0]
    assert (got["theta_e"], got["cell_idx"], got["inj_idx"], got["cutout_path"]) == (
        1.25, src["cell_idx"], src["inj_idx"], src["cutout_path"])


def test_r_mag_of_faint_and_empty_images(tmp_path):
    img = np.full((3, 101, 101), np.nan, dtype=np.float32)  # no finite flux → 99
    neg = np.full((3, 101, 101), -1e-3, dtype=np.float32)  # negative total → 99
    write_gallery_artefacts(tmp_path, [{"cutout_path": "a.npz", "image": img, "score": 0.5, "ra": 1.0, "dec": 2.0,
                                        "galaxy_id": "a"},
                                       {"cutout_path": "b.npz", "image": neg, "score": 0.5, "ra": 1.0, "dec": 2.0,
                                        "galaxy_id": "b"}], {"1.5": []})
    g = json.loads((tmp_path / "gallery" / "gallery_data.json").read_text())
    assert [r["r_mag"] for r in g["real_lenses"]] == [99.0, 99.0]


def _stretch(chw: np.ndarray) -> np.ndarray:
    """E.6's rule, written out independently."""
    hwc = np.transpose(chw, (1, 2, 0))[:, :, [2, 1, 0]].astype(np.float64)
    lo = np.percentile(chw[chw > 0], 0.5)
    hi = np.percentile(chw, 99.5)
    return np.clip((hwc - lo) / (hi - lo), 0, 1)


def test_thumbnail_stretch_tiny_image(tmp_path):
    r = np.random.default_rng(3)
    chw = r.uniform(-0.2, 1.0, (3, 5, 5))
    chw[:, 2, 2] = (0.25, 0.5, 0.75)  # g, r, z of the centre
    chw[:, 0, 2] = (0.6, 0.1, 0.3)  # bottom-centre pixel (row 0: at the bottom with origin lower)
    render_thumbnail(chw, tmp_path / "t.png")
    png = mpimg.imread(tmp_path / "t.png")
    assert png.shape[0] == png.shape[1] and 150 <= png.shape[0] <= 160  # 2 in at 100 dpi, cropped
    want = _stretch(chw)
    h = png.shape[0]
    assert np.allclose(png[h // 2, h // 2, :3], want[2, 2], atol=1.5 / 255)
    # image row 0 is at the bottom of the PNG (origin="lower"); PNG rows run top to bottom
    assert np.allclose(png[h - 12, h // 2, :3], want[0, 2], atol=1.5 / 255)
    assert not np.allclose(want[0, 2], want[4, 2], atol=0.05)


def test_thumbnail_stretch_written(written):
    chw = written["real"][0]["image"]
    want = _stretch(chw)[50, 50]
    png = mpimg.imread(written["root"] / "gallery" / "thumbs" / "REAL_001.png")
    h, w = png.shape[:2]
    assert np.allclose(png[h // 2, w // 2, :3], want, atol=1.5 / 255)
    assert 0.02 < want.min() and want.max() < 0.98  # a non-trivial colour, not clipped


def test_html(written):
    page = (written["root"] / "gallery" / "gallery.html").read_text(encoding="utf-8")
    assert "<title>Figure 5 Gallery — Real Lenses &amp; Injections</title>" in page
    assert "(a) Real Tier-A Strong Lenses" in page
    for label in LABELS:
        assert f"(b) Injections — θ_E = {label} arcsec" in page
    assert page.count('<div class="card">') == written["summary"]["n_thumbs"]
    assert '<img src="thumbs/INJ_25_003.png" alt="INJ_25_003">' in page and "p = 0.0006" in page


def test_missed_match_lens_position(written):
    missed = _load(written, "gallery", "missed_tier_a.json")
    expect = sorted((s, f"REAL_{i + 1:03d}") for i, s in enumerate(REAL_SCORES) if round(s, 4) < 0.3)
    assert [(m["score"], m["uid"]) for m in missed] == expect
    real = {f"REAL_{i + 1:03d}": r for i, r in enumerate(written["real"])}
    cat = written["cat"].set_index("name")
    for m in missed:
        r = real[m["uid"]]
        assert m["desi_name"] == written["truth"][m["uid"]]  # not the decoy at the brick centre
        c = cat.loc[m["desi_name"]]
        sep = SkyCoord(r["ra"] * u.deg, r["dec"] * u.deg).separation(SkyCoord(c["ra"] * u.deg, c["dec"] * u.deg))
        assert m["match_sep_deg"] == round(sep.deg, 4)
        assert m["zlens"] == pytest.approx(c["zlens"]) and m["grading"] == "confident"
        assert (m["brick_ra"], m["brick_dec"]) == (int(r["ra"] * 10) / 10, -(int(-r["dec"] * 10) / 10))
    tex = (written["root"] / "gallery" / "missed_tier_a_table.tex").read_text()
    assert "REAL\\_003 & DESI-TRUE-02 & $" in tex and "$0.0006$" in tex and "$0.250$" in tex
    assert tex.count("\\\\\n") == 5  # header + 4 rows


def test_missed_without_match(tmp_path):
    img = _image(0.5, seed=9)
    real = [{"cutout_path": "special_lens.npz", "image": img, "score": 0.1, "ra": 100.0, "dec": 20.0,
             "galaxy_id": "x"},
            {"cutout_path": "1000p200_5.npz", "image": img, "score": 0.2, "ra": 100.01, "dec": 20.02,
             "galaxy_id": "y"}]
    far = pd.DataFrame({"name": ["DESI-FAR"], "ra": [100.0], "dec": [20.3], "zlens": [0.5], "grading": ["confident"]})
    write_gallery_artefacts(tmp_path, real, {"1.5": []}, catalogue=far)
    missed = json.loads((tmp_path / "gallery" / "missed_tier_a.json").read_text())
    assert [(m["uid"], m["brick_ra"], m["brick_dec"], m["desi_name"], m["zlens"], m["match_sep_deg"])
            for m in missed] == [("REAL_001", None, None, None, None, None),
                                 ("REAL_002", 100.0, 20.0, None, None, None)]
    assert brick_position("/a/b/0147m072_123.npz") == (14.7, -7.2)


def test_comparison_audit(written):
    a = _load(written, "comparison_figure", "comparison_audit_v2.json")
    assert (a["version"], a["rng_seed"], a["n_per_theta"], a["n_tier_a_total"], a["n_tier_a_shown"]) == (
        "v4_large_cutouts", 42, 2, 8, 6)
    assert a["target_theta_e"] == [0.75, 1.5, 2.5]
    r_mags = [p["r_mag"] for p in a["panel_a_real_lenses"]]
    assert r_mags == sorted(r_mags)
    by_path = {r["cutout_path"]: r for r in written["real"]}
    for p in a["panel_a_real_lenses"]:
        total = float(np.nansum(by_path[p["cutout_path"]]["image"][1].astype(np.float64)))
        assert p["r_mag"] == pytest.approx(22.5 - 2.5 * math.log10(total), abs=1e-9)
        assert p["score"] == by_path[p["cutout_path"]]["score"]
    assert len({p["cutout_path"] for p in a["panel_a_real_lenses"]}) == 6
    for label in LABELS:
        picks = a["panel_b_injections"][label]
        assert len(picks) == 2 and len({p["cutout_path"] for p in picks}) == 2
        assert {p["cutout_path"] for p in picks} <= {i["cutout_path"] for i in written["inj"][label]}
    # the same seed gives the same picks
    again = write_gallery_artefacts(written["root"] / "again", written["real"], written["inj"], seed=42)
    b = json.loads(open(again["paths"]["comparison_audit"]).read())
    assert b["panel_a_real_lenses"] == a["panel_a_real_lenses"] and b["panel_b_injections"] == a["panel_b_injections"]


def test_book_functions_read_the_written_folder(written, tmp_path):
    art = D06Artefacts(open_store(str(written["root"])))
    df = gallery.items(art)
    assert len(df) == written["summary"]["n_thumbs"] and set(df["section"]) == {"real", "injection"}
    mt = gallery.missed_table(art)
    assert list(mt["uid"]) == ["REAL_003", "REAL_001", "REAL_008", "REAL_005"]
    assert list(mt["desi_name"]) == [written["truth"][u] for u in mt["uid"]]
    page = gallery.write_gallery(art, tmp_path / "site")
    assert page.exists() and len(list((tmp_path / "site" / "thumbs").iterdir())) == len(df)
    fig, missing = gallery.comparison_figure(art)  # the final paper's picks: only INJ_15_002/004 exist here
    assert set(missing) == set(gallery.FINAL_REAL_PICKS + gallery.FINAL_INJ_PICKS) - set(df["uid"])
    assert len(missing) == 14
    plt.close(fig)
    fig, missing = gallery.comparison_figure(art, ["REAL_001", "REAL_002"], ["INJ_075_001", "INJ_25_004"])
    assert missing == []
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    assert buf.getvalue()[:4] == b"\x89PNG"


def _one_real(**over) -> dict:
    item = {"cutout_path": "ok.npz", "image": np.zeros((3, 101, 101), np.float32), "score": 0.5, "ra": 1.0,
            "dec": 1.0, "galaxy_id": "g"}
    item.update(over)
    return item


def _one_inj(**over) -> dict:
    item = {"cutout_path": "cell00001_inj00000", "image": np.zeros((3, 101, 101), np.float32), "score": 0.5,
            "theta_e": 1.5, "cell_idx": 1, "inj_idx": 0}
    item.update(over)
    return item


@pytest.mark.parametrize("real, inj, match", [
    ([_one_real(), {k: v for k, v in _one_real(cutout_path="b.npz").items() if k != "score"}], {},
     r"REAL_002.*b\.npz.*missing key.*'score'"),
    ([_one_real(score=float("nan"))], {}, r"REAL_001.*'score'.*finite"),
    ([_one_real(image=np.zeros((101, 101, 3)))], {}, r"REAL_001.*shape \(101, 101, 3\)"),
    ([_one_real(dec=95.0)], {}, r"REAL_001.*'dec'"),
    ([_one_real()], {"1.5": [_one_inj(), _one_inj(image=np.zeros((3, 64, 64)))]}, r"INJ_15_002.*1\.5.*shape"),
    ([_one_real()], {"0.75": [_one_inj(cell_idx=1.5)]}, r"INJ_075_001.*'cell_idx'.*integer"),
    ([_one_real()], {"0.75": [_one_inj(score=None)]}, r"INJ_075_001.*'score'"),
    ([_one_real()], {"wide": []}, r"label 'wide'"),
    ([_one_real()], {1.5: []}, r"label 1\.5"),
])
def test_bad_inputs_raise_naming_the_item(tmp_path, real, inj, match):
    with pytest.raises(GalleryInputError, match=match) as exc:
        write_gallery_artefacts(tmp_path, real, inj)
    assert isinstance(exc.value, LenslibError)
    assert not list(tmp_path.iterdir())  # nothing written before the inputs are checked


def test_bad_catalogue(tmp_path):
    with pytest.raises(GalleryInputError, match="catalogue: missing column"):
        write_gallery_artefacts(tmp_path, [_one_real()], {}, catalogue=pd.DataFrame({"name": ["a"]}))

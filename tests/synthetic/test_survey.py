"""The synthetic survey: real files in the bucket's layout, known truth, seeded byte for byte, clear errors."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from lenslib.data.cutouts import load_cutout
from lenslib.data.manifests import read_manifest
from lenslib.injection.realistic import RealisticSourceSpec, realistic_sources
from lenslib.synthetic import SurveyError, SurveySpec, make_survey
from lenslib.synthetic.scene import CONFUSERS
from lenslib.synthetic.survey import CATALOGUE, MANIFEST, TRUTH

SMALL = SurveySpec(n_negatives=60, n_positives=30, seed=5)


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    return root, make_survey(root, SMALL)


def _digest(root) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_layout_manifest_and_truth(survey):
    root, df = survey
    m = read_manifest(root / MANIFEST)
    assert set(m["split"]) == {"train", "val"}
    assert set(m["pool"]) <= {"N1", "N2", "POS"} and (m["pool"] == "POS").sum() == SMALL.n_positives
    assert set(m.loc[m["pool"] == "N2", "confuser_category"]) <= set(CONFUSERS)
    assert set(m.loc[m["label"] == 1, "tier"]) <= {"A", "B"} and set(m.loc[m["label"] == 0, "tier"]) == {"N"}
    assert m["cutout_path"].str.match(r"cutouts/(positives|negatives)/synthetic/syn5_\d{6}\.npz").all()
    # PSF and depth cover the grid's bins
    assert m["psfsize_r"].min() < 0.95 and m["psfsize_r"].max() > 1.75
    truth = pd.read_parquet(root / TRUTH)
    lens = truth[truth["kind"] == "lens"]
    assert np.isfinite(lens[["theta_e", "lensed_r_mag", "magnification", "arc_snr"]].to_numpy()).all()
    assert (lens["magnification"] > 1.5).all()  # β_frac ≤ 0.4: strongly magnified
    # tiers follow the arc SNR, and the lensed arcs are bright like discovered lenses
    t = truth.set_index("galaxy_id").loc[m.loc[m["label"] == 1, "galaxy_id"]]
    assert ((t["arc_snr"] >= SMALL.tier_a_snr) == (t["tier"] == "A")).all()
    assert lens["lensed_r_mag"].median() < 21.5
    cat = pd.read_csv(root / CATALOGUE)
    assert len(cat) == SMALL.n_positives and set(cat["grading"]) <= {"confident", "probable"}


def test_cutouts_are_real_files_with_their_truth(survey):
    root, df = survey
    lens = df[df["label"] == 1].iloc[0]
    c = load_cutout(root / lens["cutout_path"])
    assert c.image.shape == (3, 101, 101) and c.meta["galaxy_id"] == lens["galaxy_id"]
    assert c.meta["tier"] == lens["tier"] and abs(c.meta["psfsize_r"] - lens["psfsize_r"]) < 1e-9
    # the lens's arc is there: the lens cutout has more light in the 4–16 px annulus than its host would alone
    y, x = np.mgrid[:101, :101] - 50
    ring = (np.hypot(x, y) > 3) & (np.hypot(x, y) < 12)
    assert np.nansum(c.image[0][ring]) > 0


def test_same_seed_same_bytes_other_seed_other_bytes(survey, tmp_path):
    root, _ = survey
    make_survey(tmp_path / "again", SMALL)
    assert _digest(tmp_path / "again") == _digest(root)
    make_survey(tmp_path / "other", SurveySpec(n_negatives=60, n_positives=30, seed=6))
    assert _digest(tmp_path / "other") != _digest(root)


def test_masked_pixels_occur(tmp_path):
    df = make_survey(tmp_path, SurveySpec(n_negatives=60, n_positives=0, seed=1, mask_prob=0.5))
    n_masked = sum(bool(np.isnan(load_cutout(tmp_path / p).image).any()) for p in df["cutout_path"])
    assert 15 <= n_masked <= 45


def test_a_survey_too_small_for_the_validation_split_is_refused(tmp_path):
    with pytest.raises(SurveyError, match="too small to fill the validation split.*synthetic_positives"):
        make_survey(tmp_path, SurveySpec(n_negatives=20, n_positives=3, seed=1, min_val_lenses=10,
                                         min_val_negatives=5))
    assert not (tmp_path / MANIFEST).exists()
    with pytest.raises(SurveyError, match="confuser_frac"):
        SurveySpec(confuser_frac=1.5)


def test_realistic_sources_are_seeded_clumpy_and_colour_graded():
    spec = RealisticSourceSpec()
    a = realistic_sources([1, 2, 3], spec)
    assert a.shape == (3, 3, spec.size, spec.size) and np.allclose(a[:, 1].sum((1, 2)), 1, atol=1e-5)
    assert np.array_equal(a[1], realistic_sources([2], spec)[0])  # a source does not depend on its batch
    assert not np.array_equal(a[0], a[1])
    # colour gradient: the g/r ratio varies across the source (blue knots on a redder disc)
    gr = a[:, 0] / np.maximum(a[:, 1], 1e-6)
    bright = a[:, 1] > 0.2 * a[:, 1].max((1, 2), keepdims=True)
    assert all(np.ptp(gr[k][bright[k]]) > 0.1 for k in range(3))  # a one-colour source has 0
    # asymmetry: the light is not point-symmetric about its centre
    r = a[:, 1]
    assert all(np.abs(r[k] - r[k, ::-1, ::-1]).sum() / r[k].sum() > 0.2 for k in range(3))

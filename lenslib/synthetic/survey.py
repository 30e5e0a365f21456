"""A synthetic DR10-like survey with known truth, written in the bucket's layout.

``make_survey(root, spec)`` writes, under ``root`` (the layout of the authors' ``stronglens_calibration/``):

- ``cutouts/negatives/synthetic/<galaxy_id>.npz`` and ``cutouts/positives/synthetic/<galaxy_id>.npz``
  (the real cutout format, PAPER_SPEC A.2);
- ``manifests/synthetic.parquet``: the parity manifest's columns (A.6), split 70/30 train/val by the HEALPix
  rule (A.5, test → val), pools N1 / N2 (confusers, with their category) / POS, tiers A / B / N;
- ``manifests/synthetic_truth.parquet``: every object's kind and, for lenses, θ_E, the source's seed and
  magnitude, the lensed magnitude, magnification and arc SNR; ``manifests/synthetic_spec.json``;
- ``catalogs/desi_candidates.csv``: the lenses as a candidate catalogue (Tier A "confident", B "probable").

The lenses are the point: an LRG-like host (as the N1 negatives) whose field is joined by a *realistic*
source (:mod:`lenslib.injection.realistic`: clumpy, blue knots on a redder disc, asymmetric) lensed by an
SIE + shear drawn from the injection priors, bright like discovered lenses. Tier A are the clear ones
(arc SNR ≥ ``tier_a_snr``), Tier B the marginal ones. Among the negatives are confusers (smooth rings of
injection-like colour, spirals, blue companions, mergers). So the survey's real lenses and the paper's
Sérsic injections differ the way the paper says they do in the sky, and by how much is known.

Nothing here is a paper result: the numbers a survey gives say what the pipeline finds in this world.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from lenslib import LenslibError
from lenslib._tqdm import tqdm
from lenslib._util import atomic_write
from lenslib.data import manifests, spatial
from lenslib.data.cutouts import save_cutout
from lenslib.injection import InjectionEngine, InjectionPriors, PixelatedStamps, draw
from lenslib.injection.realistic import RealisticSourceSpec, realistic_sources
from lenslib.survey import psfdepth_from_mag
from lenslib.synthetic.scene import CONFUSER_WEIGHTS, CONFUSERS, draw_fields, observe, render_fields

MANIFEST = "manifests/synthetic.parquet"
TRUTH = "manifests/synthetic_truth.parquet"
SPEC = "manifests/synthetic_spec.json"
CATALOGUE = "catalogs/desi_candidates.csv"
CHUNK = 256


class SurveyError(LenslibError):
    """A synthetic-survey specification cannot give what is asked of it."""


@dataclass(frozen=True)
class SurveySpec:
    """What to generate. PSF and depth spread over the grid's 7 PSF × 5 depth bins."""

    n_negatives: int = 400
    n_positives: int = 200
    seed: int = 42
    confuser_frac: float = 0.5  # of the negatives (N2)
    ra_range: tuple[float, float] = (150.0, 160.0)
    dec_range: tuple[float, float] = (-4.0, 4.0)
    psf_fwhm_r: tuple[float, float] = (0.85, 1.85)
    depth_r_mag: tuple[float, float] = (22.3, 24.7)
    theta_e: tuple[float, float] = (0.8, 2.5)
    source_r_mag: tuple[float, float] = (21.0, 23.5)
    tier_a_snr: float = 25.0
    mask_prob: float = 0.04
    source: RealisticSourceSpec = field(default_factory=RealisticSourceSpec)
    min_val_lenses: int = 0  # make_survey fails unless the val split gets this many Tier-A lenses
    min_val_negatives: int = 0

    def __post_init__(self) -> None:
        if self.n_negatives < 1 or self.n_positives < 0:
            raise SurveyError(f"n_negatives must be ≥ 1 and n_positives ≥ 0, got {self.n_negatives}, "
                              f"{self.n_positives}")
        if not 0 <= self.confuser_frac <= 1:
            raise SurveyError(f"confuser_frac must be in [0, 1], got {self.confuser_frac}")


def code_digest() -> str:
    """SHA-256 of the code that draws and renders a survey (this subpackage and the realistic sources): a
    survey on disk made by other code is not the same survey."""
    here = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for p in sorted(here.glob("*.py")) + [here.parent / "injection" / "realistic.py"]:
        h.update(p.read_bytes())
    return h.hexdigest()


def spec_record(spec: SurveySpec) -> dict:
    """What ``manifests/synthetic_spec.json`` holds: the spec and the code digest."""
    return {**asdict(spec), "code_sha256": code_digest()}


def source_seeds(spec: SurveySpec, n: int) -> np.ndarray:
    """The seeds of the lenses' sources (one per positive)."""
    return spec.seed * 1_000_003 + np.arange(n, dtype=np.int64)


def _kinds(rng: np.random.Generator, spec: SurveySpec) -> np.ndarray:
    n_conf = int(round(spec.confuser_frac * spec.n_negatives))
    conf = rng.choice(np.asarray(CONFUSERS), n_conf, p=CONFUSER_WEIGHTS)
    return np.concatenate([np.full(spec.n_negatives - n_conf, "lrg", dtype=object), conf.astype(object),
                           np.full(spec.n_positives, "lens", dtype=object)])


def _check_splits(df: pd.DataFrame, spec: SurveySpec, tiers: bool) -> None:
    """Enough validation lenses (Tier A once the tiers are known) and negatives for the experiments."""
    val = df[df["split"] == "val"]
    lens = (val["label"] == 1) & ((val["tier"] == "A") if tiers else True)
    n_a, n_neg = int(lens.sum()), int((val["label"] == 0).sum())
    if n_a < spec.min_val_lenses or n_neg < spec.min_val_negatives:
        raise SurveyError(f"the survey is too small to fill the validation split: {n_a} val "
                          f"{'Tier-A ' if tiers else ''}lenses and "
                          f"{n_neg} val negatives from n_positives={spec.n_positives}, n_negatives={spec.n_negatives}"
                          f"; the experiments need at least {spec.min_val_lenses} and {spec.min_val_negatives} "
                          "(raise synthetic_positives / synthetic_negatives)")


def make_survey(root: str | Path, spec: SurveySpec = SurveySpec(), *, priors: InjectionPriors | None = None,
                progress: bool = False) -> pd.DataFrame:
    """Write the survey under ``root`` (see the module docstring); return its manifest (with ``theta_e``).

    ``cutout_path`` is relative to ``root``. The same spec gives the same files, byte for byte."""
    root = Path(root)
    rng = np.random.default_rng(spec.seed)
    kind = _kinds(rng, spec)
    n = len(kind)
    label = (kind == "lens").astype(int)
    u = rng.uniform(size=n)  # uniform on the sphere inside the patch
    s0, s1 = np.sin(np.radians(spec.dec_range))
    dec = np.degrees(np.arcsin(s0 + u * (s1 - s0)))
    ra = rng.uniform(*spec.ra_range, n)
    psf = rng.uniform(*spec.psf_fwhm_r, n)
    psfdepth = psfdepth_from_mag(rng.uniform(*spec.depth_r_mag, n))
    fields = draw_fields(rng, kind)
    pos = np.flatnonzero(label == 1)
    theta_e = np.full(n, np.nan)
    theta_e[pos] = rng.uniform(*spec.theta_e, len(pos))
    lens_params = draw(rng, theta_e[pos], priors or InjectionPriors()).with_r_mag(
        rng.uniform(*spec.source_r_mag, len(pos)))
    seeds = source_seeds(spec, len(pos))
    truth = pd.DataFrame({"kind": kind, "theta_e": theta_e, "source_seed": -1, "source_r_mag": np.nan,
                          "lensed_r_mag": np.nan, "magnification": np.nan, "arc_snr": np.nan})
    truth.loc[pos, "source_seed"] = seeds
    truth.loc[pos, "source_r_mag"] = lens_params.r_mag

    engine = InjectionEngine(sampling="adaptive", device="cpu", batch_size=128)
    ids = np.array([f"syn{spec.seed}_{k:06d}" for k in range(n)])
    paths = np.array([f"cutouts/{'positives' if lab else 'negatives'}/synthetic/{g}.npz" for g, lab in zip(ids, label,
                                                                                                         strict=True)])
    obs_seed = spec.seed * 7_919 + np.arange(n)
    df = pd.DataFrame({
        "galaxy_id": ids, "cutout_path": paths, "ra": ra, "dec": dec,
        "type_bin": np.where(kind == "spiral", "EXP", "DEV"), "nobs_z_bin": "3-5",
        "pool": np.where(label == 1, "POS", np.where(kind == "lrg", "N1", "N2")),
        "confuser_category": np.where(np.isin(kind, CONFUSERS), kind, "none"), "psfsize_r": psf,
        "psfdepth_r": psfdepth, "ebv": 0.03, "label": label, "tier": "N", "sample_weight": 1.0, "theta_e": theta_e})
    df = spatial.assign_splits(df)
    df["split"] = np.where(df["split"] == "train", "train", "val")  # the 70/30 parity scheme (A.5)
    df["healpix_128"] = df["healpix_128"].astype(float)
    _check_splits(df, spec, tiers=False)  # before anything is written
    for c0 in tqdm(range(0, n, CHUNK), desc="synthetic survey", unit="chunk", disable=not progress):
        idx = np.arange(c0, min(c0 + CHUNK, n))
        field_img = render_fields(fields, idx, psf[idx], engine)
        here = label[idx] == 1
        if here.any():
            j = np.searchsorted(pos, idx[here])
            res = engine.inject(field_img[here], lens_params.select(j), psf[idx[here]], psfdepth[idx[here]],
                                sources=PixelatedStamps(lambda k, j=j: realistic_sources(seeds[j[k]], spec.source),
                                                        spec.source.pixscale))
            field_img[here] = res.injected.double().cpu().numpy()
            truth.loc[idx[here], ["lensed_r_mag", "magnification", "arc_snr"]] = np.c_[
                res.lensed_r_mag, res.magnification, res.arc_snr]
            df.loc[idx[here], "tier"] = np.where(res.arc_snr >= spec.tier_a_snr, "A", "B")
        images = observe(field_img, psf[idx], psfdepth[idx], obs_seed[idx], spec.mask_prob)
        for i, k in enumerate(idx):
            meta = {"galaxy_id": ids[k], "ra": ra[k], "dec": dec[k], "psfsize_r": psf[k], "psfdepth_r": psfdepth[k],
                    "label": int(label[k]), "split": df["split"].iloc[k], "pool": df["pool"].iloc[k],
                    "tier": df["tier"].iloc[k], "synthetic": True}
            save_cutout(root / paths[k], images[i], meta)
    _check_splits(df, spec, tiers=True)
    tier = df["tier"].to_numpy()
    truth.insert(0, "galaxy_id", ids)
    truth["tier"], truth["split"] = tier, df["split"].to_numpy()
    with atomic_write(root / TRUTH) as tmp:
        truth.to_parquet(tmp, index=False)
    lenses = df[df["label"] == 1]
    (root / CATALOGUE).parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"name": "SYN-" + lenses["galaxy_id"], "ra": lenses["ra"].round(6), "dec": lenses["dec"].round(6),
                  "zlens": 0.5, "type": "galaxy",
                  "grading": np.where(lenses["tier"] == "A", "confident", "probable"),
                  "ref": "lenslib synthetic survey"}).to_csv(root / CATALOGUE, index=False)
    (root / SPEC).write_text(json.dumps(spec_record(spec), indent=1))
    manifests.write_manifest(df, root / MANIFEST)  # last: its presence marks a complete survey
    return df

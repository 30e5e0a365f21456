"""A synthetic mini-survey: DR10-like cutouts and a training manifest made on the spot, for laptops and tests.

Each object is an elliptical Sérsic galaxy (r 17–19.5 mag, red colours) seen through a Gaussian PSF,
with Gaussian sky noise set by its r-band PSF depth; lenses ("positives") are other such galaxies
with a lensed Sérsic arc added by :class:`lenslib.injection.InjectionEngine` (θ_E and source magnitude
from the ranges given). Files, meta keys and the manifest follow the real formats (PAPER_SPEC A.2,
A.6), positions fall in a sky patch and the split is the HEALPix rule of :mod:`lenslib.data.spatial`, so
every later step (loading, training, scoring, injecting into hosts) runs on it unchanged.

Nothing here is a paper result: the mini-survey exists so the pipeline can run anywhere in minutes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from lenslib.data import manifests, spatial
from lenslib.data.cutouts import save_cutout
from lenslib.injection import InjectionEngine, InjectionParams, InjectionPriors, draw, sigma_pix
from lenslib.survey import STAMP, psfdepth_from_mag

BAND_NOISE_FACTORS = (0.6, 1.0, 2.2)  # sky σ of g and z relative to r (DR10-like: g deeper, z shallower)


@dataclass(frozen=True)
class SurveySpec:
    """What to generate. Depth is drawn as a 5σ r magnitude and stored as psfdepth_r (nmgy⁻²)."""

    n_negatives: int = 400
    n_positives: int = 200
    seed: int = 42
    ra_range: tuple[float, float] = (150.0, 160.0)
    dec_range: tuple[float, float] = (-4.0, 4.0)
    galaxy_r_mag: tuple[float, float] = (17.0, 19.5)
    galaxy_re_arcsec: tuple[float, float] = (0.6, 2.0)
    psf_fwhm_r: tuple[float, float] = (1.0, 1.6)
    depth_r_mag: tuple[float, float] = (23.0, 24.5)
    theta_e: tuple[float, float] = (1.0, 2.5)
    source_r_mag: tuple[float, float] = (19.0, 21.0)
    nx: int = STAMP


def _galaxies(rng: np.random.Generator, n: int, s: SurveySpec) -> InjectionParams:
    """Unlensed elliptical Sérsic galaxies at the stamp centre, as InjectionParams with θ_E = 0."""
    zeros = np.zeros(n)
    return InjectionParams(
        theta_e=zeros, shear_g1=zeros, shear_g2=zeros, lens_x=zeros, lens_y=zeros, q_lens=np.ones(n),
        phi_lens=zeros, beta_frac=zeros, beta_x=rng.normal(0, 0.05, n), beta_y=rng.normal(0, 0.05, n),
        re_arcsec=rng.uniform(*s.galaxy_re_arcsec, n), n_sersic=rng.uniform(2.0, 4.0, n),
        q_source=rng.uniform(0.55, 1.0, n), phi_source=rng.uniform(0, np.pi, n),
        r_mag=rng.uniform(*s.galaxy_r_mag, n), g_minus_r=rng.uniform(1.0, 1.6, n),
        r_minus_z=rng.uniform(0.5, 0.9, n), n_clumps=np.zeros(n, dtype=int), clump_frac=zeros,
        clumps=np.zeros((n, 0, 2)))


def make_survey(root: str | Path, spec: SurveySpec = SurveySpec(), *, priors: InjectionPriors | None = None,
                progress: bool = False) -> pd.DataFrame:
    """Write ``root/cutouts/<galaxy_id>.npz`` and ``root/manifests/synthetic.parquet``; return the manifest.

    ``cutout_path`` is relative to ``root``. The same spec gives the same files, byte for byte
    in their arrays. ``priors`` (default: the engine's) shape the arcs; θ_E and the source
    magnitude come from ``spec``."""
    root = Path(root)
    rng = np.random.default_rng(spec.seed)
    n = spec.n_negatives + spec.n_positives
    label = np.r_[np.zeros(spec.n_negatives, int), np.ones(spec.n_positives, int)]
    u = rng.uniform(size=n)  # uniform on the sphere inside the patch
    s0, s1 = np.sin(np.radians(spec.dec_range))
    dec = np.degrees(np.arcsin(s0 + u * (s1 - s0)))
    ra = rng.uniform(*spec.ra_range, n)
    psf = rng.uniform(*spec.psf_fwhm_r, n)
    psfdepth = psfdepth_from_mag(rng.uniform(*spec.depth_r_mag, n))
    engine = InjectionEngine(nx=spec.nx, sampling="adaptive", device="cpu", batch_size=128)
    galaxies, _ = engine.arcs(_galaxies(rng, n, spec), psf)
    images = galaxies.numpy().astype(np.float64)
    sigma = sigma_pix(psfdepth, psf)[:, None, None, None] * np.asarray(BAND_NOISE_FACTORS)[None, :, None, None]
    images += rng.normal(size=images.shape) * sigma

    theta_e = np.full(n, np.nan)
    pos = np.flatnonzero(label == 1)
    if len(pos):
        theta_e[pos] = rng.uniform(*spec.theta_e, len(pos))
        arcs = draw(rng, theta_e[pos], priors or InjectionPriors())
        arcs = arcs.with_r_mag(rng.uniform(*spec.source_r_mag, len(pos)))
        res = engine.inject(images[pos].astype(np.float32), arcs, psf[pos], psfdepth[pos])
        images[pos] = res.injected.numpy()

    ids = [f"syn{spec.seed}_{k:06d}" for k in range(n)]
    df = pd.DataFrame({
        "galaxy_id": ids, "cutout_path": [f"cutouts/{g}.npz" for g in ids], "ra": ra, "dec": dec,
        "type_bin": "SER", "nobs_z_bin": "3-5", "pool": np.where(label == 1, "POS", "N1"),
        "confuser_category": "none", "psfsize_r": psf, "psfdepth_r": psfdepth, "ebv": 0.03,
        "label": label, "tier": np.where(label == 1, "A", "N"), "sample_weight": 1.0, "theta_e": theta_e})
    df = spatial.assign_splits(df)
    df["healpix_128"] = df["healpix_128"].astype(float)
    for k in tqdm(range(n), desc="synthetic cutouts", disable=not progress):
        meta = {"galaxy_id": ids[k], "ra": ra[k], "dec": dec[k], "psfsize_r": psf[k], "psfdepth_r": psfdepth[k],
                "label": int(label[k]), "synthetic": True}
        save_cutout(root / df["cutout_path"].iloc[k], images[k].astype(np.float32), meta)
    manifests.write_manifest(df, root / "manifests" / "synthetic.parquet")
    (root / "manifests" / "synthetic_spec.json").write_text(pd.Series(asdict(spec)).to_json(indent=1))
    return df

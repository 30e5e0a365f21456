"""Magnitudes, fluxes and the arc signal-to-noise diagnostics (PAPER_SPEC D.5, D.9)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

ZERO_POINT = 22.5  # AB magnitude of 1 nanomaggy
FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


def mag_to_nmgy(mag: Any) -> np.ndarray:
    """AB magnitude → nanomaggies."""
    return 10.0 ** ((ZERO_POINT - np.asarray(mag, dtype=float)) / 2.5)


def nmgy_to_mag(flux: Any) -> np.ndarray:
    """Nanomaggies → AB magnitude; NaN where the flux is not positive or not finite."""
    f = np.asarray(flux, dtype=float)
    ok = np.isfinite(f) & (f > 0)
    return np.where(ok, ZERO_POINT - 2.5 * np.log10(np.where(ok, f, 1.0)), np.nan)


def depth_mag(psfdepth: Any) -> np.ndarray:
    """5σ point-source depth m5 = 22.5 − 2.5 log10(5/√psfdepth) (psfdepth in nmgy⁻²; NaN if ≤ 0)."""
    d = np.asarray(psfdepth, dtype=float)
    ok = np.isfinite(d) & (d > 0)
    return np.where(ok, ZERO_POINT - 2.5 * np.log10(5.0 / np.sqrt(np.where(ok, d, 1.0))), np.nan)


def sigma_pix(psfdepth_r: Any, psf_fwhm_r: Any, pixscale: float = 0.262) -> np.ndarray:
    """Per-pixel noise (nmgy) implied by the PSF depth: σ_flux·√(Σ PSF²) with Σ PSF² ≈ 1/(4π σ_psf²)."""
    d = np.asarray(psfdepth_r, dtype=float)
    s_psf = np.asarray(psf_fwhm_r, dtype=float) * FWHM_TO_SIGMA / pixscale
    ok = np.isfinite(d) & (d > 0)
    sigma_flux = np.where(ok, 1.0 / np.sqrt(np.where(ok, d, 1.0)), np.nan)
    return sigma_flux * np.sqrt(1.0 / (4 * math.pi * s_psf**2 + 1e-12))


def annulus_mask(nx: int, r_min: float, r_max: float) -> np.ndarray:
    """Pixels with r_min ≤ r ≤ r_max from the stamp centre ((nx−1)/2, (nx−1)/2)."""
    yy, xx = np.mgrid[:nx, :nx] - (nx - 1) / 2
    r = np.hypot(xx, yy)
    return (r >= r_min) & (r <= r_max)


def arc_annulus_snr(injection_r: Any, sigma: Any, r_min: float = 4.0, r_max: float = 16.0) -> np.ndarray:
    """Σ arc flux in the 4–16 px annulus / (√N σ_pix) on r-band arc-only images (B, H, W); NaN if σ is invalid."""
    mask = annulus_mask(injection_r.shape[-1], r_min, r_max)
    if isinstance(injection_r, torch.Tensor):  # sum where the images are: only the totals leave a GPU
        ring = torch.as_tensor(mask, dtype=injection_r.dtype, device=injection_r.device)
        total = (injection_r.detach() * ring).sum((-2, -1), dtype=torch.float64).cpu().numpy()
    else:
        total = np.asarray(injection_r)[..., mask].sum(-1, dtype=float)
    s = np.asarray(sigma, dtype=float)
    ok = np.isfinite(s) & (s > 0)
    return np.where(ok, total / (math.sqrt(mask.sum()) * np.where(ok, s, 1.0)), np.nan)

"""Sky noise implied by a PSF depth, and the arc signal-to-noise diagnostics (PAPER_SPEC D.5, D.9).

Magnitude and flux conversions are DR10 conventions: :mod:`lenslib.survey`."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from lenslib.survey import PIXSCALE

FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


def sigma_pix(psfdepth_r: Any, psf_fwhm_r: Any, pixscale: float = PIXSCALE) -> np.ndarray:
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

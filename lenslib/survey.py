"""DESI Legacy Survey DR10 conventions, in one place (PAPER_SPEC A.2, D.5, E.2).

- Bands g, r, z, in that order everywhere (arrays, files, colours).
- Cutouts are 101 × 101 pixels at 0.262″ per pixel (26.5″ on a side), in nanomaggies per pixel.
- AB magnitudes with zero point 22.5: m = 22.5 − 2.5 log10(f / nmgy).
- Depths: ``psfdepth`` is the inverse variance of a point source's flux (nmgy⁻²); the 5σ point-source
  depth is m5 = 22.5 − 2.5 log10(5 / √psfdepth).
- The g and z PSFs are 1.05 and 0.94 times as wide (FWHM) as the r-band PSF.
- In memory images are CHW (3, H, W); the files store HWC (H, W, 3).
- Colour images put z in red, r in green, g in blue (Lupton et al. 2004 stretch).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from astropy.visualization import make_lupton_rgb

from lenslib import LenslibError

BANDS: tuple[str, str, str] = ("g", "r", "z")
STAMP = 101  # pixels on a side of a cutout
PIXSCALE = 0.262  # arcsec per pixel
ZERO_POINT = 22.5  # AB magnitude of 1 nanomaggy
BAND_PSF_FACTORS: tuple[float, float, float] = (1.05, 1.00, 0.94)  # g, r, z FWHM / r-band FWHM


class ImageShapeError(LenslibError, ValueError):
    """An array is not a square g, r, z image (or stack of them) of the expected size."""


def mag_to_nmgy(mag: Any) -> np.ndarray:
    """AB magnitude → flux in nanomaggies."""
    return 10.0 ** ((ZERO_POINT - np.asarray(mag, dtype=float)) / 2.5)


def nmgy_to_mag(flux: Any) -> np.ndarray:
    """Flux in nanomaggies → AB magnitude; NaN where the flux is not positive or not finite."""
    f = np.asarray(flux, dtype=float)
    ok = np.isfinite(f) & (f > 0)
    return np.where(ok, ZERO_POINT - 2.5 * np.log10(np.where(ok, f, 1.0)), np.nan)


def depth_mag(psfdepth: Any) -> np.ndarray:
    """5σ point-source depth m5 = 22.5 − 2.5 log10(5/√psfdepth) (mag) from ``psfdepth`` (nmgy⁻²).

    NaN where ``psfdepth`` is not positive or not finite."""
    d = np.asarray(psfdepth, dtype=float)
    ok = np.isfinite(d) & (d > 0)
    return np.where(ok, ZERO_POINT - 2.5 * np.log10(5.0 / np.sqrt(np.where(ok, d, 1.0))), np.nan)


def psfdepth_from_mag(m5: Any) -> np.ndarray:
    """Inverse of :func:`depth_mag`: ``psfdepth`` (nmgy⁻²) of a 5σ depth ``m5`` (mag)."""
    return (5.0 / mag_to_nmgy(m5)) ** 2


def to_chw(arr: Any, name: str = "array", size: int | None = STAMP, ndim: int = 3) -> np.ndarray:
    """(..., H, W, 3) or (..., 3, H, W) → (..., 3, H, W) for square g, r, z images of ``ndim`` axes
    (3: one image, 4: a stack). Anything else raises :class:`ImageShapeError` naming ``name``;
    ``size`` (pixels on a side) is checked unless None. Returns a view where it can."""
    a = np.asarray(arr)
    if a.ndim == ndim and a.shape[-1] == 3 and a.shape[-3] == a.shape[-2]:
        a = np.moveaxis(a, -1, -3)
    elif not (a.ndim == ndim and a.shape[-3] == 3 and a.shape[-2] == a.shape[-1]):
        raise ImageShapeError(f"{name}: image has shape {a.shape}; expected (H, W, 3) or (3, H, W) with bands g, r, z")
    if size is not None and a.shape[-1] != size:
        raise ImageShapeError(f"{name}: image is {a.shape[-1]}x{a.shape[-1]} px; expected {size}x{size}")
    return a


def to_hwc(arr: Any, name: str = "array", size: int | None = STAMP, ndim: int = 3) -> np.ndarray:
    """(..., 3, H, W) or (..., H, W, 3) → (..., H, W, 3), the layout of the cutout files."""
    return np.moveaxis(to_chw(arr, name, size, ndim), -3, -1)


def rgb(chw: Any, stretch: float = 0.08, q: float = 6.0) -> np.ndarray:
    """Lupton et al. (2004) colour image (H, W, 3) uint8 of a g, r, z (3, H, W) image in nanomaggies
    (z red, r green, g blue); NaN pixels are shown as 0."""
    img = np.nan_to_num(np.asarray(chw, dtype=float))
    return make_lupton_rgb(img[2], img[1], img[0], minimum=0.0, stretch=stretch, Q=q)

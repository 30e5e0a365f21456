"""Non-parametric (pixelated) sources: source-plane image stamps, lensed by ray shooting.

A stamp is a (C, H, W) image of the unlensed source, C = 1 or 3 bands (g, r, z), pixels of
``pixscale`` arcsec, centred on (center_x, center_y) in the source plane. Its pixel (row i, column j)
sits at x = center_x + (j − (W−1)/2)·pixscale, y = center_y + (i − (H−1)/2)·pixscale: rows go
with y and columns with x, as in the image stamps (and lenstronomy's ``INTERPOL``).

Between pixel centres the surface brightness is interpolated bilinearly, falling linearly to zero
over the one pixel beyond the edge (zero padding) — lenstronomy ``INTERPOL``'s interpolant. Each
tent function integrates to pixscale², so the total flux is Σ pixels, whatever the stamp's pixel
size: stamps are normalised to unit total flux per band.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lenslib.injection._tensor import tensors
from lenslib.injection.errors import InjectionError
from lenslib.injection.psf import gaussian_psf_fft
from lenslib.injection.render import LensModelBatch, _chunk_rays, _sub_batch, pixel_grid
from lenslib.survey import BANDS, PIXSCALE, STAMP


class SourceStampError(InjectionError):
    """A source stamp is unusable (shape, non-finite pixels, no flux in a band)."""


def validate_stamps(images: Any, name: str = "source stamps", labels: Sequence[int] | None = None) -> np.ndarray:
    """Check source stamps and return them as (N, C, H, W).

    Parameters
    ----------
    images : array or tensor
        (H, W), (C, H, W) or (N, C, H, W), C = 1 or 3 (g, r, z); any flux unit.
    name : str
        What the stamps are, for the error messages.
    labels : sequence of int, optional
        The number to call each stamp by in messages (e.g. its injection index); default 0 … N−1.

    Returns
    -------
    numpy.ndarray
        (N, C, H, W), float64 if the input is float64, else float32.

    Raises
    ------
    SourceStampError
        Wrong number of dimensions, fewer than 2 pixels per side, C not 1 or 3, a NaN or infinite
        pixel, or a band whose total is not > 0 (negative pixels, e.g. noise, are allowed).
    """
    arr = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    shape = arr.shape
    if arr.ndim in (2, 3):
        arr = arr.reshape((1,) * (4 - arr.ndim) + shape)
    if arr.ndim != 4 or arr.shape[1] not in (1, 3) or min(arr.shape[2:]) < 2:
        raise SourceStampError(f"{name} must be (H, W), (C, H, W) or (N, C, H, W) with C = 1 or 3 bands and at "
                               f"least 2 pixels per side, got shape {shape}")
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise SourceStampError(f"{name} must be real numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64 if arr.dtype == np.float64 else np.float32, copy=False)
    band = (lambda c: f"band {BANDS[c]}") if arr.shape[1] == 3 else (lambda c: "the single band")  # noqa: E731
    label = (lambda k: labels[k]) if labels is not None and len(labels) == len(arr) else (lambda k: k)  # noqa: E731
    finite = np.isfinite(arr).all((-2, -1))
    if not finite.all():
        k, c = np.argwhere(~finite)[0]
        raise SourceStampError(f"{name}: stamp {label(k)}, {band(c)} has NaN or infinite pixels")
    total = arr.sum((-2, -1), dtype=np.float64)
    if not (total > 0).all():
        k, c = np.argwhere(~(total > 0))[0]
        raise SourceStampError(f"{name}: stamp {label(k)}, {band(c)} has total flux {total[k, c]:.4g}; "
                               "each band needs a total > 0")
    return arr


@dataclass
class PixelatedSource:
    """A batch of pixelated sources, each band normalised to unit total flux.

    Attributes
    ----------
    image : torch.Tensor
        (B, C, H, W) stamps (any flux unit; replaced by their unit-flux normalisation).
    pixscale : float
        Source-plane pixel size, arcsec.
    center_x, center_y : torch.Tensor
        (B,) source-plane positions of the stamp centres, arcsec.
    """

    image: torch.Tensor
    pixscale: float
    center_x: torch.Tensor
    center_y: torch.Tensor

    def __post_init__(self) -> None:
        self.image = self.image / self.image.sum((-2, -1), keepdim=True)
        self.sb_scale = 1.0 / self.pixscale**2  # pixel flux fraction → surface brightness per arcsec²
        h, w = self.image.shape[-2:]
        # arcsec → grid_sample's normalised coordinates, ±1 at the centres of the edge pixels
        self.to_grid = (2 / ((w - 1) * self.pixscale), 2 / ((h - 1) * self.pixscale))

    def index(self, idx: torch.Tensor | slice) -> PixelatedSource:
        """The sub-batch ``idx`` (computed fields are kept, not recomputed)."""
        return _sub_batch(self, idx)

    def surface_brightness(self, bx: torch.Tensor, by: torch.Tensor) -> torch.Tensor:
        """Surface brightness per arcsec² (unit total flux per band), (B, C, P), at source-plane points
        (B, P) arcsec: bilinear between pixel centres, zero beyond one pixel outside the stamp."""
        gx = (bx - self.center_x[:, None]) * self.to_grid[0]
        gy = (by - self.center_y[:, None]) * self.to_grid[1]
        grid = torch.stack([gx, gy], -1)[:, None]  # (B, 1, P, 2): x picks the column, y the row
        sb = F.grid_sample(self.image, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
        return sb[:, :, 0] * self.sb_scale


def lensed_pixelated_image(lens: LensModelBatch, source: PixelatedSource, *, nx: int = STAMP,
                           pixscale: float = PIXSCALE, oversample: int = 4) -> torch.Tensor:
    """Lensed images of pixelated sources of unit total flux per band.

    Parameters
    ----------
    lens : LensModelBatch
        B lenses (SIE + shear).
    source : PixelatedSource
        B stamps (C bands).
    nx : int
        Image stamp side, pixels.
    pixscale : float
        Image pixel size, arcsec.
    oversample : int
        Sub-pixel rays per pixel side; each pixel is the mean of its oversample² rays.

    Returns
    -------
    torch.Tensor
        (B, C, nx, nx) flux fractions per pixel (no PSF); each band sums to the magnification of
        the part of the lensed source inside the stamp (1 unlensed).
    """
    if oversample < 1:
        raise ValueError(f"oversample must be >= 1, got {oversample}")
    m, (b_all, c) = nx * oversample, source.image.shape[:2]
    x, y = pixel_grid(nx, pixscale, oversample, source.image.dtype, source.image.device)
    x, y = x.reshape(1, -1), y.reshape(1, -1)
    step = max(1, _chunk_rays(x.device) // (m * m * c))
    out = []
    for b0 in range(0, b_all, step):
        sl = slice(b0, min(b0 + step, b_all))
        sb = source.index(sl).surface_brightness(*lens.index(sl).source_position(x, y))
        out.append(sb.reshape(-1, c, nx, oversample, nx, oversample).mean(dim=(3, 5)))
    return torch.cat(out) * pixscale**2


def render_pixelated_arc(*, theta_E: Any, e1: Any, e2: Any, gamma1: Any, gamma2: Any, center_x: Any, center_y: Any,
                         image: Any, source_pixscale: float, source_x: Any, source_y: Any, flux: Any,
                         psf_fwhm: Any = None, nx: int = STAMP, pixscale: float = PIXSCALE,
                         oversample: int = 4) -> torch.Tensor:
    """One band of a lensed pixelated source, in the units of ``flux`` per pixel.

    Parameters
    ----------
    theta_E, e1, e2, gamma1, gamma2, center_x, center_y
        SIE + shear (lenstronomy ``SIE`` and ``SHEAR``), arcsec.
    image : array or tensor
        The source stamp (H, W), or one per item (B, H, W); normalised to unit flux here.
    source_pixscale : float
        Stamp pixel size, arcsec.
    source_x, source_y
        Stamp centre in the source plane, arcsec.
    flux
        Total unlensed source flux: the image sums to magnification × flux.
    psf_fwhm
        Gaussian PSF FWHM, arcsec (None: no PSF).
    nx, pixscale, oversample
        Image side (pixels), image pixel size (arcsec), sub-pixel rays per pixel side.

    Returns
    -------
    torch.Tensor
        B + (nx, nx), B the broadcast shape of the parameters and the image's leading axis.
    """
    image = image if isinstance(image, torch.Tensor) else np.asarray(image)
    stamps = validate_stamps(image if image.ndim == 2 else image[:, None], "image")
    args = (theta_E, e1, e2, gamma1, gamma2, center_x, center_y, source_x, source_y, flux) + \
        (() if psf_fwhm is None else (psf_fwhm,))
    t = tensors(stamps, *args)
    batch = torch.broadcast_shapes(*(v.shape for v in t[1:]), (() if image.ndim == 2 else t[0].shape[:1]))
    flat = [v.expand(batch).reshape(-1) for v in t[1:]]
    img = t[0].expand(*batch, *t[0].shape[1:]) if batch else t[0][0]
    src = PixelatedSource(img.reshape(-1, *t[0].shape[1:]), source_pixscale, flat[7], flat[8])
    out = lensed_pixelated_image(LensModelBatch(*flat[:7]), src, nx=nx, pixscale=pixscale, oversample=oversample)
    out = out[:, 0] * flat[9][:, None, None]
    if psf_fwhm is not None:
        out = gaussian_psf_fft(out, flat[10] / pixscale)
    return out.reshape(*batch, nx, nx)


@dataclass
class PixelatedStamps:
    """Source stamps for :meth:`InjectionEngine.inject` / :meth:`~InjectionEngine.arcs`.

    Attributes
    ----------
    stamps : array, tensor or callable
        (N or 1, C, H, W) stamps, one per injection or one for all (also (C, H, W) or (H, W)), C = 1 or
        3 (g, r, z); or a callable ``stamps(index)`` returning those of the injections ``index``
        (numpy int array of absolute injection indices), len(index) or 1 of them, so that large
        families need not sit in memory. Only the band ratios matter: the flux comes from the
        injection parameters (see :class:`InjectionEngine`).
    pixscale : float
        Stamp pixel size, arcsec (source plane).
    """

    stamps: np.ndarray | torch.Tensor | Callable[[np.ndarray], Any]
    pixscale: float

    def __post_init__(self) -> None:
        if not (isinstance(self.pixscale, numbers.Real) and math.isfinite(self.pixscale) and self.pixscale > 0):
            raise SourceStampError(f"pixscale must be a finite number > 0 arcsec, got {self.pixscale!r}")
        if not callable(self.stamps):
            self.stamps = validate_stamps(self.stamps)

    def take(self, index: np.ndarray, n: int) -> np.ndarray:
        """Validated stamps (len(index) or 1, C, H, W) for the injections ``index`` of a run of ``n``."""
        if callable(self.stamps):
            got = validate_stamps(self.stamps(index), f"sources(index) for injections {index[0]}…{index[-1]}",
                                  labels=[int(i) for i in index])
            if got.shape[0] not in (1, len(index)):
                raise SourceStampError(f"sources(index) returned {got.shape[0]} stamps for {len(index)} injections")
            return got
        if self.stamps.shape[0] not in (1, n):
            raise SourceStampError(f"{self.stamps.shape[0]} source stamps for {n} injections "
                                   "(give one stamp or one per injection)")
        return self.stamps if self.stamps.shape[0] == 1 else self.stamps[index]

"""Rendering: ray-shooting on an oversampled grid, block averaging, Gaussian PSF by FFT, Poisson noise."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from lenslib.injection._tensor import as_tensor, tensors
from lenslib.injection.lens import deflection, ellipticity_to_phi_q, rotate
from lenslib.injection.source import sersic_bn, sersic_total_flux_factor

FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


def pixel_grid(nx: int = 101, pixscale: float = 0.262, oversample: int = 1, dtype=torch.float32,
               device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) in arcsec of the (nx·oversample)² sub-pixel centres; each pixel holds its own block."""
    m = nx * oversample
    c = (torch.arange(m, dtype=dtype, device=device) - (m - 1) / 2) * (pixscale / oversample)
    y, x = torch.meshgrid(c, c, indexing="ij")
    return x, y


def gaussian_psf_fft(image: torch.Tensor, fwhm_pix: Any) -> torch.Tensor:
    """Blur the last two axes with a Gaussian of FWHM ``fwhm_pix`` pixels (circular FFT; flux conserved)."""
    h, w = image.shape[-2:]
    sigma = as_tensor(fwhm_pix, image.dtype, image.device) * FWHM_TO_SIGMA
    ky = torch.fft.fftfreq(h, dtype=image.dtype, device=image.device)
    kx = torch.fft.rfftfreq(w, dtype=image.dtype, device=image.device)
    k2 = ky[:, None] ** 2 + kx[None, :] ** 2
    transfer = torch.exp(-2 * math.pi**2 * sigma[..., None, None] ** 2 * k2)
    return torch.fft.irfft2(torch.fft.rfft2(image) * transfer, s=(h, w))


def render_arc(*, theta_E: Any, e1: Any, e2: Any, gamma1: Any, gamma2: Any, center_x: Any, center_y: Any,
               R_sersic: Any, n_sersic: Any, e1_source: Any, e2_source: Any, source_x: Any, source_y: Any,
               flux: Any, psf_fwhm: Any = None, nx: int = 101, pixscale: float = 0.262, oversample: int = 4,
               bn_method: str = "ciotti_bertin") -> torch.Tensor:
    """One band of a lensed elliptical Sérsic source, in the units of ``flux`` per pixel.

    ``flux`` is the total unlensed source flux, so the image sums to magnification × flux.
    Parameters broadcast to a batch shape B; the result has shape B + (nx, nx). ``psf_fwhm`` is the
    Gaussian PSF FWHM in arcsec (None: no PSF)."""
    args = (theta_E, e1, e2, gamma1, gamma2, center_x, center_y, R_sersic, n_sersic, e1_source, e2_source,
            source_x, source_y, flux)
    p = torch.broadcast_tensors(*tensors(*args))
    dtype, device = p[0].dtype, p[0].device
    t = lambda v: as_tensor(v, dtype, device)  # noqa: E731
    (theta_E, e1, e2, gamma1, gamma2, center_x, center_y, R_sersic, n_sersic, e1_source, e2_source,
     source_x, source_y, flux) = (v[..., None, None] for v in p)
    x, y = pixel_grid(nx, pixscale, oversample, dtype, device)
    ax, ay = deflection(x, y, theta_E=theta_E, e1=e1, e2=e2, gamma1=gamma1, gamma2=gamma2,
                        center_x=center_x, center_y=center_y)
    bx, by = x - ax - source_x, y - ay - source_y
    phi, q = ellipticity_to_phi_q(e1_source, e2_source)
    xs, ys = rotate(bx, by, phi)
    R = torch.sqrt(q * xs * xs + ys * ys / q).clamp_min(1e-12)
    n_np = n_sersic.detach().cpu().numpy()
    bn = sersic_bn(n_np, bn_method)
    norm = sersic_total_flux_factor(n_np, R_sersic.detach().cpu().numpy(), bn)
    bn_t, norm_t = t(bn), t(norm)
    sb = torch.exp(-bn_t * ((R / R_sersic) ** (1.0 / n_sersic) - 1.0)) * (flux / norm_t)
    batch = sb.shape[:-2]
    img = sb.reshape(*batch, nx, oversample, nx, oversample).mean(dim=(-3, -1)) * pixscale**2
    if psf_fwhm is not None:
        fwhm = torch.broadcast_to(t(psf_fwhm), batch) if batch else t(psf_fwhm)
        img = gaussian_psf_fft(img, fwhm / pixscale)
    return img


def add_poisson_noise(image: torch.Tensor, gain: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Shot noise of the arc: E = gain·max(I, 0) electrons, E′ ~ Poisson(E), I′ = I + (E′ − E)/gain.

    Computed in float64 (a gain of 10¹² must give back the input); returns the input dtype."""
    if gain <= 0:
        raise ValueError(f"gain must be > 0 e-/nmgy, got {gain}")
    img = image.to(torch.float64)
    electrons = gain * img.clamp_min(0)
    noisy = torch.poisson(electrons, generator=generator)
    return (img + (noisy - electrons) / gain).to(image.dtype)

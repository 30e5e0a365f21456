"""Gaussian PSF by FFT: circular convolution with the transfer function exp(−2π²σ²f²), flux conserving."""

from __future__ import annotations

import math
from typing import Any

import torch

from lenslib.injection._tensor import as_tensor
from lenslib.injection.photometry import FWHM_TO_SIGMA


def _circulant_gaussian(n: int, sigma: torch.Tensor) -> torch.Tensor:
    """(..., n, n) circulant matrices C[i, j] = k[(i − j) mod n], k the inverse FFT of exp(−2π²σ²f²).

    The kernel is even (k[d] = k[n − d]), so row i of C is k[(j − i) mod n] over j: the rows are
    windows of [k, k], taken as strided views and copied once (no per-element gather)."""
    f = torch.fft.rfftfreq(n, dtype=sigma.dtype, device=sigma.device)
    kernel = torch.fft.irfft(torch.exp(-2 * math.pi**2 * sigma[..., None] ** 2 * f**2), n=n)
    return torch.cat([kernel, kernel], -1).unfold(-1, n, 1)[..., 1:n + 1, :].flip(-2)


def gaussian_psf_fft(image: torch.Tensor, fwhm_pix: Any) -> torch.Tensor:
    """Blur the last two axes with a Gaussian of FWHM ``fwhm_pix`` pixels (circular; flux conserved).

    Multiplying the 2-D FFT by exp(−2π²σ²(f_x² + f_y²)) is separable, so it is applied as two 1-D
    circular convolutions (circulant matrices from the inverse FFT of the 1-D transfer function):
    the same operation, about 3× faster than a 2-D FFT at the prime size 101.
    ``fwhm_pix`` broadcasts against the leading dimensions of ``image`` (e.g. (B, 3) for (B, 3, H, W))."""
    h, w = image.shape[-2:]
    sigma = as_tensor(fwhm_pix, image.dtype, image.device) * FWHM_TO_SIGMA
    cy = _circulant_gaussian(h, sigma)
    cx = cy if w == h else _circulant_gaussian(w, sigma)
    return cy @ image @ cx.transpose(-1, -2)


def gaussian_psf_bands(image: torch.Tensor, fwhm_pix: Any, scale: Any = None,
                       out: torch.Tensor | None = None) -> torch.Tensor:
    """One image per item (B, H, W) blurred by K Gaussians each (FWHM ``fwhm_pix`` (B, K) pixels) and
    multiplied by ``scale`` (B, K): (B, K, H, W), equal to :func:`gaussian_psf_fft` of the K scaled copies.

    The bands of an injection share its lensed image, so the first pass is one product of the K
    stacked row matrices (K·H × H) with the image: fewer, larger matrix products than K separate ones."""
    b, h, w = image.shape
    sigma = as_tensor(fwhm_pix, image.dtype, image.device) * FWHM_TO_SIGMA
    k = sigma.shape[-1]
    cy = _circulant_gaussian(h, sigma)
    cx = cy if w == h else _circulant_gaussian(w, sigma)
    if scale is not None:
        cy = cy * as_tensor(scale, image.dtype, image.device)[..., None, None]
    return torch.matmul((cy.reshape(b, k * h, h) @ image).reshape(b, k, h, w), cx.transpose(-1, -2), out=out)

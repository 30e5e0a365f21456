"""Injection engine: SIE + external shear lensing of elliptical Sérsic sources into real hosts, in PyTorch.

Public, lenstronomy-style functions (numpy arrays or tensors; leading batch dimensions broadcast):

- :func:`deflection` — SIE + shear deflection angles (lenstronomy ``SIE`` and ``SHEAR`` conventions)
- :func:`render_arc` — one band of a lensed Sérsic source on an oversampled pixel grid, optionally
  blurred by a Gaussian PSF, in the units of the total unlensed source flux
- :func:`render_pixelated_arc` — the same for a pixelated (non-parametric) source stamp, interpolated
  bilinearly as lenstronomy's ``INTERPOL``; :func:`lensed_pixelated_image`, :class:`PixelatedSource` and
  :func:`validate_stamps` (raising :class:`SourceStampError`) are its batched parts
- :func:`add_poisson_noise` — arc shot noise with a gain (e⁻ per nanomaggy)

Whole injections: :class:`InjectionPriors` (from YAML) → :func:`draw` → :class:`InjectionParams`
→ :meth:`InjectionEngine.inject` into host cutouts → :class:`InjectionResult`; pixelated sources
(:class:`PixelatedStamps`, stamps or a callable per batch) replace or blend with the Sérsic ones
(``InjectionEngine.source_mix``); :mod:`lenslib.injection.realistic` makes seeded clumpy, colour-graded
star-forming galaxies as such stamps (``realistic_sources(seeds)``).

Pixel convention: pixel (row i, column j) is centred at x = (j − (nx−1)/2)·pixscale,
y = (i − (nx−1)/2)·pixscale arcsec; x grows with the column. Bands, stamp size, pixel scale, zero point
and the band PSF widths are DR10's (:mod:`lenslib.survey`); the engine does not depend on the data layer.
"""

from lenslib.injection.engine import InjectionEngine, InjectionError, InjectionResult, hosts_chw
from lenslib.injection.lens import deflection, ellipticity_to_phi_q, phi_q_to_ellipticity
from lenslib.injection.noise import add_poisson_noise, add_poisson_noise_batch
from lenslib.injection.photometry import arc_annulus_snr, sigma_pix
from lenslib.injection.pixelated import (
    PixelatedSource,
    PixelatedStamps,
    SourceStampError,
    lensed_pixelated_image,
    render_pixelated_arc,
    validate_stamps,
)
from lenslib.injection.priors import UNRESTRICTED_BETA_FRAC, InjectionParams, InjectionPriors, PriorsError, draw
from lenslib.injection.psf import gaussian_psf_bands, gaussian_psf_fft
from lenslib.injection.render import LensModelBatch, SourceModel, lensed_unit_image, pixel_grid, render_arc
from lenslib.injection.source import sersic_bn, sersic_total_flux_factor

__all__ = ["deflection", "render_arc", "add_poisson_noise", "add_poisson_noise_batch", "gaussian_psf_fft",
           "gaussian_psf_bands", "pixel_grid", "sersic_bn",
           "sersic_total_flux_factor", "ellipticity_to_phi_q", "phi_q_to_ellipticity", "lensed_unit_image",
           "LensModelBatch", "SourceModel", "InjectionEngine", "InjectionError", "InjectionResult", "hosts_chw",
           "InjectionPriors", "InjectionParams", "PriorsError", "draw", "UNRESTRICTED_BETA_FRAC",
           "sigma_pix", "arc_annulus_snr", "render_pixelated_arc", "lensed_pixelated_image", "PixelatedSource",
           "PixelatedStamps", "SourceStampError", "validate_stamps"]

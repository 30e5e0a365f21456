"""The same injections rendered by lenstronomy (an independent, peer-reviewed code), for comparison.

lenstronomy's ``SERSIC_ELLIPSE`` uses b_n = 1.9992 n − 0.3271; render lenslib with
``bn_method="lenstronomy"`` (or patch lenstronomy's b_n) to compare like with like.
"""

from __future__ import annotations

import numpy as np

from lenslib.injection.lens import phi_q_to_ellipticity
from lenslib.injection.priors import InjectionParams
from lenslib.injection.source import sersic_bn, sersic_total_flux_factor
from lenslib.survey import PIXSCALE, STAMP


def lenstronomy_arcs(params: InjectionParams, psf_fwhm: float | None, flux: np.ndarray | None = None, *,
                     nx: int = STAMP, pixscale: float = PIXSCALE, oversample: int = 4) -> np.ndarray:
    """(N, nx, nx) one-band images from lenstronomy ``ImageModel`` (SIE + SHEAR, SERSIC_ELLIPSE,
    supersampling ``oversample``, Gaussian PSF of FWHM ``psf_fwhm`` arcsec or none), with total
    unlensed fluxes ``flux`` (default: the r-band fluxes of ``params``). Clumps are not rendered."""
    from lenstronomy.Data.imaging_data import ImageData
    from lenstronomy.Data.psf import PSF
    from lenstronomy.ImSim.image_model import ImageModel
    from lenstronomy.LensModel.lens_model import LensModel
    from lenstronomy.LightModel.light_model import LightModel

    half = (nx - 1) / 2 * pixscale
    data = ImageData(image_data=np.zeros((nx, nx)), ra_at_xy_0=-half, dec_at_xy_0=-half,
                     transform_pix2angle=np.eye(2) * pixscale)
    psf = PSF(psf_type="NONE") if psf_fwhm is None else PSF(psf_type="GAUSSIAN", fwhm=psf_fwhm, pixel_size=pixscale,
                                                            truncation=6)
    model = ImageModel(data, psf, lens_model_class=LensModel(["SIE", "SHEAR"]),
                       source_model_class=LightModel(["SERSIC_ELLIPSE"]),
                       kwargs_numerics={"supersampling_factor": oversample})
    flux = params.fluxes_nmgy()[:, 1] if flux is None else np.asarray(flux, dtype=float)
    e1, e2 = phi_q_to_ellipticity(params.phi_lens, params.q_lens)
    es1, es2 = phi_q_to_ellipticity(params.phi_source, params.q_source)
    r_sersic = params.re_arcsec * np.sqrt(params.q_source)
    bn = sersic_bn(params.n_sersic, "lenstronomy")
    amp = flux / sersic_total_flux_factor(params.n_sersic, r_sersic, bn)  # surface brightness at R_sersic
    out = np.empty((len(params), nx, nx))
    for k in range(len(params)):
        lens = [dict(theta_E=params.theta_e[k], e1=e1[k], e2=e2[k], center_x=params.lens_x[k],
                     center_y=params.lens_y[k]), dict(gamma1=params.shear_g1[k], gamma2=params.shear_g2[k], ra_0=0,
                                                      dec_0=0)]
        src = [dict(amp=amp[k], R_sersic=r_sersic[k], n_sersic=params.n_sersic[k], e1=es1[k], e2=es2[k],
                    center_x=params.beta_x[k], center_y=params.beta_y[k])]
        out[k] = model.image(lens, src)
    return out


def lenstronomy_pixelated_arc(*, theta_E: float, e1: float, e2: float, gamma1: float, gamma2: float,
                              center_x: float, center_y: float, image: np.ndarray, source_pixscale: float,
                              source_x: float, source_y: float, flux: float, psf_fwhm: float | None = None,
                              nx: int = STAMP, pixscale: float = PIXSCALE, oversample: int = 4) -> np.ndarray:
    """(nx, nx) image of a lensed pixelated source from lenstronomy ``ImageModel``: SIE + SHEAR,
    ``INTERPOL`` light (bilinear between pixel centres, rows along y, zero beyond one pixel outside
    the stamp), supersampling ``oversample``, Gaussian PSF of FWHM ``psf_fwhm`` arcsec or none.

    ``image`` (H, W) is normalised to total unlensed flux ``flux``: INTERPOL takes surface brightness
    per arcsec² and integrates to amp × Σ image × scale², so it gets image / (Σ image · scale²) and amp = flux."""
    from lenstronomy.Data.imaging_data import ImageData
    from lenstronomy.Data.psf import PSF
    from lenstronomy.ImSim.image_model import ImageModel
    from lenstronomy.LensModel.lens_model import LensModel
    from lenstronomy.LightModel.light_model import LightModel

    half = (nx - 1) / 2 * pixscale
    data = ImageData(image_data=np.zeros((nx, nx)), ra_at_xy_0=-half, dec_at_xy_0=-half,
                     transform_pix2angle=np.eye(2) * pixscale)
    psf = PSF(psf_type="NONE") if psf_fwhm is None else PSF(psf_type="GAUSSIAN", fwhm=psf_fwhm, pixel_size=pixscale,
                                                            truncation=6)
    # a new model per image: INTERPOL caches its interpolator on first use
    model = ImageModel(data, psf, lens_model_class=LensModel(["SIE", "SHEAR"]),
                       source_model_class=LightModel(["INTERPOL"]),
                       kwargs_numerics={"supersampling_factor": oversample})
    img = np.asarray(image, dtype=float)
    lens = [dict(theta_E=theta_E, e1=e1, e2=e2, center_x=center_x, center_y=center_y),
            dict(gamma1=gamma1, gamma2=gamma2, ra_0=0, dec_0=0)]
    src = [dict(image=img / (img.sum() * source_pixscale**2), amp=flux, center_x=source_x, center_y=source_y,
                phi_G=0.0, scale=source_pixscale)]
    return model.image(lens, src)

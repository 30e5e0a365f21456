"""Injection engine core against lenstronomy (an independent, peer-reviewed code), plus its invariants."""

import numpy as np
import pytest
import torch
from scipy.special import gamma, gammaincinv

from lenslib.injection import add_poisson_noise, deflection, phi_q_to_ellipticity, render_arc, sersic_bn

NX, PIX = 101, 0.262


def _random_lens(rng, q=None):
    e1, e2 = phi_q_to_ellipticity(rng.uniform(0, np.pi), rng.uniform(0.3, 1.0) if q is None else q)
    g1, g2 = rng.normal(0, 0.05, 2)
    cx, cy = rng.normal(0, 0.05, 2)
    return dict(theta_E=rng.uniform(0.5, 3.0), e1=e1, e2=e2, gamma1=g1, gamma2=g2, center_x=cx, center_y=cy)


def test_deflection_matches_lenstronomy_sie_shear():
    from lenstronomy.LensModel.lens_model import LensModel

    lm = LensModel(["SIE", "SHEAR"])
    rng = np.random.default_rng(11)
    worst = 0.0
    for k in range(60):
        kw = _random_lens(rng, q=1.0 if k < 3 else (1 - 1e-7 if k < 5 else None))  # exact and near SIS
        x, y = rng.uniform(-6, 6, 400), rng.uniform(-6, 6, 400)
        keep = np.hypot(x - kw["center_x"], y - kw["center_y"]) > 0.1
        x, y = x[keep], y[keep]
        ref = lm.alpha(x, y, [{k2: kw[k2] for k2 in ("theta_E", "e1", "e2", "center_x", "center_y")},
                              dict(gamma1=kw["gamma1"], gamma2=kw["gamma2"], ra_0=0, dec_0=0)])
        ax, ay = deflection(x, y, **kw)
        worst = max(worst, np.abs(ax.numpy() - ref[0]).max(), np.abs(ay.numpy() - ref[1]).max())
    assert worst < 1e-4


def test_deflection_broadcasts_over_a_batch():
    x, y = torch.meshgrid(torch.linspace(-3, 3, 7), torch.linspace(-3, 3, 7), indexing="ij")
    te = torch.tensor([0.8, 1.5, 2.0])[:, None, None]
    ax, ay = deflection(x, y, theta_E=te, e1=0.1, e2=-0.05)
    assert ax.shape == (3, 7, 7)
    single = deflection(x, y, theta_E=1.5, e1=0.1, e2=-0.05)[0]
    assert torch.allclose(ax[1], single)


@pytest.fixture
def lenstronomy_exact_bn(monkeypatch):
    """lenstronomy's Sérsic uses b_n ≈ 1.9992 n − 0.3271; compare with the exact value."""
    from lenstronomy.LensModel.Profiles import sersic_utils

    monkeypatch.setattr(sersic_utils.SersicUtil, "b_n", staticmethod(lambda n: gammaincinv(2 * n, 0.5)))


@pytest.mark.parametrize("fwhm", [None, 1.1])
def test_render_arc_matches_lenstronomy(lenstronomy_exact_bn, fwhm):
    from lenstronomy.Data.imaging_data import ImageData
    from lenstronomy.Data.psf import PSF
    from lenstronomy.ImSim.image_model import ImageModel
    from lenstronomy.LensModel.lens_model import LensModel
    from lenstronomy.LightModel.light_model import LightModel

    data = ImageData(image_data=np.zeros((NX, NX)), transform_pix2angle=np.eye(2) * PIX,
                     ra_at_xy_0=-(NX - 1) / 2 * PIX, dec_at_xy_0=-(NX - 1) / 2 * PIX)
    psf = PSF(psf_type="GAUSSIAN", fwhm=fwhm, truncation=20) if fwhm else PSF(psf_type="NONE")
    model = ImageModel(data, psf, lens_model_class=LensModel(["SIE", "SHEAR"]),
                       source_model_class=LightModel(["SERSIC_ELLIPSE"]),
                       kwargs_numerics=dict(supersampling_factor=4, supersampling_convolution=False))
    rng = np.random.default_rng(5)
    for _ in range(8):
        lens = _random_lens(rng)
        es1, es2 = phi_q_to_ellipticity(rng.uniform(0, np.pi), rng.uniform(0.3, 1.0))
        R, n, flux = rng.uniform(0.1, 0.5), rng.uniform(0.5, 2.0), rng.uniform(0.5, 5)
        beta, a = lens["theta_E"] * np.sqrt(rng.uniform(0.01, 0.16)), rng.uniform(0, 2 * np.pi)
        sx, sy = beta * np.cos(a), beta * np.sin(a)
        bn = gammaincinv(2 * n, 0.5)
        amp = flux / (2 * np.pi * n * R**2 * np.exp(bn) * gamma(2 * n) / bn ** (2 * n))
        ref = model.image(
            kwargs_lens=[{k: lens[k] for k in ("theta_E", "e1", "e2", "center_x", "center_y")},
                         dict(gamma1=lens["gamma1"], gamma2=lens["gamma2"], ra_0=0, dec_0=0)],
            kwargs_source=[dict(amp=amp, R_sersic=R, n_sersic=n, e1=es1, e2=es2, center_x=sx, center_y=sy)])
        mine = render_arc(**lens, R_sersic=R, n_sersic=n, e1_source=es1, e2_source=es2, source_x=sx,
                          source_y=sy, flux=flux, psf_fwhm=fwhm, bn_method="exact").numpy()
        assert np.abs(mine - ref).sum() / np.abs(ref).sum() < 0.01


def test_unlensed_source_conserves_flux_with_and_without_psf():
    kw = dict(theta_E=0.0, e1=0.0, e2=0.0, gamma1=0.0, gamma2=0.0, center_x=0.0, center_y=0.0, R_sersic=0.3,
              n_sersic=1.0, e1_source=0.1, e2_source=0.0, source_x=0.2, source_y=-0.1, flux=2.5)
    assert float(render_arc(**kw).sum()) == pytest.approx(2.5, rel=2e-3)
    assert float(render_arc(**kw, psf_fwhm=1.3).sum()) == pytest.approx(float(render_arc(**kw).sum()), rel=1e-5)


def test_batch_equals_single_renders():
    kw = dict(e1=0.05, e2=0.02, gamma1=0.01, gamma2=-0.02, center_x=0.0, center_y=0.0, R_sersic=0.25,
              n_sersic=1.2, e1_source=0.0, e2_source=0.1, source_x=0.2, source_y=0.1, flux=1.0)
    tes = np.array([0.75, 1.5, 2.5])
    batch = render_arc(theta_E=tes, psf_fwhm=np.array([1.0, 1.2, 1.4]), **kw)
    assert batch.shape == (3, NX, NX)
    for i, te in enumerate(tes):
        single = render_arc(theta_E=float(te), psf_fwhm=float([1.0, 1.2, 1.4][i]), **kw)
        assert torch.allclose(batch[i].float(), single, atol=1e-6)


def test_bn_methods():
    n = np.array([0.5, 1.0, 2.0, 4.0])
    exact = sersic_bn(n, "exact")
    assert np.allclose(sersic_bn(n, "ciotti_bertin"), exact, rtol=1e-3)
    assert np.allclose(sersic_bn(n, "leading"), [2 / 3, 5 / 3, 11 / 3, 23 / 3])  # 2n − 1/3 by hand
    with pytest.raises(ValueError, match="b_n method"):
        sersic_bn(n, "approx")


def test_poisson_variance_is_signal_over_gain():
    img = torch.full((400, 400), 2.0, dtype=torch.float64)
    g = torch.Generator().manual_seed(3)
    noisy = add_poisson_noise(img, gain=150.0, generator=g)
    assert float((noisy - img).var()) == pytest.approx(2.0 / 150.0, rel=0.03)
    assert float((noisy - img).mean()) == pytest.approx(0.0, abs=3e-3 * (2.0 / 150) ** 0.5 * 10)


def test_gain_1e12_equals_no_noise_and_seeds_reproduce():
    img = render_arc(theta_E=1.5, e1=0.1, e2=0.0, gamma1=0.0, gamma2=0.0, center_x=0.0, center_y=0.0, R_sersic=0.3,
                     n_sersic=1.0, e1_source=0.0, e2_source=0.0, source_x=0.1, source_y=0.0, flux=3.0, psf_fwhm=1.2)
    quiet = add_poisson_noise(img, 1e12, torch.Generator().manual_seed(1))
    assert float((quiet - img).abs().max()) < 1e-5 * float(img.max())
    a = add_poisson_noise(img, 150.0, torch.Generator().manual_seed(7))
    b = add_poisson_noise(img, 150.0, torch.Generator().manual_seed(7))
    c = add_poisson_noise(img, 150.0, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(add_poisson_noise(torch.zeros(5, 5), 150.0), torch.zeros(5, 5))  # zero flux, zero noise
    with pytest.raises(ValueError, match="gain"):
        add_poisson_noise(img, 0.0)


def test_faint_arc_poisson_counts_are_independent_poisson_per_pixel():
    # ΣE is small here, so counts come from a Poisson total spread by a multinomial: per pixel the
    # mean and variance must equal E, and pixels must be uncorrelated, as independent Poisson draws are
    lam = torch.linspace(0.002, 0.6, 64, dtype=torch.float64).reshape(8, 8)
    g = torch.Generator().manual_seed(11)
    reps = 6000
    counts = torch.stack([add_poisson_noise(lam, 1.0, g) for _ in range(reps)]).reshape(reps, -1)
    assert float(lam.sum()) <= 16 * lam.numel()
    mean, var = counts.mean(0), counts.var(0)
    se = (lam.flatten() / reps).sqrt()
    assert float(((mean - lam.flatten()).abs() / se).max()) < 4.5
    assert float(((var / lam.flatten()) - 1).abs()[lam.flatten() > 0.1].max()) < 0.12
    corr = torch.corrcoef(counts[:, lam.flatten() > 0.3].T)
    off = corr[~torch.eye(len(corr), dtype=torch.bool)]
    assert float(off.abs().max()) < 5 / reps**0.5
    # the total is Poisson too (a multinomial with a fixed total would have no variance at all)
    assert float(counts.sum(1).var()) == pytest.approx(float(lam.sum()), rel=0.1)
    assert bool((counts == counts.round()).all()) and bool((counts >= 0).all())


def test_batched_poisson_equals_one_image_at_a_time():
    from lenslib.injection import add_poisson_noise_batch

    faint = torch.rand(3, 3, 20, 20, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 0.01
    bright = torch.full((1, 3, 20, 20), 5.0, dtype=torch.float64)  # > 16 e-/pixel: drawn pixel by pixel
    imgs = torch.cat([faint[:2], bright, faint[2:]]).float()
    batch = add_poisson_noise_batch(imgs, 150.0, [torch.Generator().manual_seed(s) for s in range(4)])
    one = torch.stack([add_poisson_noise(im, 150.0, torch.Generator().manual_seed(s)) for s, im in enumerate(imgs)])
    assert torch.equal(batch, one) and batch.dtype == torch.float32
    assert not torch.equal(batch[0], imgs[0]) and not torch.equal(batch[2], imgs[2])
    inplace = imgs.clone()
    out = add_poisson_noise_batch(inplace, 150.0, [torch.Generator().manual_seed(s) for s in range(4)], inplace=True)
    assert out is inplace and torch.equal(out, batch)
    with pytest.raises(ValueError, match="4 images but 3 generators"):
        add_poisson_noise_batch(imgs, 150.0, [None] * 3)

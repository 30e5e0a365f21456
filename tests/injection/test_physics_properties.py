"""Lens, source, PSF, noise and photometry physics against independent references and invariants.

References: lenstronomy (SIE, SHEAR, SERSIC_ELLIPSE, its ellipticity conventions), scipy (gammainc,
quad, ndimage.gaussian_filter), brute-force numpy loops, the statistics of Poisson counts, and
symmetries any SIE + shear deflection must have (hypothesis)."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, ndimage
from scipy.special import gammainc, gammaincinv

from lenslib.injection import (
    add_poisson_noise,
    add_poisson_noise_batch,
    arc_annulus_snr,
    deflection,
    ellipticity_to_phi_q,
    gaussian_psf_bands,
    gaussian_psf_fft,
    phi_q_to_ellipticity,
    sersic_bn,
    sersic_total_flux_factor,
    sigma_pix,
)
from lenslib.injection.lens import rotate, sie_lens_frame
from lenslib.injection.photometry import FWHM_TO_SIGMA, annulus_mask
from lenslib.injection.source import sersic_log_total_flux_factor

PROPS = settings(max_examples=25, deadline=None, derandomize=True, database=None)
angle = st.floats(0.0, math.pi)
axis_ratio = st.floats(0.2, 0.99)


def _lenstronomy_alpha(x, y, theta_E, e1, e2, gamma1=0.0, gamma2=0.0, center_x=0.0, center_y=0.0):
    from lenstronomy.LensModel.lens_model import LensModel

    return LensModel(["SIE", "SHEAR"]).alpha(
        x, y, [dict(theta_E=theta_E, e1=e1, e2=e2, center_x=center_x, center_y=center_y),
               dict(gamma1=gamma1, gamma2=gamma2, ra_0=0, dec_0=0)])


def _grid(n=9, half=3.0):
    # a grid that avoids the singular centre (half-integer steps)
    v = np.linspace(-half, half, n) + 0.137
    return np.meshgrid(v, v, indexing="xy")


# ---------------------------------------------------------------- lens.py


def test_ellipticity_conventions_match_lenstronomy():
    """(φ, q) ↔ (e1, e2) as lenstronomy's param_util, incl. its |e| → 0.9999 clamp, on floats, arrays, tensors."""
    from lenstronomy.Util import param_util

    phi, q = np.array([0.0, 0.3, 1.2, 2.9, -0.7]), np.array([1.0, 0.5, 0.8, 0.25, 0.95])
    ref = param_util.phi_q2_ellipticity(phi, q)
    e_np = phi_q_to_ellipticity(phi, q)
    e_t = phi_q_to_ellipticity(torch.tensor(phi), torch.tensor(q))
    assert isinstance(e_np[0], np.ndarray) and isinstance(e_t[0], torch.Tensor)
    np.testing.assert_allclose(e_np, ref, atol=1e-14)
    np.testing.assert_allclose(torch.stack(e_t).numpy(), ref, atol=1e-14)
    assert phi_q_to_ellipticity(0.4, 0.6) == pytest.approx(param_util.phi_q2_ellipticity(0.4, 0.6), abs=1e-14)

    e1 = np.array([0.0, 0.2, -0.3, 0.9, 1.0, 1.5, -2.0])
    e2 = np.array([0.0, -0.1, 0.25, 0.3, 0.0, 0.4, 0.0])
    ref_phi, ref_q = param_util.ellipticity2phi_q(e1, e2)
    got_phi, got_q = ellipticity_to_phi_q(torch.tensor(e1), torch.tensor(e2))
    np.testing.assert_allclose(got_phi.numpy(), ref_phi, atol=1e-14)
    np.testing.assert_allclose(got_q.numpy(), ref_q, rtol=1e-12)
    assert bool((got_q > 0).all())  # |e| >= 1 is clamped to a thin but valid lens


def test_rotate_gives_coordinates_in_the_rotated_frame():
    """rotate(x, y, φ) are the coordinates along axes at angle φ: a point on the new x′ axis has y′ = 0."""
    x, y = rotate(torch.tensor(1.0), torch.tensor(0.0), torch.tensor(math.pi / 2))
    assert float(x) == pytest.approx(0.0, abs=1e-7) and float(y) == pytest.approx(-1.0)
    x, y = rotate(torch.tensor(math.cos(0.4)), torch.tensor(math.sin(0.4)), torch.tensor(0.4))
    assert float(x) == pytest.approx(1.0) and float(y) == pytest.approx(0.0, abs=1e-7)


def test_mixed_spherical_and_elliptical_batch_equals_one_lens_at_a_time():
    """A batch mixing q = 1 and q < 1 lenses: each lens as if rendered alone, and q < 1 as lenstronomy's SIE.

    Guards the SIS shortcut: it may be taken for the whole batch only when every lens is spherical."""
    x, y = _grid()
    phis = np.array([0.0, 0.4, 1.1, 0.0, 2.5])
    qs = np.array([1.0, 0.6, 0.35, 1.0, 0.9])
    tes = np.array([1.2, 0.8, 1.5, 2.0, 1.0])
    e1, e2 = phi_q_to_ellipticity(phis, qs)
    b = (slice(None), None, None)
    for dtype in (torch.float64, torch.float32):
        xt, yt = torch.tensor(x, dtype=dtype), torch.tensor(y, dtype=dtype)
        ax, ay = deflection(xt, yt, theta_E=torch.tensor(tes, dtype=dtype)[b], e1=torch.tensor(e1, dtype=dtype)[b],
                            e2=torch.tensor(e2, dtype=dtype)[b])
        assert ax.shape == (5, 9, 9) and ax.dtype == dtype
        tol = 1e-10 if dtype == torch.float64 else 1e-5
        for i in range(5):
            sx, sy = deflection(xt, yt, theta_E=float(tes[i]), e1=float(e1[i]), e2=float(e2[i]))
            assert float((ax[i] - sx).abs().max()) < tol and float((ay[i] - sy).abs().max()) < tol
            rx, ry = _lenstronomy_alpha(x, y, tes[i], e1[i], e2[i])
            assert np.abs(ax[i].double().numpy() - rx).max() < max(tol, 1e-6)
            assert np.abs(ay[i].double().numpy() - ry).max() < max(tol, 1e-6)


def test_all_spherical_batch_is_the_sis():
    """q = 1 everywhere: α = θ_E r̂ (the SIS), with the singular centre mapped to 0, not NaN."""
    x, y = torch.tensor([[0.0, 3.0, -1.0, 0.6]], dtype=torch.float64), torch.tensor([[0.0, 4.0, 0.0, -0.8]],
                                                                                 dtype=torch.float64)
    te = torch.tensor([[1.5], [0.5]], dtype=torch.float64)
    ax, ay = sie_lens_frame(x, y, te, torch.ones_like(te))
    r = torch.hypot(x, y)
    want_x = torch.where(r > 0, te * x / r.clamp_min(1e-300), 0.0)
    want_y = torch.where(r > 0, te * y / r.clamp_min(1e-300), 0.0)
    assert torch.allclose(ax, want_x, atol=1e-14) and torch.allclose(ay, want_y, atol=1e-14)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_deflection_at_the_lens_centre_is_zero(dtype):
    """At the centre an SIS and an SIE give 0 (the symmetric value), never NaN or inf, in both precisions."""
    zero = torch.zeros(3, 1, dtype=dtype)
    te = torch.full((3, 1), 1.3, dtype=dtype)
    q = torch.tensor([[1.0], [0.5], [1.0]], dtype=dtype)
    for qq in (q, q[:1], q[1:2]):
        ax, ay = sie_lens_frame(zero[: len(qq)], zero[: len(qq)], te[: len(qq)], qq)
        assert torch.equal(ax, torch.zeros_like(ax)) and torch.equal(ay, torch.zeros_like(ay))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_extremely_flattened_lens_stays_finite(dtype):
    """|e| ≥ 1 clamps q to ~5e-5; the deflection on the minor axis stays finite and odd in y."""
    x = torch.tensor([0.0, 0.0, 0.5], dtype=dtype)
    y = torch.tensor([1.0, -1.0, 0.0], dtype=dtype)
    ax, ay = deflection(x, y, theta_E=1.0, e1=torch.tensor(1.0, dtype=dtype), e2=0.0)
    assert bool(torch.isfinite(ax).all() and torch.isfinite(ay).all())
    assert float(ay[0]) > 0 and float(ay[0]) == pytest.approx(-float(ay[1]))


def test_gradients_of_a_mixed_batch_are_finite():
    """d α / d θ_E in a batch mixing q = 1 and q < 1 lenses: finite (the unused branch must stay finite)."""
    x, y = (torch.tensor(v) for v in _grid(5))
    te = torch.tensor([1.0, 1.4, 0.7], dtype=torch.float64)[:, None, None].requires_grad_()
    e1 = torch.tensor([0.0, 0.2, 0.0], dtype=torch.float64)[:, None, None]
    ax, ay = deflection(x, y, theta_E=te, e1=e1, e2=0.0)
    (ax.sum() + ay.sum()).backward()
    assert bool(torch.isfinite(te.grad).all())
    # α is linear in θ_E: the gradient is Σ α / θ_E
    want = ((ax + ay).sum((-2, -1)) / te[:, 0, 0]).detach()
    assert torch.allclose(te.grad[:, 0, 0], want, rtol=1e-10)


@PROPS
@given(te=st.floats(0.3, 3.0), phi=angle, q=axis_ratio, seed=st.integers(0, 2**16))
def test_centred_sie_deflection_is_odd(te, phi, q, seed):
    """A centred SIE without shear is point-symmetric: α(−x, −y) = −α(x, y)."""
    xy = torch.tensor(np.random.default_rng(seed).uniform(-4, 4, (2, 32)))
    e1, e2 = phi_q_to_ellipticity(phi, q)
    ax, ay = deflection(xy[0], xy[1], theta_E=te, e1=e1, e2=e2)
    bx, by = deflection(-xy[0], -xy[1], theta_E=te, e1=e1, e2=e2)
    assert torch.allclose(bx, -ax, atol=1e-12) and torch.allclose(by, -ay, atol=1e-12)


@PROPS
@given(te=st.floats(0.3, 3.0), phi=angle, q=st.floats(0.2, 1.0), turn=st.floats(-math.pi, math.pi),
       g=st.tuples(st.floats(-0.1, 0.1), st.floats(-0.1, 0.1)), c=st.tuples(st.floats(-0.3, 0.3),
                                                                          st.floats(-0.3, 0.3)),
       seed=st.integers(0, 2**16))
def test_rotating_lens_and_positions_rotates_the_deflection(te, phi, q, turn, g, c, seed):
    """Turning the sky by an angle t (positions, lens centre, major axis by t; shear angle by 2t) turns α by t."""
    x, y = torch.tensor(np.random.default_rng(seed).uniform(-4, 4, (2, 32)))
    e1, e2 = phi_q_to_ellipticity(phi, q)
    ax, ay = deflection(x, y, theta_E=te, e1=e1, e2=e2, gamma1=g[0], gamma2=g[1], center_x=c[0], center_y=c[1])
    ct, st_ = math.cos(turn), math.sin(turn)
    re1, re2 = phi_q_to_ellipticity(phi + turn, q)
    rg1, rg2 = g[0] * math.cos(2 * turn) - g[1] * math.sin(2 * turn), g[0] * math.sin(2 * turn) + g[1] * math.cos(
        2 * turn)
    bx, by = deflection(ct * x - st_ * y, st_ * x + ct * y, theta_E=te, e1=re1, e2=re2, gamma1=rg1, gamma2=rg2,
                        center_x=ct * c[0] - st_ * c[1], center_y=st_ * c[0] + ct * c[1])
    assert torch.allclose(bx, ct * ax - st_ * ay, atol=1e-9) and torch.allclose(by, st_ * ax + ct * ay, atol=1e-9)


@PROPS
@given(te=st.floats(0.3, 3.0), phi=angle, seed=st.integers(0, 2**16))
def test_sie_tends_to_the_sis_as_q_tends_to_1(te, phi, seed):
    """q = 1 − 1e-4 is within ~1e-4 θ_E of the SIS θ_E r̂ (and q = 1 − 1e-7 within 1e-6)."""
    xy = np.random.default_rng(seed).uniform(-4, 4, (2, 32))
    xy = xy[:, np.hypot(*xy) > 0.05]
    x, y = torch.tensor(xy)
    r = torch.hypot(x, y)
    for dq, tol in ((1e-4, 1e-4), (1e-7, 1e-6)):
        e1, e2 = phi_q_to_ellipticity(phi, 1 - dq)
        ax, ay = deflection(x, y, theta_E=te, e1=e1, e2=e2)
        assert float(torch.hypot(ax - te * x / r, ay - te * y / r).max()) < tol * te


def test_shear_and_offset_centre_match_lenstronomy():
    """Shear about the origin plus an off-centre SIE, on a grid and per point, as lenstronomy's SIE + SHEAR."""
    x, y = _grid(7, 2.5)
    kw = dict(theta_E=1.1, e1=0.12, e2=-0.2, gamma1=0.04, gamma2=-0.07, center_x=0.3, center_y=-0.2)
    rx, ry = _lenstronomy_alpha(x, y, **kw)
    ax, ay = deflection(torch.tensor(x), torch.tensor(y), **kw)
    assert np.abs(ax.numpy() - rx).max() < 1e-8 and np.abs(ay.numpy() - ry).max() < 1e-8


# ---------------------------------------------------------------- source.py


def test_exact_bn_halves_the_light():
    """'exact' b_n solves P(2n, b) = 1/2 (checked with scipy's gammainc), on arrays and tensors of either dtype."""
    n = np.array([0.3, 0.5, 1.0, 2.5, 4.0, 8.0])
    b = sersic_bn(n, "exact")
    np.testing.assert_allclose(gammainc(2 * n, b), 0.5, atol=1e-12)
    for dtype in (torch.float32, torch.float64):
        bt = sersic_bn(torch.tensor(n, dtype=dtype), "exact")
        assert isinstance(bt, torch.Tensor) and bt.dtype == dtype
        np.testing.assert_allclose(bt.double().numpy(), b, rtol=1e-6)
    assert float(sersic_bn(1.0, "exact")) == pytest.approx(1.678346990, abs=1e-8)  # the exponential disk


def test_ciotti_bertin_bn_converges_to_the_exact_value():
    """The Ciotti & Bertin series is within 5e-5/n³ of the exact b_n (its first neglected order), n = 0.5…20."""
    n = np.array([0.5, 0.7, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 10.0, 20.0])
    exact = gammaincinv(2 * n, 0.5)
    for values in (n, torch.tensor(n)):
        cb = np.asarray(sersic_bn(values))
        assert np.all(np.abs(cb - exact) < 5e-5 / n**3)
    assert float(sersic_bn(1.0)) == pytest.approx(1.678347, abs=5e-5)  # default method


def test_leading_and_lenstronomy_bn():
    """'leading' is 2n − 1/3 (the D06 engine); 'lenstronomy' is lenstronomy's own b_n; other names are refused."""
    from lenstronomy.LensModel.Profiles.sersic_utils import SersicUtil

    n = np.array([0.5, 1.0, 4.0])
    np.testing.assert_allclose(sersic_bn(n, "leading"), [2 / 3, 5 / 3, 23 / 3], rtol=1e-14)
    np.testing.assert_allclose(sersic_bn(n, "lenstronomy"), SersicUtil.b_n(n), rtol=1e-14)
    t = sersic_bn(torch.tensor(n), "leading")
    assert isinstance(t, torch.Tensor)
    with pytest.raises(ValueError, match="b_n method must be one of"):
        sersic_bn(n, "Exact")


@PROPS
@given(n=st.floats(0.3, 6.0), R=st.floats(0.05, 2.0))
def test_sersic_total_flux_is_the_integral_of_the_profile(n, R):
    """∫ exp(−b((r/R)^{1/n} − 1)) 2πr dr (scipy quad) equals the analytic total, numpy and torch alike."""
    b = float(gammaincinv(2 * n, 0.5))
    prof = lambda r: 2 * math.pi * r * math.exp(-b * ((r / R) ** (1 / n) - 1))  # noqa: E731
    edges = R * np.array([0, 0.5, 1, 3, 10, 100, 1e4]) ** n  # break up the integrand at scales of R
    ref = sum(integrate.quad(prof, lo, hi, limit=200)[0] for lo, hi in zip(edges[:-1], edges[1:], strict=False))
    assert float(sersic_total_flux_factor(n, R, b)) == pytest.approx(ref, rel=1e-6)
    t = sersic_total_flux_factor(torch.tensor(n, dtype=torch.float64), torch.tensor(R, dtype=torch.float64),
                                 torch.tensor(b, dtype=torch.float64))
    assert isinstance(t, torch.Tensor) and float(t) == pytest.approx(ref, rel=1e-6)
    assert float(sersic_log_total_flux_factor(n, R, b)) == pytest.approx(math.log(ref), abs=1e-6)
    # half of it inside R: b is the half-light b_n
    inner = sum(integrate.quad(prof, lo, hi, limit=200)[0] for lo, hi in ((0, 0.5 * R), (0.5 * R, R)))
    assert inner / ref == pytest.approx(0.5, abs=1e-6)


def test_elliptical_sersic_total_matches_lenstronomy_sersic_ellipse():
    """Σ of lenstronomy's SERSIC_ELLIPSE (amp 1, product-average radius) on a fine grid is the analytic total."""
    from lenstronomy.LensModel.Profiles.sersic_utils import SersicUtil
    from lenstronomy.LightModel.Profiles.sersic import SersicElliptic

    h = 0.01
    v = np.arange(-6, 6, h) + h / 2
    x, y = np.meshgrid(v, v)
    for n, R, q, phi in ((1.0, 0.4, 0.5, 0.3), (0.6, 0.3, 0.8, 2.0), (2.0, 0.25, 0.4, 1.0)):
        e1, e2 = phi_q_to_ellipticity(phi, q)
        img = SersicElliptic().function(x, y, amp=1.0, R_sersic=R, n_sersic=n, e1=e1, e2=e2)
        b = SersicUtil.b_n(n)
        assert img.sum() * h * h == pytest.approx(float(sersic_total_flux_factor(n, R, b)), rel=2e-3)


# ---------------------------------------------------------------- psf.py


def test_fwhm_to_sigma_is_the_gaussian_half_maximum():
    """A Gaussian of σ = FWHM·FWHM_TO_SIGMA is at half its peak at FWHM/2."""
    fwhm = 1.7
    assert math.exp(-((fwhm / 2) ** 2) / (2 * (fwhm * FWHM_TO_SIGMA) ** 2)) == pytest.approx(0.5, rel=1e-12)


@PROPS
@given(h=st.integers(3, 24), w=st.integers(3, 24), fwhm=st.floats(0.3, 8.0), seed=st.integers(0, 2**16))
def test_psf_conserves_flux_and_positivity(h, w, fwhm, seed):
    """The blur keeps the total flux, keeps a non-negative image non-negative (to rounding), any image shape."""
    img = torch.tensor(np.random.default_rng(seed).exponential(1.0, (2, h, w)))
    out = gaussian_psf_fft(img, fwhm)
    assert out.shape == img.shape
    assert torch.allclose(out.sum((-2, -1)), img.sum((-2, -1)), rtol=1e-10)
    assert float(out.min()) > -1e-10 * float(img.max())


@pytest.mark.parametrize("shape", [(13, 13), (12, 17), (19, 8)])
def test_psf_equals_scipy_periodic_gaussian_filter(shape):
    """For σ ≥ 1.5 px the transfer function exp(−2π²σ²f²) is scipy's wrapped Gaussian filter (aliasing < 1e-5)."""
    rng = np.random.default_rng(1)
    img = rng.exponential(1.0, shape)
    img[2, 3] += 50.0  # an off-centre point: a transposed or shifted kernel shows
    for fwhm in (3.6, 5.0):
        ref = ndimage.gaussian_filter(img, fwhm * FWHM_TO_SIGMA, mode="wrap", truncate=12.0)
        out = gaussian_psf_fft(torch.tensor(img), fwhm).numpy()
        assert np.abs(out - ref).max() < 1e-5 * img.max()


def test_psf_fwhm_broadcasts_per_band():
    """fwhm (B, K) for images (B, K, H, W): each band blurred by its own FWHM."""
    rng = np.random.default_rng(2)
    img = rng.exponential(1.0, (2, 3, 11, 14))
    fwhm = np.array([[3.5, 4.0, 5.0], [6.0, 3.3, 4.4]])
    out = gaussian_psf_fft(torch.tensor(img), torch.tensor(fwhm)).numpy()
    for b in range(2):
        for k in range(3):
            ref = ndimage.gaussian_filter(img[b, k], fwhm[b, k] * FWHM_TO_SIGMA, mode="wrap", truncate=12.0)
            assert np.abs(out[b, k] - ref).max() < 1e-5 * img.max()


@pytest.mark.parametrize("shape", [(9, 9), (10, 13)])
def test_psf_bands_are_scaled_blurs_of_the_shared_image(shape):
    """gaussian_psf_bands: band k of item b is scale[b, k] × (image[b] blurred at fwhm[b, k]) (scipy reference)."""
    rng = np.random.default_rng(3)
    img = rng.exponential(1.0, (2, *shape))
    fwhm = np.array([[3.4, 4.2, 5.1], [3.9, 6.0, 4.5]])
    scale = np.array([[1.0, 2.5, 0.3], [4.0, 0.7, 1.5]])
    out = gaussian_psf_bands(torch.tensor(img), torch.tensor(fwhm), torch.tensor(scale))
    plain = gaussian_psf_bands(torch.tensor(img), torch.tensor(fwhm))
    buf = torch.empty(2, 3, *shape, dtype=torch.float64)
    into = gaussian_psf_bands(torch.tensor(img), torch.tensor(fwhm), torch.tensor(scale), out=buf)
    assert out.shape == (2, 3, *shape) and into.data_ptr() == buf.data_ptr() and torch.equal(into, out)
    for b in range(2):
        for k in range(3):
            ref = ndimage.gaussian_filter(img[b], fwhm[b, k] * FWHM_TO_SIGMA, mode="wrap", truncate=12.0)
            assert np.abs(plain[b, k].numpy() - ref).max() < 1e-5 * img.max()
            assert np.abs(out[b, k].numpy() - scale[b, k] * ref).max() < 1e-5 * img.max() * scale[b, k]


# ---------------------------------------------------------------- noise.py


def _noise_moments(image, gain, reps, seed0):
    gens = [torch.Generator().manual_seed(seed0 + r) for r in range(reps)]
    draws = add_poisson_noise_batch(image.expand(reps, *image.shape).contiguous(), gain, gens)
    return draws.mean(0), draws.var(0), draws


@pytest.mark.parametrize("gain", [150.0, 7.0])
@pytest.mark.parametrize("electrons", [(0.5, 12.0), (40.0, 400.0)], ids=["faint", "bright"])
def test_noise_mean_is_the_image_and_variance_is_image_over_gain(gain, electrons):
    """Both samplers (faint: Poisson total placed by inverse CDF; bright: per pixel) give, per pixel,
    E[I′] = I and Var[I′] = I/gain in image units, at the paper's gain 150 and at gain 7."""
    lam = torch.linspace(*electrons, 16, dtype=torch.float64)
    assert (float(lam.mean()) <= 16) == (electrons[1] < 16)  # which sampler the image goes to
    image = (lam / gain).reshape(4, 4)
    reps = 3000
    mean, var, draws = _noise_moments(image, gain, reps, 1000)
    se_mean = (image / gain / reps).sqrt()
    assert float(((mean - image).abs() / se_mean).max()) < 4.5
    ratio = var / (image / gain)
    assert float((ratio - 1).abs().max()) < 0.15 and float((ratio.mean() - 1).abs()) < 0.05
    counts = draws * gain  # whole electrons
    assert torch.allclose(counts, counts.round(), atol=1e-6)


@pytest.mark.parametrize("scale", [0.001, 1.0])  # faint and bright at gain 150
def test_negative_pixels_are_kept_and_get_no_noise(scale):
    """I′ = min(I, 0) + E′/gain: negative pixels pass unchanged, non-negative ones stay non-negative."""
    image = torch.tensor([[-0.5, 2.0, -1e-3], [3.0, 0.0, 1.5]], dtype=torch.float64) * scale
    out = add_poisson_noise(image, 150.0, torch.Generator().manual_seed(4))
    neg = image < 0
    assert torch.equal(out[neg], image[neg]) and bool((out[~neg] >= 0).all())
    assert not torch.equal(out[~neg], image[~neg])


@pytest.mark.parametrize("where", [0, -1])
def test_faint_counts_land_only_where_the_flux_is(where):
    """All flux in the first or the last pixel: every count lands in that pixel and their number is Poisson."""
    image = torch.zeros(5, 7, dtype=torch.float64)
    image.view(-1)[where] = 4.0 / 150  # 4 e- in all: the faint sampler
    out = torch.stack([add_poisson_noise(image, 150.0, torch.Generator().manual_seed(s)) for s in range(800)])
    rest = torch.ones(35, dtype=torch.bool)
    rest[where] = False
    assert bool((out.view(800, -1)[:, rest] == 0).all())
    counts = out.view(800, -1)[:, where] * 150
    assert float(counts.mean()) == pytest.approx(4.0, abs=0.35) and float(counts.var()) == pytest.approx(4.0, rel=0.2)


@pytest.mark.parametrize("scale", [0.002, 1.0])
def test_noise_keeps_dtype_and_accepts_non_contiguous_images(scale):
    """float32 in, float32 out; a transposed (non-contiguous) batch is noised like its contiguous copy."""
    img = (torch.rand(2, 6, 9, generator=torch.Generator().manual_seed(0)) * scale).transpose(1, 2)
    gens = lambda: [torch.Generator().manual_seed(s) for s in (5, 6)]  # noqa: E731
    a = add_poisson_noise_batch(img, 150.0, gens())
    b = add_poisson_noise_batch(img.contiguous(), 150.0, gens())
    assert a.dtype == torch.float32 and a.shape == img.shape and torch.equal(a, b)
    assert not torch.equal(a, img)


def test_noise_rejects_bad_gains_and_generator_counts():
    """gain ≤ 0 and a generator list of the wrong length are refused with a message."""
    img = torch.ones(2, 3, 3)
    for gain in (0.0, -3.0):
        with pytest.raises(ValueError, match="gain must be > 0"):
            add_poisson_noise_batch(img, gain, [None, None])
    with pytest.raises(ValueError, match="2 images but 1 generators"):
        add_poisson_noise_batch(img, 150.0, [None])
    assert add_poisson_noise(torch.zeros(3, 3), 1e-3).abs().max() == 0  # nothing to draw, any gain


# ---------------------------------------------------------------- photometry.py


def test_sigma_pix_is_flux_error_times_root_sum_psf_squared():
    """σ_pix = σ_flux √(Σ PSF²): σ_flux = 1/√psfdepth, Σ PSF² summed over a pixel-sampled unit Gaussian."""
    depth = np.array([400.0, 2500.0, 0.0, -1.0, np.nan, np.inf])
    fwhm = np.array([1.3, 0.9, 1.1, 1.1, 1.1, 1.1])
    got = sigma_pix(depth, fwhm)
    v = np.arange(-40, 41)
    for i in range(2):
        s = fwhm[i] * FWHM_TO_SIGMA / 0.262
        g = np.exp(-(v[:, None] ** 2 + v[None] ** 2) / (2 * s**2))
        g /= g.sum()
        assert got[i] == pytest.approx(np.sqrt((g**2).sum()) / np.sqrt(depth[i]), rel=2e-3)
    assert np.isnan(got[2:]).all()  # no valid depth, no noise level
    assert sigma_pix(400.0, 1.3, pixscale=0.524) == pytest.approx(2 * got[0], rel=1e-6)


def test_annulus_mask_is_the_brute_force_ring():
    """annulus_mask: pixels whose centre lies at r_min ≤ r ≤ r_max from the stamp centre (boundaries included)."""
    for nx, lo, hi in ((21, 4.0, 8.0), (20, 2.5, 6.0)):
        c = (nx - 1) / 2
        want = np.array([[lo <= math.hypot(i - c, j - c) <= hi for j in range(nx)] for i in range(nx)])
        assert np.array_equal(annulus_mask(nx, lo, hi), want)
    m = annulus_mask(21, 4.0, 8.0)
    assert m[10, 14] and m[10, 18] and m[2, 10] and not m[10, 19] and not m[10, 10]  # r = 4 and 8 are in


def test_arc_annulus_snr_sums_the_ring_over_root_n_sigma():
    """SNR = Σ_ring arc / (√N_ring σ), numpy and torch inputs alike; NaN where σ is not a positive number."""
    rng = np.random.default_rng(0)
    arcs = rng.exponential(1.0, (4, 33, 33)).astype(np.float32)
    sigma = np.array([0.5, 2.0, 0.0, np.nan])
    yy, xx = np.mgrid[:33, :33] - 16
    ring = (np.hypot(xx, yy) >= 4) & (np.hypot(xx, yy) <= 16)
    want = arcs[:2, ring].astype(float).sum(-1) / (math.sqrt(ring.sum()) * sigma[:2])
    for a in (arcs, torch.tensor(arcs)):
        got = arc_annulus_snr(a, sigma)
        np.testing.assert_allclose(got[:2], want, rtol=1e-6)
        assert np.isnan(got[2:]).all()
    ring2 = (np.hypot(xx, yy) >= 2) & (np.hypot(xx, yy) <= 5)
    got = arc_annulus_snr(torch.tensor(arcs), 1.0, r_min=2.0, r_max=5.0)
    np.testing.assert_allclose(got, arcs[:, ring2].astype(float).sum(-1) / math.sqrt(ring2.sum()), rtol=1e-6)


# ---------------------------------------------------------------- dtypes, devices, gradients


def test_ellipticity_and_total_flux_are_differentiable_tensors():
    """Tensor inputs stay in torch (autograd works): de/dq = −2/(1+q)², d e1/dφ = −2e sin 2φ, dF/dR = 2F/R."""
    phi = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    q = torch.tensor(0.6, dtype=torch.float64, requires_grad=True)
    e1, _ = phi_q_to_ellipticity(phi, q)
    e1.backward()
    e = 0.4 / 1.6
    assert float(q.grad) == pytest.approx(-2 / 1.6**2 * math.cos(0.6), rel=1e-12)
    assert float(phi.grad) == pytest.approx(-2 * e * math.sin(0.6), rel=1e-12)
    R = torch.tensor(0.4, dtype=torch.float64, requires_grad=True)
    flux = sersic_total_flux_factor(torch.tensor(1.5, dtype=torch.float64), R, torch.tensor(2.7, dtype=torch.float64))
    flux.backward()
    assert float(R.grad) == pytest.approx(2 * float(flux.detach()) / 0.4, rel=1e-12)


def test_psf_stays_on_the_images_device():
    """Every PSF tensor is made on the image's device (PyTorch's data-free 'meta' device stands in for a GPU)."""
    img = torch.empty(2, 3, 9, 11, device="meta", dtype=torch.float64)
    assert gaussian_psf_fft(img, 4.0).device.type == "meta"
    fwhm = torch.full((2, 3), 4.0, dtype=torch.float64, device="meta")
    assert gaussian_psf_fft(img, fwhm).device.type == "meta"
    out = gaussian_psf_bands(torch.empty(2, 9, 9, device="meta"), np.full((2, 3), 4.0), np.ones((2, 3)))
    assert out.shape == (2, 3, 9, 9) and out.device.type == "meta"


def test_psf_of_float32_images_with_float64_parameters():
    """float32 images with numpy float64 FWHMs and scales: float32 out, the float64 blur to float32 rounding."""
    rng = np.random.default_rng(4)
    img = rng.exponential(1.0, (2, 10, 12))
    fwhm, scale = np.array([[3.5, 4.5], [5.0, 3.8]]), np.array([[1.0, 2.0], [0.5, 3.0]])
    lo = gaussian_psf_bands(torch.tensor(img, dtype=torch.float32), fwhm, scale)
    hi = gaussian_psf_bands(torch.tensor(img), fwhm, scale)
    assert lo.dtype == torch.float32 and torch.allclose(lo.double(), hi, rtol=1e-5, atol=1e-6)
    lo = gaussian_psf_fft(torch.tensor(img, dtype=torch.float32), fwhm[:, :1, None])
    assert lo.dtype == torch.float32


@pytest.mark.parametrize("shape", [(11, 11), (9, 14)])
def test_psf_is_exact_in_float64_for_wide_kernels(shape):
    """For σ ≥ 2.5 px the aliasing of exp(−2π²σ²f²) is < 1e-13: equal to scipy's wrapped filter to ~1e-12."""
    img = np.random.default_rng(5).exponential(1.0, shape)
    for fwhm in (6.5, 9.0):
        ref = ndimage.gaussian_filter(img, fwhm * FWHM_TO_SIGMA, mode="wrap", truncate=14.0)
        assert np.abs(gaussian_psf_fft(torch.tensor(img), fwhm).numpy() - ref).max() < 1e-11 * img.max()
        band = gaussian_psf_bands(torch.tensor(img[None]), np.array([[fwhm]]))[0, 0].numpy()
        assert np.abs(band - ref).max() < 1e-11 * img.max()


def test_faint_pixels_beside_a_bright_one_get_their_counts():
    """The faint sampler's CDF is accumulated in float64: in a float32 image whose first pixel holds almost all of
    the light, 2·10⁵ faint pixels (0.05 e⁻ each) still get their Poisson counts (in float32 they would get none)."""
    gain, npix = 150.0, 200_000
    image = torch.full((npix,), 0.05 / gain, dtype=torch.float32)
    image[0] = 16 * npix * 0.99 / gain  # the whole image stays within the faint sampler's 16 e- per pixel
    out = add_poisson_noise(image, gain, torch.Generator().manual_seed(2))
    counts = (out[1:].double() * gain).round()
    assert float(counts.sum()) == pytest.approx(0.05 * (npix - 1), rel=0.05)
    # and each its own: ≥ 2 counts in a pixel as often as Poisson(0.05) says (a CDF or uniforms rounded to
    # float32 near the bright pixel's 2·10⁴ would lump the faint pixels, several times as often)
    two = (npix - 1) * (1 - math.exp(-0.05) * 1.05)
    assert float((counts >= 2).sum()) == pytest.approx(two, rel=0.25)


@pytest.mark.parametrize("electrons, faint", [(16.0, True), (4.0, True), (16.5, False), (60.0, False)])
def test_samplers_switch_at_16_electrons_per_pixel(electrons, faint):
    """As documented, an image with ΣE ≤ 16 e⁻ per pixel gets a single Poisson(ΣE) total from its generator
    (then placed on pixels); a brighter one is drawn pixel by pixel (its total is not that draw)."""
    gain = 16.0
    image = torch.full((6, 6), electrons / gain, dtype=torch.float64)
    out = add_poisson_noise(image, gain, torch.Generator().manual_seed(9))
    total = torch.tensor([electrons * 36], dtype=torch.float64)
    single = torch.poisson(total, generator=torch.Generator().manual_seed(9))
    assert (round(float(out.sum()) * gain) == int(single.item())) == faint


def test_ring_total_is_accumulated_in_float64_for_any_leading_dims():
    """Σ_ring in float64 (±10⁸ noise pixels do not swamp the rest) on (B, K, H, W) as well as (B, H, W) inputs."""
    arcs = np.ones((2, 3, 21, 21), dtype=np.float32)
    arcs[..., 10, 14], arcs[..., 10, 6] = 1e8, -1e8  # both in the 4–16 px ring
    ring = annulus_mask(21, 4.0, 16.0)
    want = (ring.sum() - 2) / math.sqrt(ring.sum())
    for a in (arcs, torch.tensor(arcs)):
        got = arc_annulus_snr(a, 1.0)
        assert got.shape == (2, 3) and np.allclose(got, want, rtol=1e-9)
        assert np.allclose(arc_annulus_snr(a[:, 0], np.array([1.0, 2.0])), [want, want / 2], rtol=1e-9)


def test_missing_or_shallow_depths_and_sigmas():
    """None (a missing value) gives NaN; a shallow depth (0 < psfdepth < 1) is valid; a zero FWHM stays finite."""
    got = sigma_pix([0.25, None, 100.0], [1.2, 1.2, None])
    assert got[0] == pytest.approx(2 * sigma_pix(1.0, 1.2)) and np.isnan(got[1:]).all()
    assert np.isfinite(sigma_pix(100.0, 0.0))
    snr = arc_annulus_snr(np.ones((2, 21, 21)), [1.0, None])
    assert np.isfinite(snr[0]) and np.isnan(snr[1])

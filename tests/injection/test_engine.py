"""Priors from YAML, the paper's draw order, and whole injections into real DR10 hosts."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from lenslib.injection import (
    UNRESTRICTED_BETA_FRAC,
    InjectionEngine,
    InjectionError,
    InjectionPriors,
    PriorsError,
    draw,
    phi_q_to_ellipticity,
    render_arc,
)
from lenslib.survey import mag_to_nmgy, nmgy_to_mag

PROJECT_PRIORS = Path(__file__).resolve().parents[2] / "params" / "injection_priors.yaml"


@pytest.fixture(scope="module")
def host(shared):
    with np.load(shared("dr10_samples", "sample_cutout.npz")) as z:
        return z["cutout"].astype(np.float32)  # (101, 101, 3) HWC as stored


def test_authors_and_project_priors_files_read_the_same(shared):
    authors = InjectionPriors.from_yaml(shared("configs", "injection_priors.yaml"))
    ours = InjectionPriors.from_yaml(PROJECT_PRIORS)
    assert authors == ours
    assert authors.beta_frac_range == (0.10, 0.40) and authors.clumps_prob == 0.0
    assert authors.override(beta_frac_range=UNRESTRICTED_BETA_FRAC).beta_frac_range == (0.1, 1.0)


@pytest.mark.parametrize("text, needle", [
    ("source_params:\n  r_mag_rnage: [23, 26]\n", "source_params.r_mag_rnage"),
    ("source_params:\n  n_range: [2.0, 0.5]\n", "n_range"),
    ("source_params:\n  q_range: [0.3]\n", "q_range"),
    ("lens_params:\n  q_lens_range: [0.0, 1.0]\n", "q_lens_range"),
    ("other: 1\n", "sections"),
    ("source_params: [unclosed\n", "not valid YAML"),
])
def test_bad_priors_files_are_named(tmp_path, text, needle):
    f = tmp_path / "priors.yaml"
    f.write_text(text)
    with pytest.raises(PriorsError, match="priors.yaml") as err:
        InjectionPriors.from_yaml(f)
    assert needle in str(err.value)
    with pytest.raises(PriorsError, match="not found"):
        InjectionPriors.from_yaml(tmp_path / "missing.yaml")
    with pytest.raises(PriorsError, match="unknown"):
        InjectionPriors().override(beta_range=(0, 1))


def test_draw_follows_the_papers_order():
    """Replays the generator call by call as PAPER_SPEC D.6 lists them (lens first, then source)."""
    p = draw(np.random.default_rng(7), 1.25, InjectionPriors(), n=2)
    rng = np.random.default_rng(7)
    for k in range(2):
        g1, g2, x0, y0 = rng.normal(0, 0.05), rng.normal(0, 0.05), rng.normal(0, 0.05), rng.normal(0, 0.05)
        q_l, phi_l = rng.uniform(0.5, 1.0), rng.uniform(0, math.pi)
        bf = math.sqrt(rng.uniform(0.01, 0.16))
        a = rng.uniform(0, 2 * math.pi)
        re, n, q_s, phi_s, m = (rng.uniform(0.15, 0.5), rng.uniform(0.5, 2.0), rng.uniform(0.3, 1.0),
                                rng.uniform(0, 2 * math.pi), rng.uniform(23, 26))
        gr, rz = rng.normal(1.15, 0.30), rng.normal(0.85, 0.20)
        rng.uniform()  # clump decision (never taken at clumps_prob 0)
        got = [p.shear_g1[k], p.shear_g2[k], p.lens_x[k], p.lens_y[k], p.q_lens[k], p.phi_lens[k], p.beta_frac[k],
               p.beta_x[k], p.beta_y[k], p.re_arcsec[k], p.n_sersic[k], p.q_source[k], p.phi_source[k], p.r_mag[k],
               p.g_minus_r[k], p.r_minus_z[k]]
        want = [g1, g2, x0, y0, q_l, phi_l, bf, bf * 1.25 * math.cos(a), bf * 1.25 * math.sin(a), re, n, q_s, phi_s,
                m, gr, rz]
        assert got == pytest.approx(want, abs=1e-15)


def test_draws_do_not_depend_on_how_a_run_is_cut_into_batches():
    whole = draw(np.random.default_rng(3), [0.5, 1.0, 1.5, 2.0, 2.5, 3.0], InjectionPriors())
    rng = np.random.default_rng(3)
    parts = [draw(rng, [0.5, 1.0], InjectionPriors()), draw(rng, [1.5, 2.0, 2.5, 3.0], InjectionPriors())]
    assert whole.to_frame().equals(type(whole).concat(parts).to_frame())
    assert draw(5, 1.5, InjectionPriors(), n=4).to_frame().equals(draw(5, 1.5, InjectionPriors(), n=4).to_frame())


@pytest.mark.parametrize("lo_hi", [(0.10, 0.40), UNRESTRICTED_BETA_FRAC])
def test_beta_frac_is_area_weighted(lo_hi):
    lo, hi = lo_hi
    p = draw(11, 1.5, InjectionPriors().override(beta_frac_range=lo_hi), n=3000)
    ks = stats.kstest(p.beta_frac, lambda b: np.clip((b**2 - lo**2) / (hi**2 - lo**2), 0, 1))
    assert ks.pvalue > 0.01
    uniform = stats.kstest(p.beta_frac, stats.uniform(lo, hi - lo).cdf)
    assert uniform.pvalue < 1e-6  # a uniform draw would be wrong
    assert np.allclose(np.hypot(p.beta_x, p.beta_y), p.beta_frac * 1.5)


def test_magnitudes_and_colours_to_fluxes():
    p = draw(2, 1.5, InjectionPriors(), n=20)
    f = p.fluxes_nmgy()
    assert np.allclose(nmgy_to_mag(f[:, 1]), p.r_mag)
    assert np.allclose(nmgy_to_mag(f[:, 0]) - nmgy_to_mag(f[:, 1]), p.g_minus_r)
    assert np.allclose(nmgy_to_mag(f[:, 1]) - nmgy_to_mag(f[:, 2]), p.r_minus_z)
    assert mag_to_nmgy(22.5) == 1.0 and np.isnan(nmgy_to_mag(-1.0))


def test_engine_band_equals_render_arc_with_the_mapped_parameters(host):
    """Each band = render_arc (checked against lenstronomy) with R_sersic = R_e √q, band flux and PSF factor."""
    p = draw(4, 1.5, InjectionPriors(), n=3)
    res = InjectionEngine(device="cpu").inject(host, p, psf_fwhm_r=[1.1, 1.3, 1.6])
    e1, e2 = phi_q_to_ellipticity(p.phi_lens, p.q_lens)
    es1, es2 = phi_q_to_ellipticity(p.phi_source, p.q_source)
    flux = p.fluxes_nmgy()
    for band, factor in enumerate((1.05, 1.00, 0.94)):
        ref = render_arc(theta_E=p.theta_e, e1=e1, e2=e2, gamma1=p.shear_g1, gamma2=p.shear_g2, center_x=p.lens_x,
                         center_y=p.lens_y, R_sersic=p.re_arcsec * np.sqrt(p.q_source), n_sersic=p.n_sersic,
                         e1_source=es1, e2_source=es2, source_x=p.beta_x, source_y=p.beta_y, flux=flux[:, band],
                         psf_fwhm=np.array([1.1, 1.3, 1.6]) * factor)
        assert torch.allclose(res.injection_only[:, band].double(), ref, rtol=1e-4, atol=1e-5 * float(ref.max()))
    hwc = torch.as_tensor(host).permute(2, 0, 1)
    assert torch.allclose(res.injected - res.injection_only, hwc.expand(3, -1, -1, -1), atol=1e-6)


def test_flux_magnification_and_lensed_magnitude(host):
    p = draw(9, 2.0, InjectionPriors(), n=8)
    res = InjectionEngine(device="cpu").inject(host, p, psf_fwhm_r=1.3)
    sums = res.injection_only.double().sum((-2, -1)).numpy()
    assert np.allclose(sums, res.magnification[:, None] * p.fluxes_nmgy(), rtol=1e-4)  # PSF conserves flux
    assert np.all(res.magnification > 2)  # β < 0.4 θ_E: strongly lensed
    assert np.allclose(res.lensed_r_mag, p.r_mag - 2.5 * np.log10(res.magnification), atol=1e-4)


def test_unlensed_source_keeps_unit_flux_with_and_without_clumps(host):
    pri = InjectionPriors(clumps_prob=1.0)
    p = draw(1, 1e-4, pri, n=6)  # θ_E → 0: no lensing
    p.shear_g1[:], p.shear_g2[:] = 0.0, 0.0
    assert (p.n_clumps >= 1).all() and p.clumps.shape[1] == 3
    res = InjectionEngine(device="cpu", oversample=16).inject(host, p, psf_fwhm_r=1.2)  # resolves the cusps
    assert np.allclose(res.magnification, 1.0, atol=1e-3)


def test_host_layouts_and_bad_inputs(host):
    p = draw(0, 1.5, InjectionPriors(), n=2)
    eng = InjectionEngine(device="cpu")
    a = eng.inject(host, p, 1.3).injected
    b = eng.inject(np.stack([host.transpose(2, 0, 1)] * 2), p, 1.3).injected
    assert torch.equal(a, b)
    with pytest.raises(InjectionError, match=r"got \(1, 101, 101, 2\)"):
        eng.inject(host[:, :, :2], p, 1.3)
    with pytest.raises(InjectionError, match=r"3 hosts for 2"):
        eng.inject(np.stack([host] * 3), p, 1.3)
    with pytest.raises(InjectionError, match="psf_fwhm_r.*injection 1"):
        eng.inject(host, p, [1.3, np.nan])
    with pytest.raises(InjectionError, match="seeds are required"):
        InjectionEngine(device="cpu", poisson=True).inject(host, p, 1.3)
    with pytest.raises(InjectionError, match="sampling"):
        InjectionEngine(sampling="fast")


def assert_same_noise(a: torch.Tensor, b: torch.Tensor, gain: float) -> None:
    """Noisy images drawn from the same seeds. Batched kernels may round the noiseless arc differently
    with the batch shape (seen with torch 2.11 on a 16-core CPU), which can move a count to the
    neighbouring pixel of the cumulative sum: allow a few whole counts, nothing more."""
    diff = (a - b).abs()
    assert int((diff > 1e-6).sum()) <= 4 * a.shape[0], "the noise depends on how the run is batched"
    assert float(diff.max()) <= 2 / gain + 1e-6
    np.testing.assert_allclose(a.double().sum((-2, -1)).cpu(), b.double().sum((-2, -1)).cpu(), atol=1e-4)


def test_poisson_seeds_batches_and_gain_control(host):
    p = draw(5, 1.5, InjectionPriors(), n=5)
    noisy = InjectionEngine(device="cpu", poisson=True, batch_size=2).inject(host, p, 1.3, seeds=100)
    again = InjectionEngine(device="cpu", poisson=True, batch_size=5).inject(host, p, 1.3, seeds=list(range(100, 105)))
    assert_same_noise(noisy.injection_only, again.injection_only, gain=150.0)  # per-injection generators
    clean = InjectionEngine(device="cpu").inject(host, p, 1.3)
    assert not torch.allclose(noisy.injection_only, clean.injection_only)
    control = InjectionEngine(device="cpu", poisson=True, gain=1e12).inject(host, p, 1.3, seeds=100)
    assert torch.allclose(control.injection_only, clean.injection_only, atol=1e-5)
    assert np.allclose(noisy.lensed_r_mag, nmgy_to_mag(noisy.injection_only[:, 1].double().sum((-2, -1)).numpy()))


def test_arc_snr_follows_the_psfdepth_noise_model(host):
    p = draw(6, 1.5, InjectionPriors(), n=3)
    res = InjectionEngine(device="cpu").inject(host, p, 1.2, psfdepth_r=[2500.0, 400.0, 0.0])
    yy, xx = np.mgrid[:101, :101] - 50
    ring = (np.hypot(xx, yy) >= 4) & (np.hypot(xx, yy) <= 16)
    s_psf = 1.2 / (2 * math.sqrt(2 * math.log(2))) / 0.262
    for k, depth in enumerate([2500.0, 400.0]):
        sigma = (1 / math.sqrt(depth)) * math.sqrt(1 / (4 * math.pi * s_psf**2))
        want = res.injection_only[k, 1].numpy()[ring].sum() / (math.sqrt(ring.sum()) * sigma)
        assert res.arc_snr[k] == pytest.approx(want, rel=1e-5)
    assert np.isnan(res.arc_snr[2])  # no depth, no SNR


def test_adaptive_sampling_matches_full_sampling(host):
    pri = InjectionPriors(clumps_prob=0.5).override(beta_frac_range=UNRESTRICTED_BETA_FRAC)
    p = draw(21, np.linspace(0.5, 3.0, 24), pri)
    full = InjectionEngine(device="cpu").inject(host, p, 1.3).injection_only
    fast = InjectionEngine(device="cpu", sampling="adaptive").inject(host, p, 1.3).injection_only
    l1 = (fast - full).abs().sum((-3, -2, -1)) / full.abs().sum((-3, -2, -1))
    assert l1.max() < 1e-3


def test_adaptive_sampling_near_the_lens_centre():
    """Compact, steep (n up to 4) sources just inside the radial cut: the central blocks fold onto a
    ring in the source plane and the n = 4 wings spread over the whole stamp — both must be sampled."""
    from lenslib.injection import LensModelBatch, SourceModel, lensed_unit_image

    rng = np.random.default_rng(0)
    n = 48
    u = lambda lo, hi: torch.tensor(rng.uniform(lo, hi, n), dtype=torch.float32)  # noqa: E731
    theta, ang, frac = u(0.5, 3.0), u(0, 2 * math.pi), u(0.6, 1.0)
    lens = LensModelBatch(theta, u(-0.2, 0.2), u(-0.2, 0.2), u(-0.05, 0.05), u(-0.05, 0.05), u(-0.13, 0.13),
                          u(-0.13, 0.13))
    src = SourceModel(source_x=theta * frac * torch.cos(ang), source_y=theta * frac * torch.sin(ang),
                      R_sersic=u(0.03, 0.3), n_sersic=u(0.5, 4.0), e1=u(-0.3, 0.3), e2=u(-0.3, 0.3))
    full = lensed_unit_image(lens, src, sampling="full")
    fast = lensed_unit_image(lens, src, sampling="adaptive")
    l1 = (fast - full).abs().sum((-2, -1)) / full.abs().sum((-2, -1))
    assert float(l1.max()) < 1e-3 and float(l1.median()) < 1e-4


def test_psf_of_shared_band_images_equals_separate_blurs():
    from lenslib.injection import gaussian_psf_bands, gaussian_psf_fft

    g = torch.Generator().manual_seed(2)
    img = torch.rand(4, 101, 101, dtype=torch.float64, generator=g)
    fwhm = 3 + 4 * torch.rand(4, 3, dtype=torch.float64, generator=g)
    scale = torch.rand(4, 3, dtype=torch.float64, generator=g)
    want = gaussian_psf_fft(img[:, None] * scale[..., None, None], fwhm)
    assert torch.allclose(gaussian_psf_bands(img, fwhm, scale), want, atol=1e-13)
    out = torch.empty(4, 3, 101, 101, dtype=torch.float64)
    assert gaussian_psf_bands(img, fwhm, scale, out=out) is out and torch.allclose(out, want, atol=1e-13)
    assert torch.allclose(gaussian_psf_bands(img, fwhm), gaussian_psf_fft(img[:, None].expand(-1, 3, -1, -1), fwhm),
                          atol=1e-13)


def test_separable_psf_equals_the_2d_fft_transfer_function():
    from lenslib.injection import gaussian_psf_fft

    img = torch.rand(2, 3, 101, 101, dtype=torch.float64)
    fwhm = torch.tensor([[3.0, 4.0, 5.5], [2.0, 6.0, 7.0]], dtype=torch.float64)
    s = fwhm / (2 * math.sqrt(2 * math.log(2)))
    k = torch.fft.fftfreq(101, dtype=torch.float64)
    transfer = torch.exp(-2 * math.pi**2 * s[..., None, None] ** 2 * (k[:, None] ** 2 + k[None, :] ** 2))
    ref = torch.fft.ifft2(torch.fft.fft2(img) * transfer).real
    out = gaussian_psf_fft(img, fwhm)
    assert torch.allclose(out, ref, atol=1e-12)
    assert torch.allclose(out.sum((-2, -1)), img.sum((-2, -1)))


def test_whole_injections_match_lenstronomy_without_patching():
    """The cross-check of the notebook: lenslib with lenstronomy's own b_n against lenstronomy ImageModel."""
    from lenslib.injection.examples import lenstronomy_crosscheck

    cc = lenstronomy_crosscheck(draw(8, [0.5, 1.25, 2.0, 3.0], InjectionPriors()), psf_fwhm=1.2)
    assert cc.table()["l1_relative"].max() < 1e-4


def test_compiled_rendering_gives_the_same_images(host):
    p = draw(21, np.random.default_rng(4).uniform(0.5, 3.0, 6), InjectionPriors())
    for sampling in ("adaptive", "full"):
        eager = InjectionEngine(device="cpu", sampling=sampling).inject(host, p, 1.3).injection_only
        fused = InjectionEngine(device="cpu", sampling=sampling, compile=True).inject(host, p, 1.3).injection_only
        l1 = ((fused - eager).abs().sum((-2, -1)) / eager.abs().sum((-2, -1))).max()
        assert float(l1) < 1e-4, sampling

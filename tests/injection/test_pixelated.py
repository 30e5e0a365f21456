"""Pixelated (non-parametric) sources: against lenstronomy ``INTERPOL``, their invariants, and in the engine."""

import math

import numpy as np
import pytest
import torch

from lenslib.injection import (
    InjectionEngine,
    InjectionError,
    InjectionPriors,
    LensModelBatch,
    PixelatedSource,
    PixelatedStamps,
    SourceStampError,
    draw,
    lensed_pixelated_image,
    render_pixelated_arc,
    validate_stamps,
)
from lenslib.injection import render as render_module

NX, PIX = 101, 0.262
LENS = dict(theta_E=1.2, e1=0.12, e2=-0.06, gamma1=0.03, gamma2=-0.02, center_x=0.02, center_y=-0.01)
UNLENSED = dict(theta_E=0.0, e1=0.0, e2=0.0, gamma1=0.0, gamma2=0.0, center_x=0.0, center_y=0.0)


def knots(n=48, pixscale=0.04, seed=1, bands=1):
    """A clumpy stamp (bands, n, n): a few Gaussian knots of σ 1–4 stamp pixels, each band its own weights."""
    rng = np.random.default_rng(seed)
    c = (np.arange(n) - (n - 1) / 2) * pixscale
    y, x = np.meshgrid(c, c, indexing="ij")
    img = np.zeros((bands, n, n))
    for _ in range(5):
        x0, y0 = rng.uniform(-0.3, 0.3, 2) * n * pixscale
        s = rng.uniform(1, 4) * pixscale
        img += rng.uniform(0.2, 1.0, (bands, 1, 1)) * np.exp(-((x - x0) ** 2 + (y - y0) ** 2) / (2 * s * s))
    return img if bands > 1 else img[0]


def l1(a, b):
    return float(np.abs(np.asarray(a) - np.asarray(b)).sum() / np.abs(np.asarray(b)).sum())


@pytest.mark.parametrize("fwhm", [None, 1.2])
def test_matches_lenstronomy_interpol(fwhm):
    from lenslib.injection.crosscheck import lenstronomy_pixelated_arc

    kw = dict(LENS, image=knots(), source_pixscale=0.04, source_x=0.15, source_y=0.08, flux=2.0, psf_fwhm=fwhm)
    ours = render_pixelated_arc(**kw).numpy()
    ref = lenstronomy_pixelated_arc(**kw)
    # the same bilinear interpolant sampled at the same rays: ~1e-9 measured (float64), far inside 1 %
    assert l1(ours, ref) < 1e-3
    assert ours.sum() == pytest.approx(ref.sum(), rel=1e-6) and ours.sum() > 2 * 2.0  # strongly magnified


def test_unlensed_stamp_keeps_unit_flux_per_band():
    for pixscale in (0.04, 0.1):  # finer and coarser than the sub-pixels (0.0655″)
        stamp = torch.as_tensor(knots(pixscale=pixscale, bands=3))[None]
        src = PixelatedSource(stamp * 7.0, pixscale, torch.tensor([0.3], dtype=torch.float64),
                              torch.tensor([-0.2], dtype=torch.float64))
        lens = LensModelBatch(*torch.zeros(7, 1, dtype=torch.float64))
        img = lensed_pixelated_image(lens, src)
        assert img.shape == (1, 3, NX, NX)
        np.testing.assert_allclose(img.sum((-2, -1)).numpy(), 1.0, atol=1e-3)
    kw = dict(UNLENSED, image=knots(), source_pixscale=0.04, source_x=0.2, source_y=0.0, flux=3.0)
    assert float(render_pixelated_arc(**kw, psf_fwhm=1.3).sum()) == pytest.approx(float(render_pixelated_arc(**kw)
                                                                                        .sum()), rel=1e-6)


@pytest.mark.parametrize("row, col, want", [(4, 8, (50, 54)), (8, 4, (54, 50)), (0, 4, (46, 50))])
def test_orientation_rows_are_y_columns_are_x(row, col, want):
    stamp = np.zeros((9, 9))
    stamp[row, col] = 1.0  # offset (col − 4, row − 4) stamp pixels of one image pixel each: +x, +y, −y
    img = render_pixelated_arc(**UNLENSED, image=stamp, source_pixscale=PIX, source_x=0.0, source_y=0.0, flux=1.0)
    assert np.unravel_index(int(img.argmax()), img.shape) == want


def test_batch_equals_single_renders(monkeypatch):
    monkeypatch.setitem(render_module.CHUNK_RAYS, "cpu", 1 << 12)  # one injection per chunk
    tes = np.array([0.8, 1.2, 2.0])
    images = np.stack([knots(seed=s) for s in range(3)])
    kw = dict(LENS, source_pixscale=0.04, source_x=0.1, source_y=-0.05, flux=1.5)
    kw.pop("theta_E")
    batch = render_pixelated_arc(theta_E=tes, image=images, psf_fwhm=np.array([1.0, 1.2, 1.4]), **kw)
    assert batch.shape == (3, NX, NX)
    for k in range(3):
        single = render_pixelated_arc(theta_E=float(tes[k]), image=images[k], psf_fwhm=[1.0, 1.2, 1.4][k], **kw)
        assert torch.allclose(batch[k], single, atol=1e-12)
    shared = render_pixelated_arc(theta_E=tes, image=images[1], **kw)  # one stamp for the whole batch
    assert torch.allclose(shared[1], render_pixelated_arc(theta_E=1.2, image=images[1], **kw), atol=1e-12)


def test_float32_agrees_with_float64():
    kw = dict(LENS, source_pixscale=0.04, source_x=0.15, source_y=0.08, flux=1.0, psf_fwhm=1.1)
    f64 = render_pixelated_arc(image=knots(), **kw)
    f32 = render_pixelated_arc(image=knots().astype(np.float32), **kw)
    assert f64.dtype == torch.float64 and f32.dtype == torch.float32
    assert l1(f32.double(), f64) < 1e-5


def test_bad_stamps_are_named():
    good = knots(bands=3)
    nan = np.stack([good, good])
    nan[1, 1, 3, 4] = np.nan
    with pytest.raises(SourceStampError, match="stamp 1, band r has NaN"):
        validate_stamps(nan)
    with pytest.raises(SourceStampError, match=r"shape \(5, 48, 48\)"):
        validate_stamps(np.ones((5, 48, 48)))
    with pytest.raises(SourceStampError, match=r"shape \(3, 1, 48\)"):
        validate_stamps(np.ones((3, 1, 48)))
    zero = good.copy()
    zero[0] = 0.0
    with pytest.raises(SourceStampError, match="stamp 0, band g has total flux 0"):
        validate_stamps(zero)
    with pytest.raises(SourceStampError, match="stamp 0, the single band has total flux -"):
        validate_stamps(-np.ones((4, 4)))
    noisy = good + np.random.default_rng(0).normal(0, 0.05 * good.max(), good.shape)
    assert (noisy < 0).any()  # negative pixels (noise) are fine while each band's total is > 0
    assert validate_stamps(torch.as_tensor(noisy)).shape == (1, 3, 48, 48)
    assert validate_stamps(good.astype(np.float32)).dtype == np.float32
    with pytest.raises(SourceStampError, match="pixscale"):
        PixelatedStamps(good, 0.0)


# --- the engine ------------------------------------------------------------------------------------------------

HOST = np.zeros((3, NX, NX), dtype=np.float32)


def unlensed_params(n):
    p = draw(1, 1e-4, InjectionPriors(), n=n)  # θ_E → 0
    p.shear_g1[:], p.shear_g2[:] = 0.0, 0.0
    return p


def test_engine_pixelated_fluxes_keep_the_stamps_colours():
    stamps = np.stack([knots(seed=s, pixscale=0.1, bands=3) for s in range(3)])  # resolved by the sub-pixels
    p = unlensed_params(3)
    eng = InjectionEngine(device="cpu")
    res = eng.inject(HOST, p, 1.3, sources=PixelatedStamps(stamps, 0.1))
    sums = res.injection_only.double().sum((-2, -1)).numpy()
    total = stamps.sum((-2, -1))
    want = p.fluxes_nmgy()[:, 1:2] * total / total[:, 1:2]
    np.testing.assert_allclose(sums, want, rtol=1e-3)
    np.testing.assert_allclose(res.magnification, 1.0, atol=1e-3)
    assert res.settings["source_mix"] == 1.0 and res.settings["source_pixscale"] == 0.1
    # one band: the parameters' colours
    mono = eng.inject(HOST, p, 1.3, sources=PixelatedStamps(stamps[:, 1:2], 0.1))
    np.testing.assert_allclose(mono.injection_only.double().sum((-2, -1)).numpy(), p.fluxes_nmgy(), rtol=1e-3)


def test_engine_lensed_pixelated_flux_and_magnification():
    p = draw(4, 1.5, InjectionPriors(), n=3)
    stamp = knots(bands=3)
    res = InjectionEngine(device="cpu", sampling="adaptive").inject(HOST, p, 1.2, sources=PixelatedStamps(stamp, 0.04))
    r = res.injection_only[:, 1].double().sum((-2, -1)).numpy()
    np.testing.assert_allclose(r, res.magnification * p.fluxes_nmgy()[:, 1], rtol=1e-4)
    assert np.all(res.magnification > 2)
    full = InjectionEngine(device="cpu").inject(HOST, p, 1.2, sources=PixelatedStamps(stamp, 0.04))
    assert torch.equal(full.injection_only, res.injection_only)  # pixelated parts are always fully sampled


def test_engine_mix_blends_linearly_and_mix_0_is_the_sersic_engine():
    p = draw(5, 1.5, InjectionPriors(), n=4)
    src = PixelatedStamps(np.stack([knots(seed=s, bands=3) for s in range(4)]), 0.04)
    sersic = InjectionEngine(device="cpu").inject(HOST, p, 1.3)
    mix0 = InjectionEngine(device="cpu", source_mix=0).inject(HOST, p, 1.3, sources=src)
    mix1 = InjectionEngine(device="cpu", source_mix=1.0).inject(HOST, p, 1.3, sources=src)
    half = InjectionEngine(device="cpu", source_mix=0.5).inject(HOST, p, 1.3, sources=src)
    assert torch.equal(mix0.injected, sersic.injected) and np.array_equal(mix0.magnification, sersic.magnification)
    avg = (mix0.injection_only + mix1.injection_only) / 2
    assert torch.allclose(half.injection_only, avg, rtol=1e-5, atol=1e-6 * float(avg.max()))
    np.testing.assert_allclose(half.magnification, (mix0.magnification + mix1.magnification) / 2, rtol=1e-6)
    arcs, mu = InjectionEngine(device="cpu", source_mix=0.5).arcs(p, 1.3, sources=src)
    assert torch.allclose(arcs, half.injection_only, atol=1e-7) and np.allclose(mu.numpy(), half.magnification)


def test_engine_callable_sources_get_the_injection_indices():
    p = draw(6, 1.5, InjectionPriors(), n=5)
    family = np.stack([knots(seed=s, bands=3) for s in range(5)])
    calls = []

    def sources(index):
        calls.append(index.tolist())
        return family[index]

    eng = InjectionEngine(device="cpu", batch_size=2)
    lazy = eng.inject(HOST, p, 1.3, sources=PixelatedStamps(sources, 0.04))
    assert calls == [[0, 1], [2, 3], [4]]
    eager = InjectionEngine(device="cpu", batch_size=5).inject(HOST, p, 1.3, sources=PixelatedStamps(family, 0.04))
    assert torch.allclose(lazy.injection_only, eager.injection_only, rtol=1e-5, atol=1e-9)

    def broken(index):
        out = family[index].copy()
        out[-1, 2] = np.inf
        return out

    with pytest.raises(SourceStampError, match="stamp 1, band z has NaN or infinite"):
        eng.inject(HOST, p, 1.3, sources=PixelatedStamps(broken, 0.04))
    with pytest.raises(SourceStampError, match="returned 5 stamps for 2 injections"):
        eng.inject(HOST, p, 1.3, sources=PixelatedStamps(lambda index: family, 0.04))


@pytest.mark.parametrize("mix", [1.5, -0.1, math.nan, "0.5"])
def test_bad_source_mix(mix):
    with pytest.raises(InjectionError, match="source_mix"):
        InjectionEngine(source_mix=mix)


def test_engine_source_errors():
    p = draw(0, 1.5, InjectionPriors(), n=2)
    with pytest.raises(InjectionError, match="needs pixelated sources"):
        InjectionEngine(device="cpu", source_mix=0.5).inject(HOST, p, 1.3)
    with pytest.raises(InjectionError, match="PixelatedStamps"):
        InjectionEngine(device="cpu").inject(HOST, p, 1.3, sources=knots())
    with pytest.raises(SourceStampError, match="3 source stamps for 2 injections"):
        InjectionEngine(device="cpu").inject(HOST, p, 1.3, sources=PixelatedStamps(np.stack([knots()] * 3)[:, None],
                                                                                    0.04))

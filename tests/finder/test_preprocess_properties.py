"""Properties of ``raw_robust`` (PAPER_SPEC B.1) with hypothesis, against independent references: a brute-force
radius loop for the annulus, scipy's median_abs_deviation for the statistics, and hand-built images for the
guards (the 1e-8 floor of the MAD, NaN → 0, clipping, the minimum annulus size)."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import median_abs_deviation

from lenslib.finder.preprocess import MIN_ANNULUS_PIXELS, PreprocessError, PreprocessSpec, annulus_mask, raw_robust

SETTINGS = dict(max_examples=25, deadline=None, derandomize=True)


def _ring(h, w, r_in, r_out):
    """Brute force: pixel (row i, column j) is in the annulus iff r_in <= distance to (h//2, w//2) < r_out."""
    out = np.zeros((h, w), bool)
    for i in range(h):
        for j in range(w):
            r = math.sqrt((i - h // 2) ** 2 + (j - w // 2) ** 2)
            out[i, j] = r_in <= r < r_out
    return out


def _reference(img, r_in=20.0, r_out=32.0, clip=10.0):
    """Per band: NaN → 0, median and raw MAD (scipy, scale 1) of the annulus, (x − med)/(MAD + 1e-8), clip."""
    img = np.nan_to_num(np.asarray(img, dtype=np.float64), nan=0.0)
    ring = _ring(img.shape[-2], img.shape[-1], r_in, r_out)
    out = np.empty_like(img)
    for b in range(3):
        v = img[b][ring]
        out[b] = np.clip((img[b] - np.median(v)) / (median_abs_deviation(v, scale=1.0) + 1e-8), -clip, clip)
    return out


def _image(seed, size, sky=0.0, noise=1.0):
    """A noisy (3, size, size) image with a bright central blob, float64."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] - size // 2
    blob = 50 * np.exp(-(xx**2 + yy**2) / 30.0)
    return sky + noise * rng.normal(size=(3, size, size)) + blob * np.array([1.0, 2.0, 3.0])[:, None, None]


@settings(**SETTINGS)
@given(h=st.integers(1, 30), w=st.integers(1, 30), r_in=st.floats(0, 15), width=st.floats(0.01, 20))
def test_annulus_mask_is_the_brute_force_radius_cut(h, w, r_in, width):
    """annulus_mask(h, w, r_in, r_out) marks exactly the pixels with r_in <= r < r_out from (w//2, h//2)."""
    mask = annulus_mask(h, w, r_in, r_in + width)
    assert mask.shape == (h, w) and mask.dtype == bool
    assert np.array_equal(mask, _ring(h, w, r_in, r_in + width))


def test_annulus_mask_edges_and_the_default_count():
    """Integer radii: r == r_in is inside, r == r_out outside; the paper's 20/32 px annulus of a 101 px stamp
    has 1960 pixels (counted by brute force)."""
    m = annulus_mask(11, 11, 3, 4)
    assert m[5, 8] and m[8, 5] and not m[5, 9] and not m[5, 5]  # r = 3 is in, r = 4 out
    assert annulus_mask(7, 9, 0, 0.5).sum() == 1 and annulus_mask(7, 9, 0, 0.5)[3, 4]  # centre (w//2, h//2)
    assert annulus_mask(101, 101, 20, 32).sum() == _ring(101, 101, 20, 32).sum() == 1960


@settings(**SETTINGS)
@given(seed=st.integers(0, 2**31), size=st.sampled_from([80, 101, 120]),
       shift=st.lists(st.floats(-200, 200), min_size=3, max_size=3),
       scale=st.lists(st.floats(0.01, 100), min_size=3, max_size=3))
def test_invariant_to_sky_offset_and_flux_scale_per_band(seed, size, shift, scale):
    """raw_robust(a·(x + c)) == raw_robust(x) for any per-band offset c and positive per-band scale a (the median
    removes c, the MAD divides out a), to float32 tolerance."""
    x = _image(seed, size)
    y = (x + np.array(shift)[:, None, None]) * np.array(scale)[:, None, None]  # offsets up to 200 noise sigma
    a, b = raw_robust(x), raw_robust(y)
    assert np.allclose(a, b, atol=2e-3)
    assert a.dtype == np.float32 and a.shape == (3, size, size)


@settings(**SETTINGS)
@given(seed=st.integers(0, 2**31), nan_frac=st.floats(0, 0.3), clip=st.sampled_from([10.0, 20.0, 3.5]),
       radii=st.sampled_from([(20.0, 32.0), (32.5, 45.0), (0.0, 12.0), (10.5, 13.0)]),
       sky=st.floats(-5, 5), noise=st.floats(0.1, 10))
def test_matches_scipy_reference_finite_and_clipped(seed, nan_frac, clip, radii, sky, noise):
    """Any image (with NaNs anywhere) and any settings: the output is finite, within ±clip, and equals the
    spec computed with numpy/scipy (NaN → 0 before the statistics)."""
    rng = np.random.default_rng(seed)
    x = _image(seed, 101, sky, noise)
    x[rng.random(x.shape) < nan_frac] = np.nan
    x[:, 0, 0], x[:, 0, 1] = 1e5, -1e5  # corners, outside every annulus tried: beyond any clip
    spec = PreprocessSpec(annulus_r_in=radii[0], annulus_r_out=radii[1], clip_range=clip)
    got = raw_robust(x, spec)
    assert np.isfinite(got).all() and np.abs(got).max() <= clip
    assert np.allclose(got, _reference(x, *radii, clip), atol=2e-4)
    assert (got[:, 0, 0] == clip).all() and (got[:, 0, 1] == -clip).all()


@settings(**SETTINGS)
@given(seed=st.integers(0, 2**31), fill=st.floats(-1e6, 1e6))
def test_only_the_annulus_sets_the_statistics(seed, fill):
    """Changing pixels outside the annulus leaves the output of every other pixel unchanged."""
    x = _image(seed, 101)
    ring = _ring(101, 101, 20, 32)
    y = x.copy()
    y[:, ~ring & (np.random.default_rng(seed).random((101, 101)) < 0.5)] = fill
    same = (x == y).all(axis=0)
    assert np.allclose(raw_robust(x)[:, same], raw_robust(y)[:, same], atol=1e-5)
    z = x.copy()
    z[:, ring] += 1e3 * np.random.default_rng(seed + 1).random(ring.sum())  # the annulus itself does matter
    assert not np.allclose(raw_robust(x)[:, ~ring], raw_robust(z)[:, ~ring], atol=1e-2)


def test_batches_tensors_and_dtypes():
    """A batch is normalised image by image and band by band; tensors in give tensors out; float32 always."""
    imgs = np.stack([_image(1, 101), _image(2, 101) * 3 + 7, _image(3, 101, noise=0.2)])
    batch = raw_robust(imgs)
    assert batch.shape == (3, 3, 101, 101) and batch.dtype == np.float32
    for k in range(3):
        assert np.allclose(batch[k], raw_robust(imgs[k]), atol=1e-6)
        assert np.allclose(batch[k], _reference(imgs[k]), atol=2e-4)
    t = raw_robust(torch.as_tensor(imgs))
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32 and np.allclose(t.numpy(), batch, atol=1e-6)
    t64 = raw_robust(torch.as_tensor(imgs[0], dtype=torch.float64))
    assert t64.dtype == torch.float32 and t64.shape == (3, 101, 101)
    assert np.allclose(raw_robust(imgs[0].tolist()), batch[0], atol=1e-6)  # any array-like


def test_mad_floor_nan_and_constant_images():
    """The divisor is MAD + 1e-8 (hand-computed on a ring with MAD 1e-8); a flat annulus still gives a finite,
    clipped result; NaN pixels are set to 0 before normalising."""
    ring = _ring(101, 101, 20, 32)
    n = ring.sum()
    vals = np.zeros(n)
    vals[: int(0.3 * n)], vals[int(0.3 * n): int(0.6 * n)] = 1e-8, -1e-8  # median 0, MAD 1e-8
    img = np.zeros((3, 101, 101))
    img[:, ring] = vals
    img[:, 50, 50], img[:, 50, 51], img[:, 50, 52] = 1e-8, 3e-8, -5e-7
    out = raw_robust(img)
    assert np.allclose(out[:, 50, 50], 0.5, atol=1e-3) and np.allclose(out[:, 50, 51], 1.5, atol=3e-3)
    assert np.allclose(out[:, 50, 52], -10)  # −25 clipped
    flat = np.full((3, 101, 101), 5.0)
    flat[:, 50, 50] = [6.0, 4.0, 5.0]
    out = raw_robust(flat, PreprocessSpec(clip_range=7.0))
    assert out[:, 50, 50].tolist() == [7.0, -7.0, 0.0] and (out[:, 0, 0] == 0).all()
    nan = _image(4, 101)
    nan[1, 3:6, 3:6] = np.nan
    zero = nan.copy()
    zero[1, 3:6, 3:6] = 0.0
    assert np.array_equal(raw_robust(nan), raw_robust(zero))
    allnan = np.full((3, 101, 101), np.nan)
    assert np.array_equal(raw_robust(allnan), np.zeros((3, 101, 101), np.float32))


def test_minimum_annulus_and_bad_shapes():
    """An annulus of exactly MIN_ANNULUS_PIXELS (100) pixels is accepted, 99 refused naming the counts; only
    (3, H, W) and (B, 3, H, W) are accepted."""
    assert MIN_ANNULUS_PIXELS == 100
    wide = PreprocessSpec(annulus_r_in=0, annulus_r_out=500)
    assert raw_robust(np.arange(300.0).reshape(3, 1, 100), wide).shape == (3, 1, 100)  # one row: 100 pixels
    with pytest.raises(PreprocessError, match=r"^annulus \(0, 500\) px has 99 pixels in a 1x99 image; at least 100 "
                                              r"are needed$"):
        raw_robust(np.zeros((3, 1, 99)), wide)
    with pytest.raises(PreprocessError, match=r"^annulus \(20.0, 32.0\) px has 0 pixels in a 21x21 image"):
        raw_robust(np.zeros((3, 21, 21)))
    for shape in [(101, 101), (4, 101, 101), (2, 1, 101, 101), (1, 2, 3, 101, 101), (101, 101, 3)]:
        with pytest.raises(PreprocessError, match=rf"^expected \(3, H, W\) or \(B, 3, H, W\) images, got shape "
                                                  rf"{re_tuple(shape)}$"):
            raw_robust(np.zeros(shape))


def re_tuple(shape):
    return str(tuple(shape)).replace("(", r"\(").replace(")", r"\)")


def test_spec_defaults_and_validation():
    """The paper's settings are the defaults (20/32 px, clip 10); bad modes, radii and clips are refused, and
    the limits themselves (r_in = 0) are allowed."""
    s = PreprocessSpec()
    assert (s.mode, s.annulus_r_in, s.annulus_r_out, s.clip_range) == ("raw_robust", 20.0, 32.0, 10.0)
    assert PreprocessSpec(annulus_r_in=0, annulus_r_out=0.5).annulus_r_in == 0
    assert PreprocessSpec(clip_range=1e-6).clip_range == 1e-6
    with pytest.raises(PreprocessError, match=r"^preprocessing mode 'zscore' is not supported \(only 'raw_robust'\)$"):
        PreprocessSpec(mode="zscore")
    for r_in, r_out in [(-1, 10), (10, 10), (32, 20)]:
        with pytest.raises(PreprocessError, match=rf"^annulus radii must satisfy 0 <= r_in < r_out, got \({r_in}, "
                                                  rf"{r_out}\)$"):
            PreprocessSpec(annulus_r_in=r_in, annulus_r_out=r_out)
    for clip in (0.0, -1.0, float("nan")):
        with pytest.raises(PreprocessError, match=rf"^clip_range must be > 0, got {clip}$"):
            PreprocessSpec(clip_range=clip)


def test_tensors_numpy_cannot_hold_are_normalised_in_torch():
    """A bfloat16 tensor (no numpy dtype) and a tensor that requires grad are converted by torch, not numpy: the
    result is a float32 tensor equal to the scipy reference of the same values, and gradients flow back."""
    img = _image(5, 101)
    bf16 = torch.as_tensor(img).to(torch.bfloat16)
    got = raw_robust(bf16)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float32
    assert np.allclose(got.numpy(), _reference(bf16.to(torch.float64).numpy()), atol=2e-4)
    leaf = torch.as_tensor(img, dtype=torch.float32).requires_grad_()
    out = raw_robust(leaf)
    assert out.requires_grad and np.allclose(out.detach().numpy(), _reference(img), atol=2e-4)
    out.sum().backward()
    assert leaf.grad is not None and leaf.grad.shape == (3, 101, 101)

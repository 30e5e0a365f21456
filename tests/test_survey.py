"""DR10 conventions (lenslib.survey) against independent arithmetic and the real cutouts' metadata."""

import numpy as np
import pytest

from lenslib import survey
from lenslib.survey import ImageShapeError, depth_mag, mag_to_nmgy, nmgy_to_mag, psfdepth_from_mag, to_chw, to_hwc


def test_magnitudes_and_fluxes():
    assert mag_to_nmgy(22.5) == 1.0 and mag_to_nmgy(20.0) == pytest.approx(10.0)
    m = np.array([15.0, 21.3, 27.9])
    assert np.allclose(nmgy_to_mag(mag_to_nmgy(m)), m)
    assert np.isnan(nmgy_to_mag([0.0, -1.0, np.nan, np.inf])).all()


def test_depth_from_psfdepth():
    # psfdepth 2500 nmgy^-2: sigma = 0.02 nmgy, 5 sigma = 0.1 nmgy = 25.0 mag
    assert depth_mag(2500.0) == pytest.approx(25.0)
    assert np.isnan(depth_mag([0.0, -5.0, np.nan])).all()
    m5 = np.linspace(22.0, 25.5, 8)
    assert np.allclose(depth_mag(psfdepth_from_mag(m5)), m5)


def test_chw_and_hwc():
    hwc = np.random.default_rng(0).normal(size=(101, 101, 3)).astype(np.float32)
    chw = to_chw(hwc, "x")
    assert chw.shape == (3, 101, 101)
    for k in range(3):
        assert np.array_equal(chw[k], hwc[..., k])
    assert np.array_equal(to_chw(chw, "x"), chw)  # already CHW
    assert np.array_equal(to_hwc(chw, "x"), hwc) and np.array_equal(to_hwc(hwc, "x"), hwc)
    stack = np.stack([hwc, 2 * hwc])
    assert to_chw(stack, "s", ndim=4).shape == (2, 3, 101, 101)
    with pytest.raises(ImageShapeError, match=r"host\.npz: image has shape \(101, 101, 4\)"):
        to_chw(np.zeros((101, 101, 4)), "host.npz")
    with pytest.raises(ImageShapeError, match="64x64 px; expected 101x101"):
        to_chw(np.zeros((3, 64, 64)), "small")
    assert to_chw(np.zeros((3, 64, 64)), "small", size=None).shape == (3, 64, 64)


def test_rgb_puts_z_in_red_and_g_in_blue():
    img = np.zeros((3, 5, 5))
    img[2] = 1.0  # z only
    out = survey.rgb(img)
    assert out.shape == (5, 5, 3) and out.dtype == np.uint8
    assert out[..., 0].min() > 0 and out[..., 1:].max() == 0
    img = np.zeros((3, 5, 5))
    img[0] = 1.0  # g only
    assert survey.rgb(img)[..., 2].min() > 0 and survey.rgb(img)[..., :2].max() == 0
    img[0, 0, 0] = np.nan
    assert survey.rgb(img)[0, 0].tolist() == [0, 0, 0]


def test_conventions_match_the_real_cutouts(shared):
    with np.load(shared("dr10_samples", "sample_cutout.npz")) as z:
        assert z["cutout"].shape == (survey.STAMP, survey.STAMP, len(survey.BANDS))
        assert float(z["meta_pixel_scale"]) == survey.PIXSCALE and int(z["meta_size"]) == survey.STAMP

"""DR10 cutout files: the two real cutouts, both layouts, the writer, and bad input of every kind."""

import io

import numpy as np
import pytest

from lenslib.data.cutouts import CutoutError, load_cutout, parse_cutout, save_cutout
from lenslib.survey import BANDS

REAL = ["sample_cutout.npz", "0003m005_293.npz"]  # the two real DR10 cutouts in ../shared/data/dr10_samples


@pytest.mark.parametrize("name", REAL)
def test_real_cutouts_load_in_chw_band_order_with_metadata(name, shared, tmp_path):
    path = shared("dr10_samples", name)
    with np.load(path) as z:
        raw, gid = z["cutout"], str(z["meta_galaxy_id"])
    c = load_cutout(path)
    assert c.image.shape == (3, 101, 101) and c.image.dtype == np.float32
    for k, band in enumerate(BANDS):  # band k of CHW is channel k of the stored HWC array
        assert np.array_equal(c.image[k], raw[..., k]), band
    assert c.meta["galaxy_id"] == gid == path.stem.replace("sample_cutout", gid)
    assert c.meta["pixel_scale"] == 0.262 and c.meta["size"] == 101 and c.nan_count == {"g": 0, "r": 0, "z": 0}
    assert "meta_galaxy_id" not in c.meta and "cutout" not in c.meta
    # the other layout loads identically; so does a round trip through the writer
    chw = save_cutout(tmp_path / "chw.npz", c.image, c.meta, layout="chw")
    hwc = save_cutout(tmp_path / "hwc.npz", c.hwc, c.meta)
    for p in (chw, hwc):
        again = load_cutout(p)
        assert np.array_equal(again.image, c.image) and again.meta == c.meta
    with np.load(chw) as z:
        assert z["cutout"].shape == (3, 101, 101)
    with np.load(hwc) as z:
        assert z["cutout"].shape == (101, 101, 3)


def test_nan_policy(tmp_path):
    img = np.ones((101, 101, 3), np.float32)
    img[0, 0, 1] = img[5, 5, 2] = img[6, 6, 2] = np.nan
    p = save_cutout(tmp_path / "nan.npz", img, {"galaxy_id": "x"})
    kept = load_cutout(p)
    assert kept.nan_count == {"g": 0, "r": 1, "z": 2} and np.isnan(kept.image).sum() == 3
    zeroed = load_cutout(p, nan_policy="zero")
    assert zeroed.nan_count == kept.nan_count and not np.isnan(zeroed.image).any() and zeroed.image[1, 0, 0] == 0
    with pytest.raises(CutoutError, match=r"nan\.npz: 3 NaN pixels"):
        load_cutout(p, nan_policy="error")


def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


GOOD = _npz(cutout=np.zeros((101, 101, 3), np.float32), meta_galaxy_id=np.asarray("a_1"))
BAD = {
    "not an npz": (b"hello, this is not a zip file", "not a readable .npz"),
    "truncated": (GOOD[: len(GOOD) // 2], "not a readable .npz"),
    "no cutout key": (_npz(image=np.zeros((101, 101, 3))), "no 'cutout' array"),
    "2-D image": (_npz(cutout=np.zeros((101, 101))), "shape (101, 101)"),
    "four bands": (_npz(cutout=np.zeros((101, 101, 4))), "shape (101, 101, 4)"),
    "wrong size": (_npz(cutout=np.zeros((64, 64, 3))), "64x64 px; expected 101x101"),
    "non-square": (_npz(cutout=np.zeros((101, 99, 3))), "shape (101, 99, 3)"),
    "strings": (_npz(cutout=np.full((101, 101, 3), "x")), "dtype <U1"),
    "infinite pixels": (_npz(cutout=np.full((101, 101, 3), np.inf, np.float32)), "infinite pixels"),
    "pickled objects": (_npz(cutout=np.array([{"a": 1}], dtype=object)), "not a readable .npz"),
}


@pytest.mark.parametrize("kind", BAD)
def test_bad_files_raise_naming_the_file(kind, tmp_path):
    data, needle = BAD[kind]
    path = tmp_path / f"{kind.replace(' ', '_')}.npz"
    path.write_bytes(data)
    with pytest.raises(CutoutError) as err:
        load_cutout(path)
    assert str(path) in str(err.value) and needle in str(err.value)
    assert path.read_bytes() == data  # nothing is touched


def test_missing_file_directory_bad_policy_and_bad_meta(tmp_path):
    with pytest.raises(CutoutError, match="missing.npz: no such cutout file"):
        load_cutout(tmp_path / "missing.npz")
    with pytest.raises(CutoutError, match="is a directory"):
        load_cutout(tmp_path)
    with pytest.raises(CutoutError, match="nan_policy"):
        parse_cutout(GOOD, "x.npz", nan_policy="drop")
    with pytest.raises(CutoutError, match="meta field 'tags'"):
        save_cutout(tmp_path / "m.npz", np.zeros((3, 101, 101)), {"tags": [1, 2]})
    assert not list(tmp_path.glob("m.npz*"))  # no partial file left


def test_cutout_from_s3(s3_endpoint, shared, tmp_path):
    s3_server, sample = s3_endpoint, shared("dr10_samples", "sample_cutout.npz")
    key = "stronglens_calibration/cutouts/positives/20260208/3598m030_3212.npz"
    s3_server["client"].put_object(Bucket="darkhaloscope", Key=key, Body=sample.read_bytes())
    c = load_cutout(f"s3://darkhaloscope/{key}", endpoint_url=s3_server["endpoint_url"])
    assert np.array_equal(c.image, load_cutout(sample).image)
    assert c.source.startswith("s3://darkhaloscope/") and c.meta["galaxy_id"] == "3598m030_3212"
    from lenslib.data.storage import ArtefactMissing

    with pytest.raises(ArtefactMissing, match="nothere.npz"):
        load_cutout("s3://darkhaloscope/stronglens_calibration/nothere.npz", endpoint_url=s3_server["endpoint_url"])

"""DR10 cutout files: the two real cutouts, both layouts, the writer, and bad input of every kind."""

import io
import re
import zipfile

import numpy as np
import pytest

from lenslib.data.cutouts import CutoutError, load_cutout, load_cutouts, parse_cutout, save_cutout
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
    with zipfile.ZipFile(hwc) as zf:  # deflated as np.savez_compressed, with no time in it: the same bytes again
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_DEFLATED}
        assert {i.date_time for i in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    assert save_cutout(tmp_path / "again.npz", c.hwc, c.meta).read_bytes() == hwc.read_bytes()


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


# --- metadata, layouts and dtypes, checked against the files read back with numpy / zipfile directly ---------------

@pytest.mark.parametrize("name", REAL)
def test_real_meta_fields_are_python_scalars_of_the_stored_values(name, shared):
    """Every 0-d ``meta_*`` array of a real file becomes the Python scalar it holds (str, float, int, bool)."""
    path = shared("dr10_samples", name)
    c = load_cutout(path)
    with np.load(path) as z:
        stored = {k[5:]: z[k] for k in z.files if k.startswith("meta_")}
    assert set(c.meta) == set(stored) and len(stored) == 38
    for k, v in stored.items():
        assert type(c.meta[k]) is type(v.item()) and c.meta[k] == v.item(), k
    assert parse_cutout(path.read_bytes(), name).meta == c.meta  # the defaults of parse_cutout read the metadata
    assert load_cutout(path, meta=False).meta == {} == parse_cutout(path.read_bytes(), name, meta=False).meta


def test_array_meta_fields_stay_arrays():
    data = _npz(cutout=np.zeros((101, 101, 3), np.float32), meta_bbox=np.arange(4.0), meta_one=np.asarray([7]),
                meta_n=np.asarray(3))
    c = parse_cutout(data, "a.npz")
    assert isinstance(c.meta["bbox"], np.ndarray) and c.meta["bbox"].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert isinstance(c.meta["one"], np.ndarray) and c.meta["one"].shape == (1,)
    assert type(c.meta["n"]) is int and c.meta["n"] == 3


@pytest.mark.parametrize("dtype", [np.float64, np.int16, np.uint8])
def test_any_numeric_dtype_loads_as_float32_and_is_written_as_float32(dtype, tmp_path):
    raw = (np.arange(101 * 101 * 3) % 200).reshape(101, 101, 3).astype(dtype)
    (tmp_path / "a.npz").write_bytes(_npz(cutout=raw))
    c = load_cutout(tmp_path / "a.npz")
    assert c.image.dtype == np.float32 and c.image.flags.c_contiguous
    assert np.array_equal(c.image, np.moveaxis(raw, -1, 0).astype(np.float32))
    p = save_cutout(tmp_path / "b.npz", raw)
    with np.load(p) as z:
        assert z["cutout"].dtype == np.float32 and np.array_equal(z["cutout"], raw.astype(np.float32))


def test_other_sizes_need_size_none(tmp_path):
    """The writer stores any square size; the readers refuse anything but 101 px unless ``size`` says otherwise."""
    img = np.random.default_rng(0).normal(size=(3, 64, 64)).astype(np.float32)
    p = save_cutout(tmp_path / "small.npz", img, layout="chw")
    with np.load(p) as z:
        assert np.array_equal(z["cutout"], img)
    with pytest.raises(CutoutError, match=r"small\.npz: image is 64x64 px; expected 101x101"):
        load_cutout(p)
    assert np.array_equal(load_cutout(p, size=None).image, img)
    assert np.array_equal(load_cutout(p, size=64).image, img)
    assert np.array_equal(parse_cutout(p.read_bytes(), "s", size=None).image, img)


def test_nan_fraction_limit_is_inclusive_at_one_half(tmp_path):
    """Exactly half the pixels NaN is still a cutout; one more is refused, with the fraction and the counts."""
    img = np.ones((3, 4, 4), np.float32)
    img.reshape(-1)[:24] = np.nan  # g and half of r: 24 of 48
    half = _npz(cutout=img)
    c = parse_cutout(half, "half.npz", size=None)
    assert c.nan_count == {"g": 16, "r": 8, "z": 0} and np.isnan(c.image).sum() == 24
    img.reshape(-1)[24] = np.nan
    with pytest.raises(CutoutError, match=r"^more\.npz: 52% of its pixels are NaN \{'g': 16, 'r': 9, 'z': 0\} \(more "
                                          r"than the 50% allowed: max_nan_fraction\); not scored$"):
        parse_cutout(_npz(cutout=img), "more.npz", size=None)
    with pytest.raises(CutoutError, match=r"^few\.npz: 50% of its pixels are NaN .* than the 25% allowed"):
        parse_cutout(half, "few.npz", size=None, max_nan_fraction=0.25)


def test_exact_error_messages(tmp_path):
    with pytest.raises(CutoutError, match=r"^e\.npz: empty file \(0 bytes\)$"):
        parse_cutout(b"", "e.npz")
    buf = io.BytesIO()
    np.save(buf, np.zeros((101, 101, 3), np.float32))
    with pytest.raises(CutoutError, match=r"^b\.npz: a bare \.npy array \(\(101, 101, 3\)\), not an \.npz cutout "
                                          r"with a 'cutout' array$"):
        parse_cutout(buf.getvalue(), "b.npz")
    many = _npz(**{f"k{i:02d}": np.zeros(1) for i in range(12)})
    with pytest.raises(CutoutError, match=r"^m\.npz: no 'cutout' array \(keys: \['k00', 'k01', 'k02', 'k03', 'k04', "
                                          r"'k05', 'k06', 'k07'\]\)$"):
        parse_cutout(many, "m.npz")
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w") as z:  # a member whose .npy header is damaged: numpy raises ValueError
        z.writestr("cutout.npy", b"\x93NUMPY\x01\x00garbage-header")
    with pytest.raises(CutoutError, match=r"^d\.npz: not a readable \.npz cutout \(corrupt: ValueError: "):
        parse_cutout(zbuf.getvalue(), "d.npz")
    (tmp_path / "f.npz").write_bytes(GOOD)
    with pytest.raises(CutoutError, match=r"f\.npz/g\.npz: cannot be read \(Not a directory\)$"):
        load_cutout(tmp_path / "f.npz" / "g.npz")
    with pytest.raises(CutoutError, match=r"^layout must be 'hwc' or 'chw', got 'whc'$"):
        save_cutout(tmp_path / "l.npz", np.zeros((3, 101, 101)), layout="whc")
    with pytest.raises(CutoutError, match=r"m\.npz: meta field 'tags' must be a scalar \(got list\)$"):
        save_cutout(tmp_path / "m.npz", np.zeros((3, 101, 101)), {"tags": [1, 2]})
    with pytest.raises(CutoutError, match=r"^\S*shape\.npz: image has shape \(4, 101, 101\)"):
        save_cutout(tmp_path / "shape.npz", np.zeros((4, 101, 101)))


def _write(root, rel, img):
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(_npz(cutout=np.moveaxis(img, 0, -1)))  # HWC, as the real files
    return p


def _images(n):
    rng = np.random.default_rng(7)
    return [rng.normal(size=(3, 101, 101)).astype(np.float32) for _ in range(n)]


def test_load_cutout_from_a_store(tmp_path):
    from lenslib.data.storage import open_store

    img = _images(1)[0]
    _write(tmp_path, "sub/a.npz", img)
    store = open_store(str(tmp_path))
    c = load_cutout("sub/a.npz", store=store, size=None, meta=False)
    assert np.array_equal(c.image, img) and c.source == f"{tmp_path}/sub/a.npz" and c.meta == {}
    assert list(store.reads) == ["sub/a.npz"]


# --- load_cutouts and CutoutDataset ----------------------------------------------------------------------------

def test_load_cutouts_keeps_order_resolves_root_and_zeroes_nans(tmp_path):
    imgs = _images(4)
    imgs[2][1, 3, 4] = np.nan
    for k, img in enumerate(imgs[:3]):
        _write(tmp_path / "mirror", f"c/{k}.npz", img)
    absolute = _write(tmp_path / "elsewhere", "x.npz", imgs[3])
    paths = ["c/2.npz", str(absolute), "c/0.npz", "c/1.npz"]
    for workers in (0, 1, 3):
        out = load_cutouts(paths, root=tmp_path / "mirror", workers=workers, progress=workers == 1)
        assert out.shape == (4, 3, 101, 101) and out.dtype == np.float32
        want = np.stack([np.nan_to_num(imgs[2], nan=0.0), imgs[3], imgs[0], imgs[1]])
        assert np.array_equal(out, want)
    kept = load_cutouts(["c/2.npz"], root=tmp_path / "mirror", nan_policy="keep")
    assert np.isnan(kept[0, 1, 3, 4]) and np.isnan(kept).sum() == 1
    assert load_cutouts([]).shape == (0, 3, 101, 101)


def test_load_cutouts_records_failures_or_raises(tmp_path):
    img = _images(1)[0]
    _write(tmp_path, "good.npz", img)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    paths = ["good.npz", "missing.npz", "bad.npz", "good.npz"]
    errors = {}
    out = load_cutouts(paths, root=tmp_path, errors=errors)
    assert sorted(errors) == [1, 2]
    assert errors[1] == f"{tmp_path / 'missing.npz'}: no such cutout file"
    assert errors[2].startswith(f"{tmp_path / 'bad.npz'}: not a readable .npz cutout")
    assert np.array_equal(out[0], img) and np.array_equal(out[3], img) and np.isnan(out[1:3]).all()
    with pytest.raises(CutoutError, match=r"missing\.npz: no such cutout file"):
        load_cutouts(paths, root=tmp_path)


class _FailingStore:
    """A store whose reads fail with ``exc`` for keys starting with 'x'."""

    def __init__(self, root, exc):
        from lenslib.data.storage import open_store

        self.inner, self.exc, self.keys = open_store(str(root)), exc, []

    def read_bytes(self, key):
        self.keys.append(key)
        if key.startswith("x"):
            raise self.exc
        return self.inner.read_bytes(key)

    def url(self, key):
        return self.inner.url(key)


def test_load_cutouts_from_a_store_unreachable_and_foreign_errors(tmp_path):
    from lenslib.data.storage import StoreUnreachable

    img = _images(1)[0]
    _write(tmp_path, "a.npz", img)
    store = _FailingStore(tmp_path, RuntimeError("boom"))
    errors = {}
    out = load_cutouts(["a.npz", "x.npz"], store=store, root=tmp_path / "ignored", errors=errors)
    assert sorted(store.keys) == ["a.npz", "x.npz"]  # keys go to the store as they are, root is not prepended
    assert np.array_equal(out[0], img) and np.isnan(out[1]).all()
    assert errors == {1: "x.npz: RuntimeError: boom"}
    down = _FailingStore(tmp_path, StoreUnreachable("store is down"))
    with pytest.raises(StoreUnreachable, match="store is down"):
        load_cutouts(["a.npz", "x.npz"], store=down, errors={})


def test_load_cutouts_passes_s3_uris_and_options_through(s3_endpoint, tmp_path):
    img = _images(1)[0]
    s3_endpoint["client"].put_object(Bucket="darkhaloscope", Key="lc/a.npz", Body=_npz(cutout=np.moveaxis(img, 0, -1)))
    out = load_cutouts(["s3://darkhaloscope/lc/a.npz"], root=tmp_path, endpoint_url=s3_endpoint["endpoint_url"])
    assert np.array_equal(out[0], img)


def test_cutout_dataset_items_labels_transform_and_paths(tmp_path):
    import pandas as pd
    import torch

    from lenslib.data.cutouts import CutoutDataset
    from lenslib.data.storage import open_store

    imgs = _images(3)
    imgs[1][0, 5, 5] = np.nan
    for k, img in enumerate(imgs):
        _write(tmp_path, f"c/{k}.npz", img)
    m = pd.DataFrame({"cutout_path": ["c/1.npz", "c/0.npz", "c/2.npz"], "label": [1, 0, 1]})
    ds = CutoutDataset(m, root=tmp_path)
    assert len(ds) == 3
    x, y = ds[0]
    assert isinstance(x, torch.Tensor) and x.dtype == torch.float32 and x.shape == (3, 101, 101)
    assert np.array_equal(x.numpy(), np.nan_to_num(imgs[1], nan=0.0))  # NaN -> 0 by default
    assert y.dtype == torch.float32 and float(y) == 1.0 and float(ds[1][1]) == 0.0
    assert np.isnan(CutoutDataset(m, root=tmp_path, nan_policy="keep")[0][0].numpy()[0, 5, 5])
    doubled = CutoutDataset(m, root=tmp_path, transform=lambda a: (a * 2).astype(np.float64))
    xd = doubled[1][0]
    assert xd.dtype == torch.float32 and np.array_equal(xd.numpy(), imgs[0] * 2)
    unlabelled = CutoutDataset(pd.DataFrame({"path": ["0.npz", "2.npz"]}), store=open_store(str(tmp_path / "c")),
                               root=tmp_path / "ignored", path_column="path")
    xs, ys = unlabelled[1]
    assert np.array_equal(xs.numpy(), imgs[2]) and ys.dtype == torch.float32 and float(ys) == 0.0
    assert unlabelled.labels.dtype == np.float32 and unlabelled.labels.tolist() == [0.0, 0.0]
    with pytest.raises(CutoutError, match=r"^manifest has no column 'path'$"):
        CutoutDataset(m, path_column="path")
    absolute = CutoutDataset(pd.DataFrame({"cutout_path": [str(tmp_path / "c/2.npz")]}), root=tmp_path / "ignored")
    assert np.array_equal(absolute[0][0].numpy(), imgs[2])


def test_batch_loaders_skip_the_metadata(tmp_path):
    """load_cutouts and CutoutDataset do not decode ``meta_*`` fields: a file whose metadata numpy refuses (an
    object array) still gives its image there, while load_cutout with its metadata refuses it."""
    import pandas as pd

    from lenslib.data.cutouts import CutoutDataset

    img = _images(1)[0]
    buf = io.BytesIO()
    np.savez(buf, cutout=np.moveaxis(img, 0, -1), meta_bad=np.array([{"a": 1}], dtype=object))
    (tmp_path / "m.npz").write_bytes(buf.getvalue())
    with pytest.raises(CutoutError, match=r"m\.npz: not a readable \.npz cutout \(corrupt: ValueError: Object arrays"):
        load_cutout(tmp_path / "m.npz")
    assert np.array_equal(load_cutout(tmp_path / "m.npz", meta=False).image, img)
    errors = {}
    assert np.array_equal(load_cutouts(["m.npz"], root=tmp_path, errors=errors)[0], img) and errors == {}
    ds = CutoutDataset(pd.DataFrame({"cutout_path": ["m.npz"]}), root=tmp_path)
    assert np.array_equal(ds[0][0].numpy(), img)


def test_load_cutouts_progress_bar_only_when_asked(tmp_path, capsys):
    for k, img in enumerate(_images(3)):
        _write(tmp_path, f"{k}.npz", img)
    paths = ["0.npz", "1.npz", "2.npz"]
    load_cutouts(paths, root=tmp_path)
    assert capsys.readouterr().err == ""
    load_cutouts(paths, root=tmp_path, progress=True)
    err = capsys.readouterr().err
    assert err.startswith("\rcutouts:") and "cutouts: 100%" in err and "| 3/3 [" in err
    assert re.search(r"[\d?](file/s|s/file)\]", err), err  # the unit is "file"


# --- which files go to worker processes (lenslib.data.processes; the pool itself: tests/data/test_processes.py) ---

class _FakePool:
    """Stands in for ``processes.load_on_processes``: records the call and decodes in this process, as a worker
    would (one ``load(path, store=store)`` per file, failures returned by index)."""

    def __init__(self, fail_with: Exception | None = None, raise_for: str | None = None):
        self.calls: list[dict] = []
        self.fail_with, self.raise_for = fail_with, raise_for  # raise_for: a key whose load fails in a plain way

    def __call__(self, keys, n_proc, load, *, store=None, progress=False):
        self.calls.append({"keys": list(keys), "n_proc": n_proc, "store": store, "progress": progress})
        if self.fail_with is not None:
            raise self.fail_with
        images = np.full((len(keys), 3, 101, 101), np.nan, np.float32)
        failures = []
        for i, k in enumerate(keys):
            try:
                if self.raise_for is not None and k.endswith(self.raise_for):
                    raise RuntimeError("the worker's disk went away")
                images[i] = load(k, store=store).image
            except Exception as exc:  # noqa: BLE001 - as the worker does
                failures.append((i, exc))
        return images, failures


def _mixed(tmp_path, n=6):
    """``n`` good cutouts (the last with a damaged ``meta_*`` member, which batch loading never reads), a corrupt
    file and a missing one."""
    rng = np.random.default_rng(5)
    names = []
    for k in range(n):
        img = rng.normal(0, 1, (3, 101, 101)).astype(np.float32)
        img[0, 3, 3] = np.nan
        save_cutout(tmp_path / f"m{k}.npz", img, {"galaxy_id": f"m{k}"})
        names.append(f"m{k}.npz")
    with zipfile.ZipFile(tmp_path / names[-1], "a") as zf:
        zf.writestr("meta_broken.npy", b"\x93NUMPY garbage")
    (tmp_path / "bad.npz").write_bytes(b"not a zip at all")
    return names + ["bad.npz", "absent.npz"]


@pytest.mark.parametrize("nan_policy", ["keep", "zero"])
def test_local_files_go_to_the_processes_with_their_keys_and_policy(tmp_path, monkeypatch, nan_policy):
    from lenslib.data import processes as procs
    from lenslib.data.storage import open_store

    names = _mixed(tmp_path)
    fake = _FakePool()
    monkeypatch.setattr(procs, "load_on_processes", fake)
    want_err: dict[int, str] = {}
    want = load_cutouts(names, root=tmp_path, processes=0, nan_policy=nan_policy, errors=want_err)
    assert not fake.calls  # processes=0: threads
    got_err: dict[int, str] = {}
    got = load_cutouts(names, root=tmp_path, processes=3, nan_policy=nan_policy, errors=got_err, progress=True)
    assert fake.calls == [{"keys": [str(tmp_path / n) for n in names], "n_proc": 3, "store": None, "progress": True}]
    assert np.array_equal(got, want, equal_nan=True) and got_err == want_err and sorted(got_err) == [6, 7]
    assert np.isnan(got[0, 0, 3, 3]) == (nan_policy == "keep")
    store = open_store(str(tmp_path))  # keys of a plain local store go too, with the store
    assert np.array_equal(load_cutouts(names[:6], store=store, processes=2, nan_policy=nan_policy), want[:6],
                          equal_nan=True)
    assert fake.calls[-1]["keys"] == names[:6] and fake.calls[-1]["store"] is store
    with pytest.raises(CutoutError, match="bad.npz"):  # no errors dict: the first failure is raised
        load_cutouts(names, root=tmp_path, processes=2)
    assert load_cutout(tmp_path / names[5], meta=False) and pytest.raises(CutoutError, load_cutout, tmp_path / names[5])
    fake.calls.clear()
    load_cutouts(names[:6], root=tmp_path, processes=1)  # one process is processes too
    assert [c["n_proc"] for c in fake.calls] == [1]
    plain = _FakePool(raise_for="m2.npz")  # a failure that is no LenslibError is named by the manifest's path
    monkeypatch.setattr(procs, "load_on_processes", plain)
    errors: dict[int, str] = {}
    load_cutouts(names, root=tmp_path, processes=2, errors=errors)
    assert errors[2] == "m2.npz: RuntimeError: the worker's disk went away"


def test_what_never_goes_to_processes(tmp_path, monkeypatch):
    from lenslib.data import processes as procs
    from lenslib.data.storage import open_store

    names = _mixed(tmp_path)[:6]
    paths = [str(tmp_path / n) for n in names]
    fake = _FakePool()
    monkeypatch.setattr(procs, "load_on_processes", fake)
    cached = open_store(str(tmp_path), cache_dir=tmp_path / "cache")
    load_cutouts(names, store=cached, processes=2)  # a store that is not a plain local one
    load_cutouts(paths, processes=2, endpoint_url="http://127.0.0.1:9")  # store options: S3 reads
    monkeypatch.setattr(procs, "auto_processes", lambda n: 0)
    load_cutouts(paths)  # the automatic count says none
    assert not fake.calls
    monkeypatch.setattr(procs, "auto_processes", lambda n: 4 if n == len(paths) else -1)
    load_cutouts(paths)  # the automatic count, asked with the number of files
    assert [c["n_proc"] for c in fake.calls] == [4]
    fake.calls.clear()
    errors: dict[int, str] = {}  # an s3:// key is read on threads (here, as a key the local store lacks)
    load_cutouts(["s3://nobucket/x.npz"] * 2, processes=2, store=open_store(str(tmp_path)), errors=errors)
    assert not fake.calls and sorted(errors) == [0, 1]


def test_when_processes_are_unavailable_threads_read_the_same(tmp_path, monkeypatch, capsys):
    from lenslib.data import processes as procs

    names = _mixed(tmp_path)
    fake = _FakePool(fail_with=procs.ProcessesUnavailable("no shared memory for 8 cutouts"))
    monkeypatch.setattr(procs, "load_on_processes", fake)
    errors: dict[int, str] = {}
    got = load_cutouts(names, root=tmp_path, processes=2, errors=errors)
    want = load_cutouts(names, root=tmp_path, processes=0, errors={})
    assert fake.calls and np.array_equal(got, want, equal_nan=True) and sorted(errors) == [6, 7]
    assert "load_cutouts: reading on threads (no shared memory for 8 cutouts)" in capsys.readouterr().err

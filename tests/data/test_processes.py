"""Cutouts decoded on worker processes give what the threads give: images, error messages, read records."""

from __future__ import annotations

import numpy as np
import pytest

from lenslib.data import processes as procs
from lenslib.data.cutouts import CutoutError, load_cutouts, save_cutout
from lenslib.data.storage import open_store


def _folder(tmp_path, n: int = 150):
    """``n`` distinct cutouts, with a corrupt one, a mostly-NaN one and a bare .npy among them."""
    rng = np.random.default_rng(3)
    names = []
    for k in range(n):
        name = f"c{k:03d}.npz"
        if k == 17:
            (tmp_path / name).write_bytes(b"PK\x03\x04 not a zip")
        elif k == 60:
            img = np.full((3, 101, 101), np.nan, np.float32)
            img[:, :10] = 1.0
            save_cutout(tmp_path / name, img)
        elif k == 101:
            np.save(tmp_path / "bare.npy", np.zeros((101, 101, 3), np.float32))
            (tmp_path / "bare.npy").rename(tmp_path / name)
        else:
            img = rng.normal(0, 1, (3, 101, 101)).astype(np.float32)
            img[1, 5, 5] = np.nan  # a NaN pixel: kept or zeroed as the policy says
            save_cutout(tmp_path / name, img, {"galaxy_id": f"g{k}"})
        names.append(name)
    return names + ["missing.npz"]


@pytest.mark.parametrize("nan_policy", ["keep", "zero"])
def test_processes_give_what_threads_give(tmp_path, nan_policy):
    names = _folder(tmp_path)
    runs = {}
    for how, n_proc in (("threads", 0), ("processes", 2)):
        for where in ("paths", "store"):
            errors: dict[int, str] = {}
            store = open_store(str(tmp_path)) if where == "store" else None
            paths = names if where == "store" else [str(tmp_path / n) for n in names]
            images = load_cutouts(paths, store=store, processes=n_proc, nan_policy=nan_policy, errors=errors)
            reads = None if store is None else {k: (r.size_bytes, r.sha256) for k, r in store.reads.items()}
            runs[how, where] = images, errors, reads
    for where in ("paths", "store"):
        t_img, t_err, t_reads = runs["threads", where]
        p_img, p_err, p_reads = runs["processes", where]
        assert np.array_equal(t_img, p_img, equal_nan=True)
        assert t_err == p_err and sorted(t_err) == [17, 60, 101, 150]
        assert np.isnan(p_img[[17, 60, 101, 150]]).all() and not np.isnan(p_img[0, 0, :4]).any()
        assert np.isnan(p_img[0, 1, 5, 5]) == (nan_policy == "keep")
        assert t_reads == p_reads
    assert runs["processes", "store"][2] and len(runs["processes", "store"][2]) == 150  # all but the missing one
    assert "missing.npz" in runs["processes", "store"][1][150]


def test_without_an_errors_dict_the_first_bad_file_raises_as_on_threads(tmp_path):
    names = _folder(tmp_path, 40)
    paths = [str(tmp_path / n) for n in names]
    with pytest.raises(CutoutError) as on_threads:
        load_cutouts(paths, processes=0)
    with pytest.raises(CutoutError) as on_processes:
        load_cutouts(paths, processes=2)
    assert str(on_processes.value) == str(on_threads.value) and "c017.npz" in str(on_processes.value)


def test_no_shared_memory_falls_back_to_threads(tmp_path, monkeypatch, capsys):
    names = _folder(tmp_path, 30)
    paths = [str(tmp_path / n) for n in names]
    want = load_cutouts(paths, processes=0, errors={})

    def refuse(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(procs.shared_memory, "SharedMemory", refuse)
    errors: dict[int, str] = {}
    got = load_cutouts(paths, processes=2, errors=errors)
    assert np.array_equal(got, want, equal_nan=True) and sorted(errors) == [17, 30]
    assert "reading on threads" in capsys.readouterr().err


def test_a_dead_worker_falls_back_to_threads_and_the_next_call_gets_a_new_pool(tmp_path, monkeypatch, capsys):
    names = _folder(tmp_path, 20)
    paths = [str(tmp_path / n) for n in names]
    want = load_cutouts(paths, processes=0, errors={})
    monkeypatch.setattr(procs, "_decode_chunk", _die)
    got = load_cutouts(paths, processes=2, errors={})
    assert np.array_equal(got, want, equal_nan=True) and "decoding processes failed" in capsys.readouterr().err
    assert 2 not in procs._POOLS
    monkeypatch.undo()
    assert np.array_equal(load_cutouts(paths, processes=2, errors={}), want, equal_nan=True)
    assert 2 in procs._POOLS


def _die(*args, **kwargs):
    import os

    os._exit(1)


def test_remote_keys_are_never_sent_to_processes(monkeypatch, tmp_path, s3_endpoint):
    def refuse(*args, **kwargs):
        raise AssertionError("a non-local store was read on processes")

    names = _folder(tmp_path, 10)[:3]
    want = load_cutouts([str(tmp_path / n) for n in names], processes=0)
    for n in names:
        s3_endpoint["client"].put_object(Bucket="darkhaloscope", Key=f"procs/{n}", Body=(tmp_path / n).read_bytes())
    monkeypatch.setattr(procs, "load_on_processes", refuse)
    s3 = open_store("s3://darkhaloscope/procs/", endpoint_url=s3_endpoint["endpoint_url"])
    cached = open_store(str(tmp_path), cache_dir=tmp_path / "cache")  # a local store behind a cache: not plain
    for store in (s3, cached):
        assert np.array_equal(load_cutouts(names, store=store, processes=2), want)
    uris = [f"s3://darkhaloscope/procs/{n}" for n in names]
    assert np.array_equal(load_cutouts(uris, processes=2, endpoint_url=s3_endpoint["endpoint_url"]), want)


@pytest.mark.parametrize("cores, files, want", [(1, 10_000, 0), (2, 10_000, 2), (3, 10_000, 2), (4, 10_000, 3),
                                                (16, 10_000, 15), (64, 10_000, 16), (16, 511, 0), (16, 512, 15)])
def test_auto_processes(monkeypatch, cores, files, want):
    monkeypatch.setattr(procs, "available_cores", lambda: cores)
    assert procs.auto_processes(files) == want


def test_a_chunk_decodes_into_the_shared_array_in_place(tmp_path):
    """What a worker does, run here: the chunk's images land at their offsets, failures come back, nothing else
    in the array is touched; the read records are the store's."""
    import functools

    from lenslib.data.cutouts import load_cutout

    names = _folder(tmp_path, 20)
    store = open_store(str(tmp_path))
    want = load_cutouts(names, store=store, processes=0, errors={}, nan_policy="keep")
    shm = procs.shared_memory.SharedMemory(create=True, size=len(names) * 3 * 101 * 101 * 4)
    try:
        arr = np.ndarray((len(names), 3, 101, 101), np.float32, buffer=shm.buf)
        arr[:] = 7.0
        load = functools.partial(load_cutout, nan_policy="keep", meta=False)
        fails, records = procs._decode_chunk(shm.name, len(names), 10, names[10:18], (store.uri, store.root), load)
        assert [k for k, _ in fails] == [17] and isinstance(fails[0][1], CutoutError)
        assert np.array_equal(arr[10:18], want[10:18], equal_nan=True)
        assert (arr[:10] == 7.0).all() and (arr[18:] == 7.0).all()
        assert sorted(r.key for r in records) == names[10:18]  # the corrupt one was read, then refused
        fails, records = procs._decode_chunk(shm.name, len(names), 0, [str(tmp_path / names[0])], None, load)
        assert fails == [] and records == [] and np.array_equal(arr[0], want[0], equal_nan=True)
        del arr
    finally:
        shm.close()
        shm.unlink()
    assert procs.local_store_root(store) == (store.uri, store.root)
    assert procs.local_store_root(open_store(str(tmp_path), cache_dir=tmp_path / "c")) is None
    assert procs.available_cores() >= 1


def _in_a_daemon(paths, queue):
    errors: dict[int, str] = {}
    images = load_cutouts(paths, processes=2, errors=errors)
    queue.put((procs.auto_processes(10_000), images, errors))


def test_a_daemonic_worker_reads_on_threads(tmp_path, capsys):
    """A Dask worker or a DataLoader worker is daemonic and may not start processes: it reads on threads."""
    import multiprocessing as mp

    names = _folder(tmp_path, 12)
    paths = [str(tmp_path / n) for n in names]
    want = load_cutouts(paths, processes=0, errors={})
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    worker = ctx.Process(target=_in_a_daemon, args=(paths, queue), daemon=True)
    worker.start()
    auto, images, errors = queue.get(timeout=60)
    worker.join(timeout=30)
    assert worker.exitcode == 0 and auto == 0
    assert np.array_equal(images, want, equal_nan=True) and sorted(errors) == [12]

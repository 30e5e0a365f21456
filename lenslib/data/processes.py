"""Decoding many local cutout files on worker processes.

Inflating an ``.npz`` releases the GIL, but opening the zip and parsing the array headers does not, so threads
stop scaling after a couple of cores (on 16 cores they read about as fast as on two). Here the files of one call
are cut into chunks; each chunk is read and decoded by a process of a pool kept for the life of the caller
(forked once), which writes the images straight into a shared-memory array, so no image
is pickled. Only local files are read this way (a path, or a key of a :class:`~lenslib.data.storage.LocalStore`);
keys of an S3 store are read on threads, where the time is spent waiting on the network.

:func:`lenslib.data.cutouts.load_cutouts` calls :func:`load_on_processes` when its ``processes`` says so; the
images, the error messages and the store's read records are the same as its threads give.
"""

from __future__ import annotations

import atexit
import multiprocessing as mp
import os
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import shared_memory
from pathlib import Path
from typing import Any

import numpy as np

from lenslib.survey import STAMP

#: files per task: large enough to amortise a task's overhead, small enough to keep every process busy
CHUNK = 64
#: fewer files than this are read on threads (a task round trip costs more than it saves)
MIN_FILES = 512

_POOLS: dict[int, ProcessPoolExecutor] = {}


class ProcessesUnavailable(RuntimeError):
    """The processes could not be used (no shared memory, a pool that broke): the caller reads on threads."""


def available_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def auto_processes(n_files: int) -> int:
    """How many decoding processes ``processes=None`` means for ``n_files`` local files: one per core but one,
    at least 2 and at most 16; none on one core, in a daemonic process (a Dask or DataLoader worker), or for
    fewer than :data:`MIN_FILES` files. (On 2 cores, 2 processes read 1.2–1.9 × as many files per second as
    8 threads: ``benchmarks/bench_data.py``.)"""
    if mp.current_process().daemon:  # a Dask or DataLoader worker: its machine's cores are shared out already
        return 0
    cores = available_cores()
    return min(max(cores - 1, 2), 16) if cores >= 2 and n_files >= MIN_FILES else 0


def local_store_root(store: Any) -> tuple[str, Path] | None:
    """``(uri, root)`` of a plain local store, the only kind a worker process can reopen; else None."""
    from lenslib.data.storage import LocalStore

    return (store.uri, Path(store.root)) if type(store) is LocalStore else None


def _pool(processes: int) -> ProcessPoolExecutor:
    pool = _POOLS.get(processes)
    if pool is None:
        # fork, as torch's DataLoader does on Linux: the workers need no import of __main__ (forkserver and spawn
        # re-run a script's top level in every worker) and start at once; they only read files and run numpy
        method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
        with warnings.catch_warnings():  # Python ≥ 3.12 warns of fork() beside threads (torch's, tqdm's)
            warnings.simplefilter("ignore", DeprecationWarning)
            pool = _POOLS[processes] = ProcessPoolExecutor(processes, mp_context=mp.get_context(method))
    return pool


def _drop_pool(processes: int) -> None:
    pool = _POOLS.pop(processes, None)
    if pool is not None:
        pool.shutdown(wait=False, cancel_futures=True)


@atexit.register
def _shutdown() -> None:
    for n in list(_POOLS):
        _drop_pool(n)


def _decode_chunk(shm_name: str, n_total: int, start: int, paths: Sequence[str], store_root: tuple[str, Path] | None,
                  load: Callable[..., Any]) -> tuple[list[tuple[int, BaseException]], list]:
    """In a worker: ``load(path, store=…).image`` of each of ``paths`` (files ``start …`` of the call) into the
    shared array; returns the failures ``(index, exception)`` and the store's read records."""
    from lenslib.data.storage import LocalStore

    store = None if store_root is None else LocalStore(uri=store_root[0], root=store_root[1])
    shm = shared_memory.SharedMemory(name=shm_name)
    failures: list[tuple[int, BaseException]] = []
    try:
        out = np.ndarray((n_total, 3, STAMP, STAMP), np.float32, buffer=shm.buf)
        for i, p in enumerate(paths):
            try:
                out[start + i] = load(p, store=store).image
            except Exception as exc:  # noqa: BLE001 - the caller decides what a failure of one file means
                out[start + i] = np.nan
                failures.append((start + i, exc))
        del out
    finally:
        shm.close()
    return failures, [] if store is None else list(store.reads.values())


def load_on_processes(paths: Sequence[str], processes: int, load: Callable[..., Any], *, store: Any = None,
                      progress: bool = False) -> tuple[np.ndarray, list[tuple[int, BaseException]]]:
    """Images (N, 3, 101, 101) float32 of local ``paths`` (files, or keys of the local ``store``) read on
    ``processes`` processes by ``load(path, store=store)`` (a picklable callable returning a cutout with an
    ``image``), and the failures ``(index, exception)`` in index order (their images are NaN).

    Raises :class:`ProcessesUnavailable` when shared memory or the pool cannot be used (nothing is lost: the
    caller reads the same files on threads)."""
    from lenslib._tqdm import tqdm

    if mp.current_process().daemon:
        raise ProcessesUnavailable("a daemonic process (a Dask or DataLoader worker) cannot start processes")
    n = len(paths)
    store_root = None if store is None else local_store_root(store)
    nbytes = max(n, 1) * 3 * STAMP * STAMP * 4
    try:
        shm = shared_memory.SharedMemory(create=True, size=nbytes)
    except OSError as exc:
        raise ProcessesUnavailable(f"no shared memory for {n} cutouts ({nbytes / 2**20:.0f} MiB): {exc}") from None
    failures: list[tuple[int, BaseException]] = []
    try:
        pool = _pool(processes)
        try:
            futures = {pool.submit(_decode_chunk, shm.name, n, s, list(paths[s:s + CHUNK]), store_root, load):
                       min(CHUNK, n - s) for s in range(0, n, CHUNK)}
            with tqdm(total=n, desc="cutouts", unit="file", disable=not progress) as bar:
                for f in as_completed(futures):
                    fails, records = f.result()
                    failures += fails
                    if store is not None:
                        with store._lock:
                            store.reads.update({r.key: r for r in records})
                    bar.update(futures[f])
        except (BrokenProcessPool, OSError) as exc:
            _drop_pool(processes)
            raise ProcessesUnavailable(f"the decoding processes failed ({type(exc).__name__}: {exc})") from None
        images = np.ndarray((n, 3, STAMP, STAMP), np.float32, buffer=shm.buf).copy()
    finally:
        shm.close()
        shm.unlink()
    return images, sorted(failures, key=lambda f: f[0])

"""The heavy steps on a real Dask cluster (a LocalCluster of two worker processes on 127.0.0.1): the grid and
the bright arcs give byte-identical artefacts to the local executor, a worker killed mid-run costs nothing,
and a scheduler that does not answer is named by its parameter."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from lenslib.data.storage import open_store
from lenslib.experiments.compute import bright_arc, grid
from lenslib.experiments.compute.inputs import open_inputs
from lenslib.parallel import DaskExecutor, ExecutorError, LocalExecutor, make_executor
from tests.paper_bucket import CHECKPOINT_KEY, MANIFEST_KEY, make_bucket

distributed = pytest.importorskip("distributed")

pytestmark = pytest.mark.slow

TAU = {1e-3: 0.6}
GRID_FILES = ("selection_function.csv", "selection_function_meta.json", "injections.parquet")
BA_FILES = ("bright_arc_results.json", "injection_metadata_scored.parquet")


@pytest.fixture(scope="module")
def bucket(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bucket") / "stronglens_calibration"
    make_bucket(root, None, negatives=120, positives=20)
    return root


@pytest.fixture(scope="module")
def inputs(bucket, tmp_path_factory):
    return open_inputs(open_store(str(bucket)), manifest=MANIFEST_KEY, checkpoint=CHECKPOINT_KEY,
                       priors="params/injection_priors.yaml", cache_dir=tmp_path_factory.mktemp("cache"),
                       device="cpu")


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=":0") as c:
        yield c


@pytest.fixture
def dask_executor(cluster):
    with DaskExecutor(cluster.scheduler_address, log=lambda *a: None) as ex:
        yield ex


SPEC = grid.GridSpec(theta_e=(1.0, 2.0), injections_per_cell=3, shard_injections=12)


def _grid(inputs, out: Path, executor) -> None:
    grid.run_grid(inputs, out, out / "work", TAU, SPEC, progress=False, log=lambda *a: None, executor=executor)


@pytest.fixture(scope="module")
def local_run(inputs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("local")
    _grid(inputs, out, LocalExecutor())
    bright_arc.run_bright_arcs(inputs, out, n_hosts=5, progress=False, executor=LocalExecutor())
    return out


def _same_files(a: Path, b: Path) -> None:
    for cond in SPEC.conditions:
        for name in GRID_FILES:
            key = f"grid_{cond}/{name}"
            assert (a / key).read_bytes() == (b / key).read_bytes(), key


def test_grid_and_bright_arcs_on_two_workers_equal_the_local_run_byte_for_byte(inputs, local_run, dask_executor,
                                                                              tmp_path):
    _grid(inputs, tmp_path, dask_executor)
    bright_arc.run_bright_arcs(inputs, tmp_path, n_hosts=5, progress=False, executor=dask_executor)
    _same_files(local_run, tmp_path)
    for variant in bright_arc.VARIANTS:
        for name in BA_FILES:
            key = f"ba_{variant}/{name}"
            assert (local_run / key).read_bytes() == (tmp_path / key).read_bytes(), key
    inj = pd.read_parquet(tmp_path / "grid_poisson" / "injections.parquet")
    assert len(inj) > 3 * 12 and inj["inj_id"].is_unique  # several shards, nothing duplicated
    # both workers did some of the work
    log = dask_executor.client.run(lambda dask_worker: len(dask_worker.data) + len(dask_worker.state.log))
    assert len(log) == 2


def test_a_worker_killed_mid_run_costs_only_its_task(inputs, local_run, cluster, tmp_path):
    shards = tmp_path / "grid_poisson" / "shards"
    n_shards = len(grid.shards(grid.make_plan(*_plan_inputs(inputs), SPEC, inputs.priors, progress=False), SPEC))
    assert n_shards >= 6
    with DaskExecutor(cluster.scheduler_address, log=lambda *a: None) as ex:
        victim, done_at_kill = _kill_a_worker_mid_run(ex, lambda: _grid(inputs, tmp_path, ex), shards, "*.parquet")
        assert 1 <= done_at_kill < n_shards  # the kill came mid-run
        assert victim not in ex.client.run(os.getpid).values()  # the worker died (the nanny started a new one)
    assert len(list(shards.glob("*.parquet"))) == n_shards and not list(shards.glob("*.part"))
    _same_files(local_run, tmp_path)


def _kill_a_worker_mid_run(ex: DaskExecutor, run, folder: Path, pattern: str) -> tuple[int, int]:
    """Run ``run()`` in a thread, SIGKILL one worker once ``folder`` holds a first ``pattern`` file, and wait for
    the job to finish, which must succeed; returns the killed worker's pid and the files there at the kill."""
    victim = sorted(ex.client.run(os.getpid).values())[0]
    errors: list[BaseException] = []

    def job():
        try:
            run()
        except BaseException as exc:  # noqa: BLE001 (reported by the assertion below)
            errors.append(exc)

    t = threading.Thread(target=job)
    t.start()
    t0 = time.time()
    while not (folder.exists() and any(folder.glob(pattern))) and time.time() - t0 < 120:
        time.sleep(0.02)
    done_at_kill = len(list(folder.glob(pattern)))
    os.kill(victim, signal.SIGKILL)
    t.join(300)
    assert not t.is_alive() and not errors, errors
    return victim, done_at_kill


def _plan_inputs(inputs):
    from lenslib.experiments.compute.tier_a import sample_rows

    pool = sample_rows(inputs.rows("val", label=0), SPEC.host_max, SPEC.seed).reset_index(drop=True)
    _, errors = inputs.load_images(pool)
    return pool, errors


def test_a_rerun_on_dask_skips_the_finished_shards(inputs, local_run, dask_executor, tmp_path):
    shutil.copytree(local_run, tmp_path, dirs_exist_ok=True)
    shards = tmp_path / "grid_poisson" / "shards"
    stamps = {p: p.stat().st_mtime_ns for p in shards.glob("*.parquet")}
    victim = sorted(stamps)[len(stamps) // 2]
    victim.unlink()
    _grid(inputs, tmp_path, dask_executor)
    after = {p: p.stat().st_mtime_ns for p in shards.glob("*.parquet")}
    assert set(after) == set(stamps)
    assert [p for p in after if after[p] != stamps.get(p)] == [victim]  # only the missing shard was redone
    _same_files(local_run, tmp_path)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_dead_scheduler_address_is_named_by_its_parameter():
    address = f"tcp://127.0.0.1:{_free_port()}"
    ex = DaskExecutor(address, timeout_s=2, log=lambda *a: None)
    t0 = time.time()
    with pytest.raises(ExecutorError, match=rf"parameter 'dask_scheduler': no Dask scheduler answers at "
                                            rf"'{address}' within 2 s"):
        ex.map(lambda ctx, item: item, None, [1, 2])
    assert time.time() - t0 < 30
    with pytest.raises(ExecutorError, match=r"parameter 'executor' must be one of \['local', 'dask'\], got 'spark'"):
        make_executor("spark")
    with pytest.raises(ExecutorError, match=r"parameter 'dask_workers' must be ≥ 1, got 0"):
        DaskExecutor(None, n_workers=0)
    from lenslib.repro import params

    with pytest.raises(params.ParamError, match=r"executor.*must be 'local' or 'dask'"):
        params.load("paper", {"executor": "spark"})
    assert params.load("paper", {"executor": "dask", "dask_scheduler": address})["dask_workers"] is None


def test_the_probe_permutations_on_two_workers_equal_the_sequential_loop(dask_executor, tmp_path):
    import numpy as np

    from lenslib.experiments.compute.probe import permutation_bootstrap

    rng = np.random.default_rng(3)
    x_real, x_inj = rng.normal(0.3, 1, (40, 6)), rng.normal(0, 1, (40, 6))
    kw = dict(seed=5, n_permutations=60, n_bootstrap=80, checkpoint_every=10, progress=False)
    seen: list[int] = []
    local = permutation_bootstrap(x_real, x_inj, tmp_path / "local.npz", **kw)
    dask = permutation_bootstrap(x_real, x_inj, tmp_path / "dask.npz", executor=dask_executor,
                                 on_permutation=seen.append, **kw)
    assert dask == local and seen == [60]
    assert (tmp_path / "dask.npz").read_bytes() == (tmp_path / "local.npz").read_bytes()
    assert len({round(a, 12) for a in np.load(tmp_path / "dask.npz")["perm_aucs"]}) > 10  # real, varied fits


def _score(inputs, bucket, out: Path, executor, chunk_size: int = 8):
    from lenslib.finder.scoring import score_manifest

    rows = inputs.manifest.assign(cutout_path=inputs.manifest["cutout_key"])
    return score_manifest(inputs.finder.model, rows, out, spec=inputs.finder.spec, root=str(bucket),
                          chunk_size=chunk_size, progress=False, executor=executor)


def test_manifest_scoring_on_two_workers_survives_a_killed_worker_and_equals_the_local_run(inputs, bucket, cluster,
                                                                                         tmp_path):
    local = _score(inputs, bucket, tmp_path / "local.parquet", LocalExecutor())
    assert len(local) == len(inputs.manifest) and local["score"].notna().all()
    parts = tmp_path / "dask.parquet.parts"
    with DaskExecutor(cluster.scheduler_address, log=lambda *a: None) as ex:
        _, done_at_kill = _kill_a_worker_mid_run(ex, lambda: _score(inputs, bucket, tmp_path / "dask.parquet", ex),
                                                 parts, "part_*.parquet")
    assert 1 <= done_at_kill < -(-len(local) // 8)  # the kill came mid-run
    assert (tmp_path / "dask.parquet").read_bytes() == (tmp_path / "local.parquet").read_bytes()
    assert not parts.exists()


def test_a_local_cluster_leaves_this_process_environment_as_it_was(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("MKL_NUM_THREADS", "2")
    with DaskExecutor(None, n_workers=1, log=lambda *a: None) as ex:
        assert ex.map(_environment_of_the_worker, None, [0]) == [("1", "1")]  # the worker runs on one thread
        assert "OMP_NUM_THREADS" not in os.environ and os.environ["MKL_NUM_THREADS"] == "2"
    assert "OMP_NUM_THREADS" not in os.environ and os.environ["MKL_NUM_THREADS"] == "2"


def _environment_of_the_worker(ctx, item):
    import torch

    return os.environ.get("OMP_NUM_THREADS"), str(torch.get_num_threads())

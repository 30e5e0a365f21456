"""Fault suite, jobs: resume with changed inputs, two jobs on one folder, kill -9, full and read-only disks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pandas as pd
import pytest
import torch
import yaml

from lenslib._lock import LOCK_NAME, OutputLocked, output_lock
from lenslib._util import WriteFailed, write_bytes_atomic
from lenslib.finder.config import from_mapping
from lenslib.finder.scoring import score_manifest
from lenslib.finder.training import TrainingError, train
from lenslib.repro import recompute as R
from tests.faults.conftest import REPO, cli, lock_held_elsewhere, one_clear_line, wait_for


def _cfg(world, out, **train_kw):
    root, _ = world
    return from_mapping({"dataset": {"manifest_path": str(root / "manifests" / "synthetic.parquet"),
                                     "root": str(root), "cache_in_memory": True},
                         "train": {"arch": "bottlenecked_resnet", "base_ch": 4, "epochs": 2, "batch_size": 4,
                                   "effective_batch": 4, "out_dir": str(out), **train_kw}}, "test config")


# --- locks -------------------------------------------------------------------------------------------

def test_a_second_scoring_into_the_same_output_stops_naming_the_other_process(world, model, tmp_path):
    root, df = world
    out = tmp_path / "s.parquet"
    with lock_held_elsewhere(tmp_path / "s.parquet.parts", "scoring") as other:
        with pytest.raises(OutputLocked) as exc:
            score_manifest(model, df, out, root=root, progress=False)
        assert f"process {other.pid}" in str(exc.value) and "s.parquet.parts" in str(exc.value)
    assert not out.exists()
    score_manifest(model, df, out, root=root, progress=False)  # the lock died with its holder (kill -9)
    assert len(pd.read_parquet(out)) == len(df)


def test_a_second_training_into_one_folder_stops_and_changes_nothing(world, tmp_path):
    out = tmp_path / "finder"
    train(_cfg(world, out, epochs=1), progress=False, log=None)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.name != LOCK_NAME}
    with lock_held_elsewhere(out, "training") as other:
        with pytest.raises(OutputLocked, match=f"process {other.pid}.*training"):
            train(_cfg(world, out, epochs=2), progress=False, log=None)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name != LOCK_NAME} == before
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1  # no epoch written twice


def test_two_runs_into_one_output_folder(tmp_path):
    out = tmp_path / "pub"
    with lock_held_elsewhere(out, "run") as other:
        p = cli("run", "--profile", "published", "--set", f"output_dir={out}", "--only", "01_tier_a_recall",
                "--no-book", timeout=120)
        err = one_clear_line(p, str(out), f"process {other.pid}", "in use")
    assert p.returncode == 1 and "run" in err
    assert not (out / "tables").exists()  # it stopped before writing anything


def test_two_syncs_into_one_folder(tmp_path):
    from lenslib.data.storage import open_store, sync

    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    (src / "a" / "x.txt").write_text("x")
    with lock_held_elsewhere(tmp_path / "dest", "sync"), pytest.raises(OutputLocked, match="sync"):
        sync(open_store(str(src)), "", tmp_path / "dest", progress=False)
    assert sync(open_store(str(src)), "", tmp_path / "dest", progress=False).downloaded == 1


def test_locks_are_reentrant_in_one_process_and_held_for_child_processes(tmp_path):
    with output_lock(tmp_path, "outer"), output_lock(tmp_path, "inner"):
        code = (f"from lenslib._lock import output_lock\nwith output_lock({str(tmp_path)!r}, 'kernel'): "
                f"print('ok')")
        env = {**os.environ, "LENSLIB_HELD_LOCKS": str(tmp_path.resolve())}
        told = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=REPO)
        assert told.stdout.strip() == "ok"
        env.pop("LENSLIB_HELD_LOCKS")
        other = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=REPO)
        assert "OutputLocked" in other.stderr and str(os.getpid()) in other.stderr


# --- resume keyed to inputs --------------------------------------------------------------------------

def test_training_resumes_only_on_the_same_data(world, tmp_path):
    root, df = world
    out = tmp_path / "finder"
    train(_cfg(world, out, epochs=1), progress=False, log=None)
    other = df.copy()
    other.loc[other.index[0], "label"] = 1 - other.loc[other.index[0], "label"]  # one label changed
    with pytest.raises(TrainingError, match="trained on other data"):
        train(_cfg(world, out, epochs=2), manifest=other, progress=False, log=None)
    res = train(_cfg(world, out, epochs=2), progress=False, log=None)  # the same data: resumes
    assert res.history["epoch"].tolist() == [1, 2]


def test_kill_9_of_scoring_then_rerun_with_another_model_gives_only_the_new_models_scores(world, tmp_path,
                                                                                         checkpoint):
    root, df = world
    big = pd.concat([df] * 20, ignore_index=True).assign(galaxy_id=lambda d: [f"g{k}" for k in range(len(d))])
    big.to_parquet(tmp_path / "m.parquet")
    out = tmp_path / "s.parquet"
    code = (f"import pandas as pd\nfrom lenslib.finder.checkpoints import load_checkpoint\n"
            f"from lenslib.finder.scoring import score_manifest\nf = load_checkpoint({str(checkpoint)!r})\n"
            f"score_manifest(f.model, pd.read_parquet({str(tmp_path / 'm.parquet')!r}), {str(out)!r}, "
            f"root={str(root)!r}, chunk_size=30, batch_size=30, progress=False)")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO)
    parts = tmp_path / "s.parquet.parts"
    assert wait_for(lambda: len(list(parts.glob("part_*.parquet"))) >= 2, 120)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    torch.manual_seed(99)
    from lenslib.finder.models import BottleneckedResNet

    new = BottleneckedResNet(base_ch=8).eval()
    msgs = []
    res = score_manifest(new, big, out, root=root, chunk_size=30, batch_size=30, progress=False, log=msgs.append)
    assert msgs and "discarded" in msgs[0]
    fresh = score_manifest(new, big, tmp_path / "fresh.parquet", root=root, chunk_size=30, progress=False)
    pd.testing.assert_series_equal(res["score"], fresh["score"])


def test_a_recompute_with_changed_parameters_starts_clean_and_says_what_changed(tmp_path):
    params = {k: None for k in R.COMPUTE_KEYS} | {"grid_injections_per_cell": 5, "probe_permutations": 10}
    files = {"manifest": {"sha256": "a" * 64}, "checkpoint": {"sha256": "b" * 64}}
    out = tmp_path / "run"
    (out / "results" / "grid_poisson").mkdir(parents=True)
    (out / "results" / "grid_poisson" / "selection_function.csv").write_text("old")
    (out / "work" / "cache").mkdir(parents=True)
    (out / "work" / "cache" / "manifest.parquet").write_text("cached input")
    (out / "work" / "shards").mkdir()
    logs = []
    R._keyed_resume(out, R.run_fingerprint(params, files), logs.append)  # no record: start clean
    assert "no record" in logs[-1] and not (out / "results" / "grid_poisson").exists()
    assert (out / "work" / "cache" / "manifest.parquet").exists()  # the inputs' cache is kept
    (out / "results" / "x.json").write_text("{}")
    R._keyed_resume(out, R.run_fingerprint(params, files), logs.append)  # same fingerprint: kept
    assert (out / "results" / "x.json").exists() and len(logs) == 1
    R._keyed_resume(out, R.run_fingerprint({**params, "grid_injections_per_cell": 6}, files), logs.append)
    assert "parameters.grid_injections_per_cell" in logs[-1] and not (out / "results" / "x.json").exists()
    (out / "results" / "y.json").write_text("{}")
    R._keyed_resume(out, R.run_fingerprint({**params, "grid_injections_per_cell": 6},
                                           {**files, "checkpoint": {"sha256": "c" * 64}}), logs.append)
    assert "inputs.checkpoint" in logs[-1] and not (out / "results" / "y.json").exists()


def test_an_artefact_that_drifted_after_a_finished_recompute_is_computed_again(tmp_path):
    from lenslib.experiments.verify import artefact_checksums

    params = {k: None for k in R.COMPUTE_KEYS}
    fp = R.run_fingerprint(params, {})
    out = tmp_path / "run"
    res = out / "results"
    res.mkdir(parents=True)
    (res / "a.json").write_text("1")
    (res / "b.json").write_text("2")
    (res / "provenance.json").write_text(json.dumps({"artefacts": artefact_checksums(res)}))
    (out / "work").mkdir()
    (out / "work" / R.FINGERPRINT).write_text(json.dumps(fp))
    (res / "b.json").write_text("edited")
    logs = []
    R._keyed_resume(out, fp, logs.append)
    assert (res / "a.json").exists() and not (res / "b.json").exists() and "b.json" in logs[-1]


# --- full and read-only disks ------------------------------------------------------------------------

def test_a_full_disk_names_the_file_and_keeps_what_was_written(small_disk, world, model):
    root, df = world
    write_bytes_atomic(small_disk / "kept.txt", b"written before")
    with pytest.raises(WriteFailed, match=r"cannot write .*big\.bin: the disk is full"):
        write_bytes_atomic(small_disk / "big.bin", b"x" * (1 << 20))
    assert (small_disk / "kept.txt").read_bytes() == b"written before"
    assert sorted(p.name for p in small_disk.iterdir()) == ["kept.txt"]  # no temporary left behind
    from lenslib.finder.checkpoints import save_checkpoint

    with pytest.raises(WriteFailed, match=r"last\.pt: the disk is full"):  # torch.save's "enforce fail"
        save_checkpoint(small_disk / "last.pt", {"model": {"w": torch.zeros(1 << 18)}})


def test_a_full_disk_in_the_cli_is_one_line(small_disk):
    p = cli("synth", "--out", str(small_disk / "s"), "--negatives", "30", "--positives", "10")
    one_clear_line(p, "disk is full", str(small_disk))


def test_a_read_only_output_folder(read_only_dir, world, model):
    root, df = world
    if os.geteuid() == 0 and os.access(read_only_dir, os.W_OK) and not _is_ro_mount(read_only_dir):
        pytest.skip("root ignores permissions and no read-only mount was possible")
    with pytest.raises((WriteFailed, OutputLocked), match=str(read_only_dir)):
        score_manifest(model, df, read_only_dir / "s.parquet", root=root, progress=False)
    p = cli("synth", "--out", str(read_only_dir / "s"), "--negatives", "3", "--positives", "1")
    one_clear_line(p, str(read_only_dir))


def _is_ro_mount(path) -> bool:
    return os.statvfs(path).f_flag & os.ST_RDONLY != 0


def test_an_output_folder_below_a_file(tmp_path, world):
    (tmp_path / "file").write_text("x")
    p = cli("synth", "--out", str(tmp_path / "file" / "s"), "--negatives", "3", "--positives", "1")
    one_clear_line(p, str(tmp_path / "file"))
    p = cli("params", "--profile", "published", "--set", f"output_dir={tmp_path}/file/o")
    assert p.returncode == 0  # nothing is written by `params`
    cfg = yaml.safe_dump({"train": {"out_dir": str(tmp_path / "file" / "o")}})
    (tmp_path / "c.yaml").write_text(cfg)
    p = cli("train", "--config", str(tmp_path / "c.yaml"))
    one_clear_line(p, str(tmp_path / "file"))

"""Checkpoint/resume bookkeeping of the finder training (lenslib.finder.resume): the best AUC and its epoch,
the metrics log, the checks that a checkpoint belongs to the run, and kills at every write of an epoch
(best.pt, last.pt, the metrics line) followed by a resume that must end exactly as an uninterrupted run:
same best.pt (best_auc, best_epoch, weights), same last.pt and the same metrics log, row by row."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lenslib.finder import resume as R
from lenslib.finder import training as T
from lenslib.finder.checkpoints import read_checkpoint, save_checkpoint
from lenslib.finder.config import from_mapping
from lenslib.finder.datasets import FinderDataset
from lenslib.finder.training import TrainingError, read_metrics, train

PROPS = settings(max_examples=60, deadline=None, derandomize=True)


def _doc(out_dir, root: Path | None = None, **train_kw) -> dict:
    root = root or Path("/nowhere")
    t = {"arch": "bottlenecked_resnet", "base_ch": 4, "epochs": 5, "batch_size": 16, "effective_batch": 32,
         "lr": 0.003, "lr_schedule": "step", "lr_step_epoch": 2, "warmup_epochs": 1, "out_dir": str(out_dir),
         "save_every": 2, **train_kw}
    return {"dataset": {"manifest_path": str(root / "manifests" / "synthetic.parquet"), "root": str(root),
                        "cache_in_memory": True}, "train": t}


# --- best AUC, early stopping ------------------------------------------------------------------------

aucs = st.lists(st.sampled_from([0.5, 0.6, 0.7, 0.8, 0.9]), min_size=1, max_size=12)


@PROPS
@given(aucs)
def test_the_best_auc_is_the_first_epoch_of_the_running_maximum(seq):
    p = R.Progress()
    improved = [p.update_best(a, e) for e, a in enumerate(seq, start=1)]
    assert p.best_auc == max(seq) and p.best_epoch == seq.index(max(seq)) + 1  # ties keep the earlier epoch
    assert improved == [all(a > b for b in seq[:k]) for k, a in enumerate(seq)]


@PROPS
@given(aucs, st.integers(0, 4))
def test_early_stopping_counts_epochs_without_a_better_auc(seq, patience):
    p, stale, stopped, expected = R.Progress(), 0, None, None
    for e, a in enumerate(seq, start=1):
        stale = 0 if p.update_best(a, e) else stale + 1
        if expected is None and patience and stale >= patience:
            expected = e
        if stopped is None and p.patience_exhausted(e, patience):
            stopped = e
    assert stopped == expected


def test_a_fresh_run_starts_at_epoch_one_with_nothing_best():
    p = R.Progress()
    assert (p.start, p.best_auc, p.best_epoch, p.history) == (1, -math.inf, 0, [])
    assert p.update_best(0.0, 1) and (p.best_auc, p.best_epoch) == (0.0, 1)
    assert R.Progress().history is not R.Progress().history


# --- what a checkpoint restores ----------------------------------------------------------------------

def test_progress_comes_back_from_a_checkpoint():
    hist = [{"epoch": 1, "val_auc": 0.7}, {"epoch": 2, "val_auc": 0.9}, {"epoch": 3, "val_auc": 0.8}]
    ck = {"epoch": 3, "best_auc": 0.9, "best_epoch": 2, "history": hist}
    p = R.progress_from_checkpoint(ck)
    assert (p.start, p.best_auc, p.best_epoch, p.history) == (4, 0.9, 2, hist)
    p.history.append({"epoch": 4})
    assert len(ck["history"]) == 3  # the progress owns its history
    old = R.progress_from_checkpoint({"epoch": 7, "best_auc": 0.5})  # a checkpoint without lenslib's keys
    assert (old.start, old.best_auc, old.best_epoch, old.history) == (8, 0.5, 0, [])


def _tiny(seed: int, init_scale: float = 2.0**16):
    torch.manual_seed(seed)
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.AdamW(model.parameters(), lr=0.01)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    return model, opt, sched, torch.amp.GradScaler("cpu", init_scale=init_scale)


def _saved_tiny(tmp_path, cfg, fingerprint="fp"):
    model, opt, sched, scaler = _tiny(1, init_scale=512.0)
    model(torch.ones(2, 3)).sum().backward()
    opt.step()
    sched.step()
    p = R.Progress(start=1, best_auc=0.75, best_epoch=2, history=[{"epoch": 1}, {"epoch": 2}, {"epoch": 3}])
    state = R.checkpoint_state(3, model, opt, sched, scaler, p, fingerprint, cfg, cfg.preprocess_spec())
    return save_checkpoint(tmp_path / "last.pt", state), model, opt, sched


def test_restore_loads_weights_optimiser_schedule_scaler_and_progress(tmp_path):
    cfg = from_mapping(_doc(tmp_path), "test")
    path, model, opt, sched = _saved_tiny(tmp_path, cfg)
    m2, o2, s2, sc2 = _tiny(2)
    said = []
    p = R.restore(path, cfg, "fp", m2, o2, s2, sc2, said.append)
    assert torch.equal(m2.weight, model.weight) and torch.equal(m2.bias, model.bias)
    assert torch.equal(o2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    assert s2.state_dict()["last_epoch"] == 1 and o2.param_groups[0]["lr"] == pytest.approx(0.005)
    assert sc2.get_scale() == 512.0
    assert (p.start, p.best_auc, p.best_epoch, [h["epoch"] for h in p.history]) == (4, 0.75, 2, [1, 2, 3])
    assert said == [f"resuming from {path} (epoch 3, best val AUC 0.7500)"]
    R.restore(path, cfg, "fp", *_tiny(3), None)  # no log: nothing said, nothing fails


def test_restore_with_a_disabled_scaler_leaves_it_alone(tmp_path):
    cfg = from_mapping(_doc(tmp_path), "test")
    model, opt, sched, _ = _tiny(1)
    off = torch.amp.GradScaler("cpu", enabled=False)
    save_checkpoint(tmp_path / "last.pt", R.checkpoint_state(1, model, opt, sched, off, R.Progress(), "fp", cfg,
                                                             cfg.preprocess_spec()))
    scaler = torch.amp.GradScaler("cpu", init_scale=8.0)
    R.restore(tmp_path / "last.pt", cfg, "fp", *_tiny(2)[:3], scaler)
    assert scaler.get_scale() == 8.0  # an empty scaler state is not loaded


def test_restore_refuses_a_foreign_checkpoint_before_touching_the_model(tmp_path):
    cfg = from_mapping(_doc(tmp_path), "test")
    path, *_ = _saved_tiny(tmp_path, cfg)
    m2, o2, s2, sc2 = _tiny(2)
    before = m2.weight.detach().clone()
    with pytest.raises(TrainingError, match=f"^{re.escape(str(path))} was trained on other data"):
        R.restore(path, cfg, "another fingerprint", m2, o2, s2, sc2)
    with pytest.raises(TrainingError, match=rf"^{re.escape(str(path))} belongs to a run with a different config "
                                            rf"\(train.lr\)"):
        R.restore(path, from_mapping(_doc(tmp_path, lr=0.1), "test"), "fp", m2, o2, s2, sc2)
    assert torch.equal(m2.weight, before)


def test_checkpoints_hold_the_progress_config_and_preprocessing(tmp_path):
    cfg = from_mapping(_doc(tmp_path), "test")
    model, opt, sched, scaler = _tiny(1)
    p = R.Progress(best_auc=0.8, best_epoch=3, history=[{"epoch": 1}])
    spec = cfg.preprocess_spec()
    s = R.checkpoint_state(4, model, opt, sched, scaler, p, "abc", cfg, spec)
    assert (s["epoch"], s["best_auc"], s["best_epoch"], s["history"], s["data_fingerprint"]) == \
        (4, 0.8, 3, [{"epoch": 1}], "abc")
    assert torch.equal(s["model"]["weight"], model.weight) and s["opt"] == opt.state_dict()
    assert s["sched"] == sched.state_dict() and s["scaler"] == scaler.state_dict()
    for section in ("dataset", "augment", "train", "inject"):
        assert s[section] == cfg.to_dict()[section], section
    assert s["preprocess_spec"] == {"mode": "raw_robust", "crop": False, "crop_size": 0, "clip_range": 10.0,
                                    "annulus_r_in": 20.0, "annulus_r_out": 32.0}


# --- does the checkpoint belong to this run ----------------------------------------------------------

RESUMABLE = ["train.epochs", "train.out_dir", "train.num_workers", "train.device", "train.deterministic",
             "train.early_stopping_patience", "train.save_every", "dataset.cache_in_memory", "dataset.root",
             "dataset.manifest_path", "dataset.parquet_path"]


def _changed(saved: dict, *keys: str) -> dict:
    out = {s: dict(v) if isinstance(v, dict) else v for s, v in saved.items()}
    for key in keys:
        s, k = key.split(".")
        out[s][k] = ("changed", out[s][k])
    return out


def test_only_the_resumable_keys_may_change():
    cfg = from_mapping(_doc("/tmp/x"), "test")
    saved = cfg.to_dict()
    R.check_resumable(saved, cfg, "last.pt")
    R.check_resumable(_changed(saved, *RESUMABLE), cfg, "last.pt")
    assert {f"{s}.{k}" for s, k in R.RESUMABLE_CHANGES} == set(RESUMABLE)
    others = [f"{s}.{k}" for s in ("dataset", "augment", "train", "inject") for k in saved[s]
              if f"{s}.{k}" not in RESUMABLE]
    assert len(others) > 20
    for key in others:
        with pytest.raises(TrainingError) as e:
            R.check_resumable(_changed(saved, key), cfg, "run/last.pt")
        assert str(e.value) == (f"run/last.pt belongs to a run with a different config ({key}); use another "
                                "train.out_dir, or resume=False to start over")


def test_every_differing_key_is_named_and_missing_ones_count_as_equal():
    cfg = from_mapping(_doc("/tmp/x"), "test")
    saved = cfg.to_dict()
    with pytest.raises(TrainingError, match=r"\(augment.rot90, train.lr, inject.fraction\)"):
        R.check_resumable(_changed(saved, "train.lr", "inject.fraction", "augment.rot90"), cfg, "p")
    lean = {"train": {"lr": saved["train"]["lr"]}, "dataset": None}  # an authors' checkpoint: fewer keys
    R.check_resumable(lean, cfg, "p")
    R.check_resumable({}, cfg, "p")


def test_the_data_fingerprint_must_match_when_recorded():
    R.check_same_data({"data_fingerprint": "abc"}, "abc", "p")
    R.check_same_data({}, "abc", "p")  # older checkpoints have none
    with pytest.raises(TrainingError) as e:
        R.check_same_data({"data_fingerprint": "abd"}, "abc", "out/last.pt")
    assert str(e.value) == ("out/last.pt was trained on other data (the manifest's train/val rows, their cutout "
                            "paths or labels, or dataset.root differ); use another train.out_dir, or "
                            "resume=False (--no-resume) to start over")


# --- the metrics log and the order of an epoch's writes ----------------------------------------------

def test_the_metrics_log_is_rebuilt_from_the_history_then_appended(tmp_path):
    log = tmp_path / "metrics.jsonl"
    log.write_text('{"epoch": 1}\n{"epoch": 2}\n{"epoch": 3, "val_au')  # epoch 3 lost, its line half-written
    R.start_metrics_log(log, [{"epoch": 1, "val_auc": 0.5}, {"epoch": 2, "val_auc": 0.625}])
    assert log.read_text() == '{"epoch": 1, "val_auc": 0.5}\n{"epoch": 2, "val_auc": 0.625}\n'
    R.append_metrics(log, {"epoch": 3, "val_auc": 0.75})
    assert [json.loads(x) for x in log.read_text().splitlines()] == \
        [{"epoch": 1, "val_auc": 0.5}, {"epoch": 2, "val_auc": 0.625}, {"epoch": 3, "val_auc": 0.75}]
    assert log.read_text().endswith("\n")
    R.start_metrics_log(log, [])
    assert log.read_text() == ""


def test_read_metrics_takes_the_file_or_its_folder(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1, "lr": 0.5}\n\n{"epoch": 2, "lr": 0.25}\n')
    for where in (tmp_path, tmp_path / "metrics.jsonl"):
        df = read_metrics(where)
        assert df.to_dict("records") == [{"epoch": 1, "lr": 0.5}, {"epoch": 2, "lr": 0.25}]
    with pytest.raises(TrainingError) as e:
        read_metrics(tmp_path / "nothing")
    assert str(e.value) == f"{tmp_path / 'nothing'}: no metrics log"


@pytest.mark.parametrize(("epoch", "improved", "written"), [
    (4, True, ["best.pt", "epoch_004.pt", "last.pt", "metrics.jsonl"]),
    (4, False, ["epoch_004.pt", "last.pt", "metrics.jsonl"]),
    (3, True, ["best.pt", "last.pt", "metrics.jsonl"]),
    (3, False, ["last.pt", "metrics.jsonl"]),
])
def test_an_epoch_writes_its_checkpoints_then_its_metrics_line(tmp_path, monkeypatch, epoch, improved, written):
    order = []
    monkeypatch.setattr(R, "save_checkpoint", lambda path, state: order.append((Path(path), state)))
    monkeypatch.setattr(R, "append_metrics", lambda path, rec: order.append((Path(path), rec)))
    state, rec = {"epoch": epoch, "w": 1}, {"epoch": epoch}
    R.save_epoch(tmp_path, state, rec, improved=improved, save_every=2)
    assert [p.name for p, _ in order] == written
    assert all(p.parent == tmp_path for p, _ in order)
    assert [x for _, x in order] == [state] * (len(written) - 1) + [rec]


def test_an_epoch_written_for_real_reads_back(tmp_path):
    R.save_epoch(tmp_path, {"epoch": 6, "w": torch.ones(2)}, {"epoch": 6, "val_auc": 0.5}, improved=True,
                 save_every=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "epoch_006.pt", "last.pt", "metrics.jsonl"]
    for name in ("best.pt", "epoch_006.pt", "last.pt"):
        ck = read_checkpoint(tmp_path / name)
        assert ck["epoch"] == 6 and torch.equal(ck["w"], torch.ones(2)), name
    assert json.loads((tmp_path / "metrics.jsonl").read_text()) == {"epoch": 6, "val_auc": 0.5}


# --- kills at every write of an epoch, then resume ---------------------------------------------------

AUC_BY_EPOCH = {1: 0.60, 2: 0.90, 3: 0.70, 4: 0.80, 5: 0.75}  # the best epoch (2) comes before later kills


class Killed(BaseException):
    """What SIGKILL does to the training: it stops in the middle of a write, nothing is cleaned up."""


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    """48 training and 8 validation cutouts of noise (the AUCs are rigged: what is learnt does not matter)."""
    root = tmp_path_factory.mktemp("noise_survey")
    (root / "cutouts").mkdir()
    rng = np.random.default_rng(5)
    rows = []
    for k in range(56):
        path = f"cutouts/c{k:03d}.npz"
        np.savez(root / path, cutout=rng.normal(0.0, 1.0, (101, 101, 3)).astype(np.float32))
        rows.append({"galaxy_id": f"g{k}", "cutout_path": path, "label": k % 2, "split": "train" if k < 48 else "val"})
    (root / "manifests").mkdir()
    pd.DataFrame(rows).to_parquet(root / "manifests" / "synthetic.parquet")
    return root


def _rig(mp: pytest.MonkeyPatch) -> None:
    """Validation AUCs that depend only on the epoch (AUC_BY_EPOCH) and a clock that makes every epoch take
    2.0 s of training and 2.5 s in all, so that the metrics of two runs agree to the bit."""
    now = {"epoch": 0, "calls": 0}

    class Dataset(FinderDataset):
        def set_epoch(self, epoch):
            now["epoch"] = epoch + 1
            super().set_epoch(epoch)

    def clock():  # three calls an epoch: its start, the end of its training, the end of its validation
        k = now["calls"]
        now["calls"] += 1
        return 3.0 * (k // 3) + (0.0, 2.0, 2.5)[k % 3]

    mp.setattr(T, "FinderDataset", Dataset)
    mp.setattr(T, "roc_auc_score", lambda y, s: AUC_BY_EPOCH[now["epoch"]])
    mp.setattr(T, "time", SimpleNamespace(perf_counter=clock))


@pytest.fixture(scope="module")
def straight(survey, tmp_path_factory):
    out = tmp_path_factory.mktemp("straight")
    with pytest.MonkeyPatch.context() as mp:
        _rig(mp)
        res = train(from_mapping(_doc(out, survey), "test"), progress=False, log=None)
    return out, res


def _kill_at(mp: pytest.MonkeyPatch, what: str, epoch: int) -> None:
    """Make the training die (as by SIGKILL) in the middle of writing ``what`` at ``epoch``: half a temporary
    checkpoint, or half a metrics line, is left behind."""
    real_save, real_append = R.save_checkpoint, R.append_metrics

    def save(path, state):
        path = Path(path)
        if path.name == what and state["epoch"] == epoch:
            data = real_save(path.with_name("whole.tmp"), state).read_bytes()
            path.with_name(f"{path.name}.999999999.1.part").write_bytes(data[: len(data) // 2])
            path.with_name("whole.tmp").unlink()
            raise Killed
        return real_save(path, state)

    def append(path, rec):
        if what == "metrics.jsonl" and rec["epoch"] == epoch:
            with Path(path).open("a") as fh:
                fh.write(json.dumps(rec)[:20])
            raise Killed
        real_append(path, rec)

    mp.setattr(R, "save_checkpoint", save)
    mp.setattr(R, "append_metrics", append)


def _same_checkpoint(a: Path, b: Path) -> None:
    x, y = read_checkpoint(a), read_checkpoint(b)
    assert (x["epoch"], x["best_auc"], x["best_epoch"]) == (y["epoch"], y["best_auc"], y["best_epoch"]), a.name
    assert x["history"] == y["history"], a.name
    assert x["model"].keys() == y["model"].keys()
    for k, v in x["model"].items():
        assert torch.equal(v, y["model"][k]), (a.name, k)


def _rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_kills_in_every_write_then_resumes_end_as_an_uninterrupted_run(survey, tmp_path, monkeypatch, straight):
    """Killed while writing best.pt of epoch 2, then the metrics line of epoch 3, then last.pt of epoch 4;
    each time resumed. The best epoch (2) precedes the later kills: a resume that forgot best_auc would
    take epoch 4 (0.80) for the best, one that forgot best_epoch would record 0."""
    a, res_a = straight
    b = tmp_path / "killed"
    cfg = from_mapping(_doc(b, survey), "test")
    _rig(monkeypatch)
    done_before = 0
    for what, epoch, done in [("best.pt", 2, 1), ("metrics.jsonl", 3, 3), ("last.pt", 4, 3)]:
        with monkeypatch.context() as mp:
            _kill_at(mp, what, epoch)
            with pytest.raises(Killed):
                train(cfg, progress=False, log=None)
        ck = read_checkpoint(b / "last.pt")
        assert ck["epoch"] == done and ck["best_epoch"] == min(done, 2), what
        assert len(ck["history"]) == done and done >= done_before
        done_before = done
    said = []
    res = train(cfg, progress=False, log=said.append)
    assert said[0] == f"resuming from {b / 'last.pt'} (epoch 3, best val AUC 0.9000)"

    assert (res.best_auc, res.best_epoch) == (res_a.best_auc, res_a.best_epoch) == (0.90, 2)
    for name in ("best.pt", "last.pt", "epoch_002.pt", "epoch_004.pt"):
        _same_checkpoint(a / name, b / name)
    assert read_checkpoint(b / "best.pt")["epoch"] == 2
    rows = _rows(b / "metrics.jsonl")
    assert rows == _rows(a / "metrics.jsonl") and [r["epoch"] for r in rows] == [1, 2, 3, 4, 5]
    assert [r["val_auc"] for r in rows] == [AUC_BY_EPOCH[e] for e in range(1, 6)]
    assert [r["best_auc"] for r in rows] == [0.60, 0.90, 0.90, 0.90, 0.90]
    assert [r["train_images_per_s"] for r in rows] == [48 / 2.0] * 5 and [r["seconds"] for r in rows] == [2.5] * 5
    assert res.history.to_dict("records") == rows


def test_a_resumed_run_stops_early_counting_from_the_restored_best_epoch(survey, tmp_path, monkeypatch):
    _rig(monkeypatch)
    train(from_mapping(_doc(tmp_path / "run", survey, epochs=2), "test"), progress=False, log=None)
    more = from_mapping(_doc(tmp_path / "run", survey, epochs=5, early_stopping_patience=2), "test")
    res = train(more, progress=False, log=None)  # epoch 4 is the second after the best (2): stop there
    assert res.stopped_early and list(res.history["epoch"]) == [1, 2, 3, 4] and res.best_epoch == 2
    assert read_checkpoint(tmp_path / "run" / "last.pt")["best_epoch"] == 2

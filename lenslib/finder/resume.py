"""Checkpoint and resume bookkeeping of the finder training (PAPER_SPEC C.4/C.5).

A training keeps in ``train.out_dir``: ``last.pt`` after every epoch, ``best.pt`` on a better validation
AUC, ``epoch_NNN.pt`` every ``save_every`` epochs and one JSON line per epoch in ``metrics.jsonl``. Every
checkpoint carries the run's :class:`Progress` (``epoch``, ``best_auc``, ``best_epoch``, ``history``), its
config and the fingerprint of its training data. Resuming reads ``last.pt`` only after checking that it
belongs to this run (:func:`check_resumable`, :func:`check_same_data`), restores the weights, optimiser,
schedule, scaler and the progress, and rewrites the metrics log from the checkpoint's history (dropping
the lines of an epoch that was lost, or a line half-written when the run was killed).

Checkpoints are written through a temporary file (:func:`~lenslib.finder.checkpoints.save_checkpoint`),
``last.pt`` after ``best.pt`` and ``epoch_NNN.pt`` and before the metrics line; so a kill at any point
leaves a ``last.pt`` of a finished epoch whose history the log can be rebuilt from.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from lenslib import LenslibError
from lenslib.finder.checkpoints import read_checkpoint, save_checkpoint
from lenslib.finder.config import FinderConfig

# keys that may differ between a run and its resumption (they do not change the weights)
RESUMABLE_CHANGES = {("train", "epochs"), ("train", "out_dir"), ("train", "num_workers"), ("train", "device"),
                     ("train", "deterministic"), ("train", "early_stopping_patience"), ("train", "save_every"),
                     ("dataset", "cache_in_memory"), ("dataset", "root"), ("dataset", "manifest_path"),
                     ("dataset", "parquet_path")}
CHECKED_SECTIONS = ("dataset", "augment", "train", "inject")


class TrainingError(LenslibError):
    """Training cannot start or continue (no data, one class only, a different run in out_dir ...)."""


@dataclass
class Progress:
    """Where a run stands: the next epoch to train, the best validation AUC so far and its epoch, and one
    metrics record per finished epoch."""

    start: int = 1
    best_auc: float = -math.inf
    best_epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)

    def update_best(self, auc: float, epoch: int) -> bool:
        """Record ``epoch``'s validation AUC; True (and the new best) when it beats the best so far."""
        if auc > self.best_auc:
            self.best_auc, self.best_epoch = auc, epoch
            return True
        return False

    def patience_exhausted(self, epoch: int, patience: int) -> bool:
        """Whether early stopping ends the run after ``epoch`` (``patience`` 0: never)."""
        return bool(patience) and epoch - self.best_epoch >= patience


def check_resumable(saved: dict[str, Any], cfg: FinderConfig, path: str | Path) -> None:
    """Raise :class:`TrainingError` naming the keys where the config of checkpoint ``saved`` (read from
    ``path``) differs from ``cfg``, other than :data:`RESUMABLE_CHANGES` (keys the checkpoint lacks count
    as equal)."""
    now = cfg.to_dict()
    diff = [f"{s}.{k}" for s in CHECKED_SECTIONS for k, v in now[s].items()
            if (s, k) not in RESUMABLE_CHANGES and (saved.get(s) or {}).get(k, v) != v]
    if diff:
        raise TrainingError(f"{path} belongs to a run with a different config ({', '.join(diff)}); use another "
                            "train.out_dir, or resume=False to start over")


def check_same_data(saved: dict[str, Any], fingerprint: str, path: str | Path) -> None:
    """Raise :class:`TrainingError` when checkpoint ``saved`` records another data fingerprint (a checkpoint
    without one is accepted)."""
    if saved.get("data_fingerprint", fingerprint) != fingerprint:
        raise TrainingError(f"{path} was trained on other data (the manifest's train/val rows, their cutout "
                            f"paths or labels, or dataset.root differ); use another train.out_dir, or "
                            f"resume=False (--no-resume) to start over")


def progress_from_checkpoint(ck: dict[str, Any]) -> Progress:
    """The :class:`Progress` a checkpoint records: training continues at the epoch after its own."""
    return Progress(start=ck["epoch"] + 1, best_auc=ck["best_auc"], best_epoch=ck.get("best_epoch", 0),
                    history=list(ck.get("history", [])))


def restore(last: Path, cfg: FinderConfig, fingerprint: str, model, opt, sched, scaler,
            log: Callable[[str], None] | None = None) -> Progress:
    """Load ``last`` (checked to belong to this run) into the model, optimiser, schedule and scaler and
    return its progress."""
    ck = read_checkpoint(last)
    check_resumable(ck, cfg, last)
    check_same_data(ck, fingerprint, last)
    model.load_state_dict(ck["model"])
    opt.load_state_dict(ck["opt"])
    sched.load_state_dict(ck["sched"])
    if ck.get("scaler"):
        scaler.load_state_dict(ck["scaler"])
    progress = progress_from_checkpoint(ck)
    if log:
        log(f"resuming from {last} (epoch {ck['epoch']}, best val AUC {progress.best_auc:.4f})")
    return progress


def start_metrics_log(path: Path, history: list[dict[str, Any]]) -> None:
    """Write the metrics log afresh from ``history``: lines of a lost epoch (or a half-written line) go."""
    path.write_text("".join(json.dumps(h) + "\n" for h in history))


def append_metrics(path: Path, rec: dict[str, Any]) -> None:
    """Add one epoch's record to the metrics log."""
    with path.open("a") as fh:
        fh.write(json.dumps(rec) + "\n")


def checkpoint_state(epoch: int, model, opt, sched, scaler, progress: Progress, fingerprint: str,
                     cfg: FinderConfig, spec) -> dict[str, Any]:
    """What every checkpoint of epoch ``epoch`` holds (PAPER_SPEC C.4 plus lenslib's keys)."""
    return {"epoch": epoch, "model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
            "scaler": scaler.state_dict(), "best_auc": progress.best_auc, "best_epoch": progress.best_epoch,
            "history": progress.history, "data_fingerprint": fingerprint, **cfg.to_dict(),
            "preprocess_spec": {"mode": spec.mode, "crop": False, "crop_size": 0, "clip_range": spec.clip_range,
                                "annulus_r_in": spec.annulus_r_in, "annulus_r_out": spec.annulus_r_out}}


def save_epoch(out: Path, state: dict[str, Any], rec: dict[str, Any], *, improved: bool, save_every: int) -> None:
    """Write an epoch's checkpoints (``best.pt`` when ``improved``, ``epoch_NNN.pt`` every ``save_every``
    epochs, ``last.pt``) and then its line of ``metrics.jsonl``."""
    epoch = state["epoch"]
    if improved:
        save_checkpoint(out / "best.pt", state)
    if epoch % save_every == 0:
        save_checkpoint(out / f"epoch_{epoch:03d}.pt", state)
    save_checkpoint(out / "last.pt", state)
    append_metrics(out / "metrics.jsonl", rec)


def read_metrics(path: str | Path) -> pd.DataFrame:
    """``metrics.jsonl`` (a file or the run directory) as a DataFrame, one row per epoch."""
    path = Path(path)
    path = path / "metrics.jsonl" if path.is_dir() else path
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise TrainingError(f"{path}: no metrics log") from None
    return pd.DataFrame([json.loads(ln) for ln in lines if ln.strip()])

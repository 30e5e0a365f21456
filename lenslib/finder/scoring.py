"""Scoring with a trained lens finder: logits and scores (p = sigmoid(logit), in float64 as the paper's
scripts), embeddings (penultimate features and spatially pooled per-block features, PAPER_SPEC E.4),
manifest scoring to parquet with resume, and thresholds at a target false-positive rate (E.2).

Every function takes *raw* nanomaggy cutouts and preprocesses them on the model's device with the
given :class:`~lenslib.finder.preprocess.PreprocessSpec` (a checkpoint's own spec when loaded with
:func:`lenslib.finder.checkpoints.load_checkpoint`).
"""

from __future__ import annotations

import hashlib
import math
import shutil
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch import nn

from lenslib import LenslibError
from lenslib._lock import LOCK_NAME, output_lock
from lenslib._tqdm import tqdm
from lenslib._util import atomic_write
from lenslib.data.cutouts import load_cutouts
from lenslib.finder.preprocess import PreprocessSpec, raw_robust

KEEP_COLUMNS = ("galaxy_id", "cutout_path", "label", "split", "tier", "pool", "psfsize_r", "psfdepth_r")


class ScoringError(LenslibError):
    """Scoring inputs are inconsistent (no negatives for a threshold, an unknown block ...)."""


def _device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def sigmoid64(logits: Any) -> np.ndarray:
    """p = 1/(1 + e^−logit) in float64 (scores near 1 keep their resolution for FPR thresholds)."""
    z = np.asarray(logits, dtype=np.float64)
    with np.errstate(invalid="ignore"):  # NaN logits (files that failed to load) stay NaN
        return np.exp(-np.logaddexp(0.0, -z))


def predict_logits(model: nn.Module, dataset, spec: PreprocessSpec = PreprocessSpec(), *, batch_size: int = 256,
                   num_workers: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits (float64) and labels over a dataset of (raw image, label, ...) items, in order, fp32, eval
    mode (the model's train/eval mode is restored afterwards)."""
    was_training = model.training
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    logits, labels = [], []
    for x, y, *_ in loader:
        logits.append(_logits(model, x, spec, batch_size))
        labels.append(y.numpy())
    model.train(was_training)
    return np.concatenate(logits), np.concatenate(labels)


def score_images(model: nn.Module, images: Any, spec: PreprocessSpec = PreprocessSpec(), *,
                 batch_size: int = 256) -> np.ndarray:
    """Scores (float64) of raw cutouts (N, 3, H, W) nmgy, numpy or tensor; NaN pixels count as 0."""
    return sigmoid64(_logits(model, images, spec, batch_size))


def feature_blocks(model: nn.Module) -> dict[str, nn.Module]:
    """The blocks whose pooled outputs are the per-block features: ``features_0..7`` for EfficientNet
    (as the paper), ``stem``/``layer1..4`` for the ResNets."""
    feats = getattr(model, "features", None)
    if isinstance(feats, nn.Sequential):
        return {f"features_{i}": m for i, m in enumerate(feats)}
    if hasattr(model, "stem"):
        return {"stem": model.stem, **{f"layer{k}": getattr(model, f"layer{k}") for k in range(1, 5)}}
    if hasattr(model, "layer1") and hasattr(model, "maxpool"):
        return {"stem": model.maxpool, **{f"layer{k}": getattr(model, f"layer{k}") for k in range(1, 5)}}
    raise ScoringError(f"no known feature blocks in {type(model).__name__}")


def _pool_module(model: nn.Module) -> nn.Module:
    for name in ("avgpool", "pool"):
        if hasattr(model, name):
            return getattr(model, name)
    raise ScoringError(f"no global pooling layer (avgpool/pool) in {type(model).__name__}")


@dataclass
class Embeddings:
    penultimate: np.ndarray  # (N, D): the pooled vector the one-logit head reads
    blocks: dict[str, np.ndarray]  # name → (N, C): spatial mean of the block's output
    logits: np.ndarray
    scores: np.ndarray

    def to_npz(self, path: str | Path, prefix: str = "") -> None:
        np.savez(path, **{f"{prefix}emb": self.penultimate, f"{prefix}scores": self.scores,
                          f"{prefix}logits": self.logits, **{f"{prefix}{k}": v for k, v in self.blocks.items()}})


@torch.no_grad()
def embed(model: nn.Module, images: Any, spec: PreprocessSpec = PreprocessSpec(), *,
          blocks: bool | Sequence[str] = True, batch_size: int = 256) -> Embeddings:
    """Penultimate features, per-block pooled features, logits and scores of raw cutouts (N, 3, H, W)."""
    avail = feature_blocks(model)
    names = list(avail) if blocks is True else list(blocks or [])
    unknown = [n for n in names if n not in avail]
    if unknown:
        raise ScoringError(f"unknown block(s) {unknown}; {type(model).__name__} has {list(avail)}")
    got: dict[str, list[np.ndarray]] = {n: [] for n in ["penultimate", *names]}
    hooks = [_pool_module(model).register_forward_hook(
        lambda m, i, o: got["penultimate"].append(o.flatten(1).double().cpu().numpy()))]
    for n in names:
        hooks.append(avail[n].register_forward_hook(
            lambda m, i, o, n=n: got[n].append(o.mean((-2, -1)).double().cpu().numpy())))
    try:
        lg = _logits(model, images, spec, batch_size)
    finally:
        for h in hooks:
            h.remove()
    return Embeddings(np.concatenate(got["penultimate"]), {n: np.concatenate(got[n]) for n in names}, lg, sigmoid64(lg))


def fpr_thresholds(negative_scores: Any, fprs: Sequence[float]) -> dict[float, float]:
    """Score threshold per target FPR (E.2): sort descending, k = max(1, ⌈f·N⌉), τ = k-th highest score
    (τ = 0 when k ≥ N). NaN scores (load failures) are left out."""
    s = np.asarray(negative_scores, dtype=np.float64)
    s = np.sort(s[np.isfinite(s)])[::-1]
    if not len(s):
        raise ScoringError("no finite negative scores to derive FPR thresholds from")
    out = {}
    for f in fprs:
        if not 0 < f < 1:
            raise ScoringError(f"target FPR must be in (0, 1), got {f}")
        k = max(1, math.ceil(f * len(s)))
        out[float(f)] = 0.0 if k >= len(s) else float(s[k - 1])
    return out


def score_manifest(model: nn.Module, manifest: pd.DataFrame, out: str | Path, *,
                   spec: PreprocessSpec = PreprocessSpec(), root: str | Path | None = None, store=None,
                   path_col: str = "cutout_path", batch_size: int = 256, chunk_size: int = 4096, workers: int = 8,
                   progress: bool = True, log=None) -> pd.DataFrame:
    """Score every row of ``manifest`` and write ``out`` (parquet): the manifest's id columns plus
    ``logit``, ``score`` and ``error`` (the message for a file that failed to load; its score is NaN).

    Work is written chunk by chunk to ``<out>.parts/``; a rerun after an interruption scores only the
    chunks that are missing, and the parts are removed once ``out`` is complete. The parts are keyed to their
    inputs (:func:`scoring_fingerprint`: the model's weights, the manifest's rows, the preprocessing, the data
    root and the chunk size): parts made from other inputs are never mixed in; they are discarded, ``log`` (default:
    stderr) says so, and scoring starts clean. The next chunk's cutouts are read while the current one is scored.
    The job holds the lock of ``<out>.parts/``: a second scoring into the same ``out`` stops at once."""
    out = Path(out)
    parts = out.with_name(out.name + ".parts")
    if batch_size < 1 or chunk_size < 1:
        raise ScoringError(f"batch_size and chunk_size must be ≥ 1, got {batch_size} and {chunk_size}")
    with output_lock(parts, "scoring"):
        return _score_manifest(model, manifest, out, parts, spec=spec, root=root, store=store, path_col=path_col,
                               batch_size=batch_size, chunk_size=chunk_size, workers=workers, progress=progress,
                               log=log)


def _score_manifest(model: nn.Module, manifest: pd.DataFrame, out: Path, parts: Path, *, spec: PreprocessSpec,
                    root, store, path_col: str, batch_size: int, chunk_size: int, workers: int, progress: bool,
                    log) -> pd.DataFrame:
    if path_col not in manifest.columns:
        raise ScoringError(f"the manifest has no column {path_col!r} (columns: {list(manifest.columns)[:12]})")
    keep = [c for c in KEEP_COLUMNS if c in manifest.columns and c != path_col]
    _check_resume(parts, scoring_fingerprint(model, manifest[[path_col, *keep]], spec, root, chunk_size), log)
    n = len(manifest)
    starts = range(0, n, chunk_size)
    part_of = lambda s0: parts / f"part_{s0:010d}_{min(n, s0 + chunk_size) - s0}.parquet"  # noqa: E731
    todo = [s0 for s0 in starts if not part_of(s0).exists()]

    def load(s0: int) -> tuple[np.ndarray, dict[int, str]]:
        errors: dict[int, str] = {}
        paths = manifest[path_col].iloc[s0:s0 + chunk_size].astype(str).tolist()
        return load_cutouts(paths, store=store, root=root, workers=workers, errors=errors), errors

    with ThreadPoolExecutor(max_workers=1) as reader:
        nxt = reader.submit(load, todo[0]) if todo else None
        bar = tqdm(total=len(starts), initial=len(starts) - len(todo), desc="scoring", unit="chunk",
                   disable=not progress)
        for k, s0 in enumerate(todo):
            images, errors = nxt.result()
            nxt = reader.submit(load, todo[k + 1]) if k + 1 < len(todo) else None
            rows = manifest.iloc[s0:s0 + chunk_size]
            ok = np.array([i not in errors for i in range(len(rows))])
            logits = np.full(len(rows), np.nan)
            if ok.any():
                logits[ok] = _logits(model, images[ok], spec, batch_size)
            df = rows[[path_col, *keep]].reset_index(drop=True).copy()
            df["logit"], df["score"] = logits, sigmoid64(logits)
            df["error"] = [errors.get(i) for i in range(len(rows))]
            with atomic_write(part_of(s0)) as tmp:
                pq.write_table(pa.Table.from_pandas(df, preserve_index=False), tmp)
            bar.update()
        bar.close()
    frames = [pd.read_parquet(part_of(s0)) for s0 in starts]
    result = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[path_col, *keep, "logit",
                                                                                        "score", "error"])
    with atomic_write(out) as tmp:
        result.to_parquet(tmp, index=False)
    for f in [*parts.glob("part_*.parquet"), parts / FINGERPRINT, parts / LOCK_NAME]:
        f.unlink(missing_ok=True)
    shutil.rmtree(parts, ignore_errors=True)
    return pd.read_parquet(out)


FINGERPRINT = "fingerprint.txt"


def scoring_fingerprint(model: nn.Module, rows: pd.DataFrame, spec: PreprocessSpec, root: Any,
                        chunk_size: int) -> str:
    """SHA-256 of what determines a scoring job's output: the model's parameters and buffers, the manifest rows
    (paths and ids, in order), the preprocessing spec, the data root and the chunk size."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode() + str(t.dtype).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    h.update(pd.util.hash_pandas_object(rows.astype(str), index=False).to_numpy().tobytes())
    h.update(repr((spec, str(root), int(chunk_size), list(rows.columns))).encode())
    return h.hexdigest()


def _check_resume(parts: Path, fingerprint: str, log) -> None:
    """Keep ``parts`` only if they were made from the same inputs; otherwise remove them and say so."""
    mark = parts / FINGERPRINT
    old = mark.read_text().strip() if mark.exists() else None
    chunks = list(parts.glob("part_*.parquet"))
    if chunks and old != fingerprint:
        why = "made by another model, manifest or preprocessing" if old else "with no record of their inputs"
        (log or (lambda m: print(m, file=sys.stderr)))(
            f"scoring: {len(chunks)} chunk(s) in {parts} were {why}; they are discarded and scoring starts clean")
        for f in chunks:
            f.unlink()
    if old != fingerprint:
        with atomic_write(mark) as tmp:
            Path(tmp).write_text(fingerprint + "\n")


@torch.no_grad()
def _logits(model: nn.Module, images: Any, spec: PreprocessSpec, batch_size: int) -> np.ndarray:
    """Logits (float64) of raw cutouts, in batches on the model's device, eval mode."""
    model.eval()
    device = _device(model)
    x = images if isinstance(images, torch.Tensor) else torch.as_tensor(np.asarray(images, dtype=np.float32))
    out = [model(raw_robust(x[i:i + batch_size].to(device), spec)).squeeze(1).double().cpu().numpy()
           for i in range(0, len(x), batch_size)]
    return np.concatenate(out) if out else np.zeros(0)

"""Scoring with a trained lens finder: logits and scores (p = sigmoid(logit), in float64 as the paper's
scripts), embeddings (penultimate features and spatially pooled per-block features, PAPER_SPEC E.4),
manifest scoring to parquet with resume, and thresholds at a target false-positive rate (E.2).

Every function takes *raw* nanomaggy cutouts and preprocesses them on the model's device with the
given :class:`~lenslib.finder.preprocess.PreprocessSpec` (a checkpoint's own spec when loaded with
:func:`lenslib.finder.checkpoints.load_checkpoint`).
"""

from __future__ import annotations

import copy
import hashlib
import math
import re
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
from lenslib.data.extract import TileSource
from lenslib.finder.preprocess import PreprocessSpec, raw_robust
from lenslib.parallel import Executor, worker_device

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
                   progress: bool = True, log=None, executor: Executor | None = None) -> pd.DataFrame:
    """Score every row of ``manifest`` and write ``out`` (parquet): the manifest's id columns plus
    ``logit``, ``score`` and ``error`` (the message for a file that failed to load; its score is NaN).

    Work is written chunk by chunk to ``<out>.parts/``, each shard named by the rows it holds (:func:`part_name`)
    and written to a temporary first; a rerun after an interruption scores only the rows no valid shard holds (the
    chunk size may differ between the runs), and the parts are removed once ``out`` is complete. The parts are keyed
    to their inputs (:func:`scoring_fingerprint`: the model's weights, the manifest's rows, the preprocessing and the
    data root): parts made from other inputs are never mixed in; they are discarded, ``log`` (default: stderr) says
    so, and scoring starts clean. Each shard is checked before it is reused (readable, made from these inputs, the
    expected columns, the ids of the rows its name gives); a damaged or foreign one is rescored, and ``log`` says so.
    The next chunk's cutouts are read while the current one is scored. The job holds the lock of ``<out>.parts/``:
    a second scoring into the same ``out`` stops at once.

    With a Dask ``executor`` each missing chunk is a task: the worker reads the chunk's cutouts itself (from
    ``root`` or ``store``, which must be reachable from the workers, as ``<out>.parts/`` must) and writes its
    shard; the model is sent once per worker. The output is the same as the local one's."""
    out = Path(out)
    parts = out.with_name(out.name + ".parts")
    if batch_size < 1 or chunk_size < 1:
        raise ScoringError(f"batch_size and chunk_size must be ≥ 1, got {batch_size} and {chunk_size}")
    with output_lock(parts, "scoring"):
        return _score_manifest(model, manifest, out, parts, spec=spec, root=root, store=store, path_col=path_col,
                               batch_size=batch_size, chunk_size=chunk_size, workers=workers, progress=progress,
                               log=log, executor=executor)


def _say(log):
    return log or (lambda m: print(m, file=sys.stderr))


def _score_manifest(model: nn.Module, manifest: pd.DataFrame, out: Path, parts: Path, *, spec: PreprocessSpec,
                    root, store, path_col: str, batch_size: int, chunk_size: int, workers: int, progress: bool,
                    log, executor: Executor | None = None) -> pd.DataFrame:
    if path_col not in manifest.columns:
        raise ScoringError(f"the manifest has no column {path_col!r} (columns: {list(manifest.columns)[:12]})")
    keep = [c for c in KEEP_COLUMNS if c in manifest.columns and c != path_col]
    ids = manifest[[path_col, *keep]].reset_index(drop=True)
    fingerprint = scoring_fingerprint(model, ids, spec, root)
    _check_resume(parts, fingerprint, log)
    done = _reusable_shards(parts, ids, fingerprint, log)
    todo = _missing_chunks(len(ids), chunk_size, done)

    def load(chunk: tuple[int, int]) -> tuple[np.ndarray, dict[int, str]]:
        errors: dict[int, str] = {}
        paths = ids[path_col].iloc[chunk[0]:chunk[0] + chunk[1]].astype(str).tolist()
        return load_cutouts(paths, store=store, root=root, workers=workers, errors=errors), errors

    if executor is not None and executor.kind != "local":
        if todo:
            source = None if store is None else TileSource(store)
            ctx = ScoringContext(copy.deepcopy(model).cpu(), ids, spec, root, source, path_col, batch_size, workers,
                                 parts, fingerprint)
            executor.map(score_chunk_task, ctx, todo, desc="scoring", progress=progress)
    else:
        _score_here(model, ids, todo, load, parts, fingerprint, spec, batch_size, progress)
    frames = [pd.read_parquet(parts / part_name(s0, c)) for s0, c in sorted([*done, *todo])]
    result = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[*ids.columns, *SCORE_COLUMNS])
    with atomic_write(out) as tmp:
        result.to_parquet(tmp, index=False)
    for f in [*parts.glob("part_*.parquet"), parts / FINGERPRINT, parts / LOCK_NAME]:
        f.unlink(missing_ok=True)
    shutil.rmtree(parts, ignore_errors=True)
    return pd.read_parquet(out)


def _score_here(model: nn.Module, ids: pd.DataFrame, todo: list[tuple[int, int]], load, parts: Path,
                fingerprint: str, spec: PreprocessSpec, batch_size: int, progress: bool) -> None:
    """Score the chunks ``todo`` in this process, reading the next chunk's cutouts while one is scored."""
    with ThreadPoolExecutor(max_workers=1) as reader:
        nxt = reader.submit(load, todo[0]) if todo else None
        bar = tqdm(total=len(ids), initial=len(ids) - sum(c for _, c in todo), desc="scoring", unit="row",
                   disable=not progress)
        for k, (s0, count) in enumerate(todo):
            images, errors = nxt.result()
            nxt = reader.submit(load, todo[k + 1]) if k + 1 < len(todo) else None
            df = _score_chunk(model, ids.iloc[s0:s0 + count], images, errors, spec, batch_size)
            _write_shard(parts / part_name(s0, count), df, fingerprint)
            bar.update(count)
        bar.close()


FINGERPRINT = "fingerprint.txt"
SCORE_COLUMNS = ("logit", "score", "error")
#: the key of a shard's parquet metadata that holds the fingerprint of the job that wrote it
SHARD_KEY = b"lenslib_scoring_fingerprint"
_PART = re.compile(r"part_(\d{10})_(\d+)\.parquet")


def part_name(start: int, count: int) -> str:
    """File name of the shard that holds the manifest rows ``start … start + count − 1``."""
    return f"part_{start:010d}_{count}.parquet"


@dataclass
class ScoringContext:
    """What every scoring task needs, sent once to each worker: the model (on the CPU; each worker moves it to
    its device once), the manifest's id columns, the preprocessing, where the cutouts are, and the shard folder."""

    model: nn.Module
    ids: pd.DataFrame
    spec: PreprocessSpec
    root: Any
    source: TileSource | None
    path_col: str
    batch_size: int
    workers: int
    parts: Path
    fingerprint: str

    def device_model(self) -> nn.Module:
        if not getattr(self, "_on_device", False):
            self.model.to(worker_device())
            self._on_device = True
        return self.model


def score_chunk_task(ctx: ScoringContext, chunk: tuple[int, int]) -> str:
    """Read, score and write the shard of the rows ``chunk = (start, count)``, unless it exists (a rerun of
    a task that a dead worker had finished)."""
    s0, count = chunk
    name = part_name(s0, count)
    if not (ctx.parts / name).exists():
        errors: dict[int, str] = {}
        paths = ctx.ids[ctx.path_col].iloc[s0:s0 + count].astype(str).tolist()
        store = None if ctx.source is None else ctx.source.open()
        images = load_cutouts(paths, store=store, root=ctx.root, workers=ctx.workers, errors=errors)
        df = _score_chunk(ctx.device_model(), ctx.ids.iloc[s0:s0 + count], images, errors, ctx.spec, ctx.batch_size)
        _write_shard(ctx.parts / name, df, ctx.fingerprint)
    return name


def _score_chunk(model: nn.Module, rows: pd.DataFrame, images: np.ndarray, errors: dict[int, str],
                 spec: PreprocessSpec, batch_size: int) -> pd.DataFrame:
    """One shard's table: the rows' id columns, ``logit``, ``score`` and ``error`` (NaN scores for load failures)."""
    ok = np.array([i not in errors for i in range(len(rows))])
    logits = np.full(len(rows), np.nan)
    if ok.any():
        logits[ok] = _logits(model, images[ok], spec, batch_size)
    df = rows.reset_index(drop=True).copy()
    df["logit"], df["score"] = logits, sigmoid64(logits)
    df["error"] = [errors.get(i) for i in range(len(rows))]
    return df


def _write_shard(path: Path, df: pd.DataFrame, fingerprint: str) -> None:
    """Write a shard through a temporary (a kill never leaves a partial file under ``path``), tagged with the
    fingerprint of the job's inputs."""
    table = pa.Table.from_pandas(df, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), SHARD_KEY: fingerprint.encode()})
    with atomic_write(path) as tmp:
        pq.write_table(table, tmp)


def _shard_problem(path: Path, ids: pd.DataFrame, fingerprint: str) -> str | None:
    """Why the shard ``path`` cannot be reused for the rows ``ids`` (None when it can)."""
    m = _PART.fullmatch(path.name)
    if not m:
        return "its name does not say which rows it holds"
    s0, count = int(m[1]), int(m[2])
    if count < 1:
        return "its name says it holds no rows"
    if s0 + count > len(ids):
        return f"rows {s0}..{s0 + count - 1} are not in the manifest of {len(ids)} rows"
    try:
        table = pq.read_table(path)
    except (OSError, ValueError, pa.ArrowException) as exc:
        return f"unreadable: {exc}"
    if (table.schema.metadata or {}).get(SHARD_KEY) != fingerprint.encode():
        return "written by another job (other model, manifest or preprocessing)"
    columns = [*ids.columns, *SCORE_COLUMNS]
    if table.column_names != columns:
        return f"columns {table.column_names}, expected {columns}"
    if table.num_rows != count:
        return f"{table.num_rows} rows, its name says {count}"
    got = table.select(list(ids.columns)).to_pandas().astype(str)
    if not got.equals(ids.iloc[s0:s0 + count].astype(str).reset_index(drop=True)):
        return f"its ids are not those of the manifest rows {s0}..{s0 + count - 1}"
    return None


def _reusable_shards(parts: Path, ids: pd.DataFrame, fingerprint: str, log) -> list[tuple[int, int]]:
    """(start, count) of the valid, non-overlapping shards in ``parts``, in order; the invalid ones are removed and
    named in ``log`` (valid ones that overlap a kept one are left for the final clean-up)."""
    bad, good = [], []
    for f in sorted(parts.glob("part_*.parquet")):
        why = _shard_problem(f, ids, fingerprint)
        if why:
            bad.append(f"{f.name}: {why}")
            f.unlink()
        else:
            m = _PART.fullmatch(f.name)
            good.append((int(m[1]), int(m[2])))
    if bad:
        _say(log)(f"scoring: {len(bad)} shard(s) in {parts} cannot be reused and are rescored: {'; '.join(bad)}")
    kept, end = [], 0
    for s0, count in sorted(good):
        if s0 >= end:  # else it overlaps a kept one (written with another chunk size): not needed
            kept.append((s0, count))
            end = s0 + count
    return kept


def _missing_chunks(n: int, chunk_size: int, done: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """(start, count) chunks of at most ``chunk_size`` rows covering the rows of 0..n−1 that ``done`` (sorted,
    non-overlapping (start, count) ranges) does not."""
    todo, cursor = [], 0
    for s0, count in [*done, (n, 0)]:
        todo += [(a, min(s0, a + chunk_size) - a) for a in range(cursor, s0, chunk_size)]
        cursor = s0 + count
    return todo


def scoring_fingerprint(model: nn.Module, rows: pd.DataFrame, spec: PreprocessSpec, root: Any,
                        chunk_size: int | None = None) -> str:
    """SHA-256 of what determines a scoring job's output: the model's parameters and buffers, the manifest rows
    (paths and ids, in order), the preprocessing spec and the data root. ``chunk_size`` is accepted for earlier
    callers and ignored: shards are named by the rows they hold, so a resume may use another chunk size."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode() + str(t.dtype).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    h.update(pd.util.hash_pandas_object(rows.astype(str), index=False).to_numpy().tobytes())
    h.update(repr((spec, str(root), list(rows.columns))).encode())
    return h.hexdigest()


def _check_resume(parts: Path, fingerprint: str, log) -> None:
    """Keep ``parts`` only if they were made from the same inputs; otherwise remove them and say so."""
    mark = parts / FINGERPRINT
    old = mark.read_text().strip() if mark.exists() else None
    chunks = list(parts.glob("part_*.parquet"))
    if chunks and old != fingerprint:
        why = "made by another model, manifest or preprocessing" if old else "with no record of their inputs"
        _say(log)(f"scoring: {len(chunks)} chunk(s) in {parts} were {why}; they are discarded and scoring starts "
                  f"clean")
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

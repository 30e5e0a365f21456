"""Training a lens finder from a :class:`~lenslib.finder.config.FinderConfig` (PAPER_SPEC C.4/C.5).

AdamW; unweighted ``BCEWithLogitsLoss``; micro-batches with the loss divided by the accumulation
count and an optimiser step every ``accumulation`` micro-batches and at the last batch of the epoch
(shuffled loader, ``drop_last``); AMP (float16 autocast + GradScaler) on CUDA only; the schedule
(step, cosine or none) stepped once per epoch; linear warm-up ``lr·(0.01 + 0.99·e/W)`` set at the
start of epochs e ≤ W; optional backbone freezing for the first epochs (fresh optimiser and
fast-forwarded schedule when unfreezing); validation AUC in fp32 after every epoch; ``best.pt`` on
a better AUC, ``last.pt`` every epoch, ``epoch_NNN.pt`` every ``save_every`` epochs; optional early
stopping; one JSON line per epoch in ``metrics.jsonl``.

Determinism and resuming: initialisation, the shuffle order and dropout are seeded from
``train.seed`` and the epoch number, and the augmentation from ``dataset.seed``, the sample index and
the epoch (B.3). So a run killed at any point and started again with the same config continues from
``last.pt`` (losing at most the unfinished epoch) and ends with the same weights as an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from lenslib._tqdm import tqdm
from lenslib._util import resolve_path
from lenslib.data.manifests import read_manifest
from lenslib.finder.config import FinderConfig, InjectConfig
from lenslib.finder.datasets import FinderDataset
from lenslib.finder.models import build_model, load_weights
from lenslib.finder.preprocess import raw_robust
from lenslib.finder.resume import (
    RESUMABLE_CHANGES,
    Progress,
    TrainingError,
    check_resumable,
    checkpoint_state,
    read_metrics,
    restore,
    save_epoch,
    start_metrics_log,
)
from lenslib.finder.scoring import predict_logits
from lenslib.injection import InjectionEngine, InjectionParams, InjectionPriors, draw

# re-exported: the checkpoint/resume bookkeeping lives in lenslib.finder.resume
__all__ = ["RESUMABLE_CHANGES", "OnTheFlyInjector", "TrainResult", "TrainingError", "data_fingerprint",
           "load_training_manifest", "read_metrics", "train"]


@dataclass
class TrainResult:
    out_dir: Path
    best_auc: float
    best_epoch: int
    history: pd.DataFrame
    model: nn.Module
    stopped_early: bool


def load_training_manifest(cfg: FinderConfig, store=None) -> pd.DataFrame:
    """The manifest the config names (a local path, or a key/URI read through ``store``)."""
    src = cfg.manifest
    if not src:
        raise TrainingError(f"{cfg.source}: dataset.manifest_path (or parquet_path) is empty and no manifest was given")
    if store is not None and not Path(src).exists():
        return read_manifest(store.read_bytes(src), name=src)
    return read_manifest(src)


class OnTheFlyInjector:
    """Turns each training negative into a lens with probability ``fraction``: an arc drawn from the
    priors (θ_E uniform in the configured range) injected with the host's psfsize_r. Decisions and
    draws are seeded by (seed, epoch, sample index), so they repeat exactly on resume."""

    def __init__(self, cfg: InjectConfig, psf_fwhm_r: np.ndarray, device: torch.device):
        self.cfg = cfg
        self.priors = InjectionPriors.from_yaml(resolve_path(cfg.priors))
        if cfg.source_r_mag_max > 0:
            self.priors = self.priors.override(r_mag_range=(cfg.source_r_mag_min, cfg.source_r_mag_max))
        self.psf = np.where(np.isfinite(psf_fwhm_r) & (psf_fwhm_r > 0), psf_fwhm_r, cfg.default_psf_fwhm_r)
        self.engine = InjectionEngine(sampling=cfg.sampling, poisson=cfg.poisson, gain=cfg.gain, device=device)

    def __call__(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, epoch: int):
        chosen, parts, seeds = [], [], []
        for row, (k, label) in enumerate(zip(idx.tolist(), y.tolist(), strict=True)):
            rng = np.random.default_rng([self.cfg.seed, epoch, k])
            if label == 0 and rng.random() < self.cfg.fraction:
                theta_e = rng.uniform(self.cfg.theta_e_min, self.cfg.theta_e_max)
                parts.append(draw(rng, theta_e, self.priors, 1))
                chosen.append(row)
                seeds.append(int(rng.integers(0, 2**31 - 1)))
        if not chosen:
            return x, y
        res = self.engine.inject(x[chosen], InjectionParams.concat(parts), self.psf[idx[chosen].numpy()],
                                 seeds=np.asarray(seeds))
        x, y = x.clone(), y.clone()
        x[chosen] = res.injected.to(x.device, x.dtype)
        y[chosen] = 1.0
        return x, y


def _optimiser(model: nn.Module, cfg: FinderConfig, fast_forward: int = 0):
    t = cfg.train
    opt = torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    if t.lr_schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=t.epochs)
    elif t.lr_schedule == "step":
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=max(1, t.lr_step_epoch), gamma=t.lr_gamma)
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 1.0)
    with warnings.catch_warnings():  # stepping a fresh schedule before any optimiser step is the point here
        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
        for _ in range(fast_forward):
            sched.step()
    return opt, sched


def _head(model: nn.Module) -> nn.Module:
    for name in ("classifier", "fc"):
        if hasattr(model, name):
            return getattr(model, name)
    raise TrainingError(f"{type(model).__name__} has no classifier/fc head to keep trainable")


def _set_backbone_frozen(model: nn.Module, frozen: bool) -> None:
    head = {id(p) for p in _head(model).parameters()}
    for p in model.parameters():
        p.requires_grad_(not frozen or id(p) in head)


_check_resumable = check_resumable  # the name before the bookkeeping moved to lenslib.finder.resume


def _split(df: pd.DataFrame, split: str, cfg: FinderConfig) -> pd.DataFrame:
    part = df[df["split"] == split].reset_index(drop=True)
    for col in (cfg.dataset.cutout_path_col, cfg.dataset.label_col):
        if col not in part.columns:
            raise TrainingError(f"{cfg.source}: the manifest has no column {col!r}")
    return part


def data_fingerprint(tr: pd.DataFrame, va: pd.DataFrame, cfg: FinderConfig) -> str:
    """SHA-256 of what the training reads from its manifest: the train and val rows' cutout paths and labels
    (in order), the data root and lenslib's version. A checkpoint records it; resuming needs the same."""
    from lenslib import __version__

    d = cfg.dataset
    h = hashlib.sha256(f"lenslib {__version__}\nroot {d.root}\n".encode())
    for name, part in (("train", tr), ("val", va)):
        h.update(f"{name} {len(part)}\n".encode())
        h.update(pd.util.hash_pandas_object(part[[d.cutout_path_col, d.label_col]], index=False).to_numpy().tobytes())
    return h.hexdigest()


def train(cfg: FinderConfig, *, manifest: pd.DataFrame | None = None, store=None, resume: bool = True,
          progress: bool = True, log: Callable[[str], None] | None = print) -> TrainResult:
    """Train (or continue training) the config's model; checkpoints and metrics go to ``train.out_dir``.

    The training holds the lock of ``train.out_dir`` (a second training into it stops at once, naming the
    process) and resumes from ``last.pt`` only when the config and the training data are those it was made
    with (else :class:`TrainingError` says what changed)."""
    from lenslib._lock import output_lock
    from lenslib.data.cutouts import CutoutError

    with output_lock(cfg.train.out_dir, "training"):
        try:
            return _train(cfg, manifest=manifest, store=store, resume=resume, progress=progress, log=log)
        except CutoutError as exc:  # from a DataLoader worker the message carries the worker's traceback
            last = str(exc).strip().splitlines()[-1]
            last = last.split(": ", 1)[1] if last.startswith("lenslib.") and ": " in last else last
            raise TrainingError(f"{cfg.source}: a training cutout cannot be used: {last} (fix or drop it from the "
                                f"manifest; training resumes from the last finished epoch)") from None


def _train(cfg: FinderConfig, *, manifest: pd.DataFrame | None, store, resume: bool, progress: bool,
           log: Callable[[str], None] | None) -> TrainResult:
    t, d = cfg.train, cfg.dataset
    out = Path(t.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = cfg.device()
    amp = t.mixed_precision and device.type == "cuda"
    if device.type == "cuda":
        torch.backends.cudnn.deterministic = t.deterministic
        torch.backends.cudnn.benchmark = not t.deterministic
    spec = cfg.preprocess_spec()
    df = manifest if manifest is not None else load_training_manifest(cfg, store)
    tr, va = _split(df, "train", cfg), _split(df, "val", cfg)
    if len(tr) < t.batch_size:
        raise TrainingError(f"{cfg.source}: {len(tr)} training rows, fewer than one micro-batch "
                            f"(train.batch_size = {t.batch_size})")
    if va[d.label_col].nunique() < 2:
        raise TrainingError(f"{cfg.source}: the val split needs lenses and non-lenses for an AUC; it has labels "
                            f"{sorted(va[d.label_col].unique().tolist())}")
    root = d.root or None
    if store is None and root and root.startswith("s3://"):
        from lenslib.data.storage import open_store

        store, root = open_store(root), None  # cutout_path values are keys under the bucket prefix
    train_ds = FinderDataset(tr, root=root, store=store, path_col=d.cutout_path_col, label_col=d.label_col,
                             augment_cfg=cfg.augment, seed=d.seed, cache_in_memory=d.cache_in_memory)
    val_ds = FinderDataset(va, root=root, store=store, path_col=d.cutout_path_col, label_col=d.label_col,
                           cache_in_memory=d.cache_in_memory)
    injector = (OnTheFlyInjector(cfg.inject, tr["psfsize_r"].to_numpy(float) if "psfsize_r" in tr
                                 else np.full(len(tr), np.nan), device) if cfg.inject.enabled else None)

    torch.manual_seed(t.seed)
    model = build_model(t.arch, base_ch=t.base_ch, dropout=t.dropout)
    if t.init_weights:
        load_weights(model, resolve_path(t.init_weights))
    model.to(device)
    opt, sched = _optimiser(model, cfg)
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    last = out / "last.pt"
    fingerprint = data_fingerprint(tr, va, cfg)
    run = (restore(last, cfg, fingerprint, model, opt, sched, scaler, log) if resume and last.exists()
          else Progress())
    start_metrics_log(out / "metrics.jsonl", run.history)

    loss_fn = nn.BCEWithLogitsLoss()
    accum, stopped_early = t.accumulation, False
    for epoch in range(run.start, t.epochs + 1):
        tic = time.perf_counter()
        if t.freeze_backbone_epochs:
            _set_backbone_frozen(model, epoch <= t.freeze_backbone_epochs)
            if epoch == t.freeze_backbone_epochs + 1:
                opt, sched = _optimiser(model, cfg, fast_forward=epoch - 1)
        if t.warmup_epochs and epoch <= t.warmup_epochs:
            for g in opt.param_groups:
                g["lr"] = t.lr * (0.01 + 0.99 * epoch / t.warmup_epochs)
        lr = opt.param_groups[0]["lr"]
        train_ds.set_epoch(epoch - 1)
        loader = torch.utils.data.DataLoader(
            train_ds, batch_size=t.batch_size, shuffle=True, drop_last=True, num_workers=t.num_workers,
            generator=torch.Generator().manual_seed(t.seed * 100_003 + epoch), pin_memory=device.type == "cuda")
        torch.manual_seed(t.seed * 100_019 + epoch)  # dropout
        model.train()
        n_batches, total, seen = len(loader), 0.0, 0
        bar = tqdm(loader, desc=f"epoch {epoch}/{t.epochs}", unit="batch", disable=not progress, leave=False)
        for b, (x, y, idx) in enumerate(bar):
            if injector is not None:
                x, y = injector(x, y, idx, epoch)
            x = raw_robust(x.to(device, non_blocking=True), spec)
            y = y.to(device)
            with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                logits = model(x).squeeze(1)
            loss = loss_fn(logits.float(), y)
            scaler.scale(loss / accum).backward()
            if (b + 1) % accum == 0 or b == n_batches - 1:
                scaler.step(opt)
                scaler.update()
                opt.zero_grad(set_to_none=True)
            total += loss.item() * len(y)
            seen += len(y)
            bar.set_postfix(loss=f"{total / seen:.4f}")
        train_seconds = time.perf_counter() - tic
        sched.step()

        logits_v, labels_v = predict_logits(model, val_ds, spec, batch_size=t.batch_size, num_workers=t.num_workers)
        auc = float(roc_auc_score(labels_v, logits_v))
        val_loss = float(loss_fn(torch.as_tensor(logits_v), torch.as_tensor(labels_v, dtype=torch.float64)))
        improved = run.update_best(auc, epoch)
        rec = {"epoch": epoch, "lr": lr, "train_loss": total / max(seen, 1), "val_loss": val_loss, "val_auc": auc,
               "best_auc": run.best_auc, "train_images_per_s": seen / train_seconds,
               "seconds": time.perf_counter() - tic}
        run.history.append(rec)
        state = checkpoint_state(epoch, model, opt, sched, scaler, run, fingerprint, cfg, spec)
        save_epoch(out, state, rec, improved=improved, save_every=t.save_every)
        if log:
            log(f"epoch {epoch}: train loss {rec['train_loss']:.4f}, val loss {val_loss:.4f}, val AUC {auc:.4f}"
                f"{' (best)' if improved else ''}, lr {lr:.3g}, {rec['train_images_per_s']:.0f} img/s")
        if run.patience_exhausted(epoch, t.early_stopping_patience):
            stopped_early = True
            if log:
                log(f"early stop: no better val AUC for {t.early_stopping_patience} epochs")
            break
    return TrainResult(out, run.best_auc, run.best_epoch, pd.DataFrame(run.history), model, stopped_early)


"""Lens-finder checkpoints: the authors' layout (PAPER_SPEC C.4) with a few lenslib keys added.

A checkpoint is ``torch.save`` of a dict:

=================  ==========================================================================
``epoch``          1-based epoch the weights are from
``model``          the model's state dict (authors' key names)
``opt``/``sched``  AdamW and LR-scheduler state (to resume)
``best_auc``       best validation AUC so far
``dataset``        the config's dataset section (as the authors': ``preprocessing``, ``annulus_r_in`` ...)
``train``          the config's train section (``arch``, ``base_ch``, ``epochs``, ``lr`` ...)
``preprocess_spec`` ``mode``, ``crop``, ``crop_size``, ``clip_range``, ``annulus_r_in``, ``annulus_r_out``
``format``         ``"lenslib.finder/1"`` (lenslib; absent in the authors' files)
``augment``, ``inject``, ``scaler``, ``best_epoch``, ``history`` (per-epoch metrics)  — lenslib
=================  ==========================================================================

:func:`load_checkpoint` reads both (and a bare state dict when ``arch`` is given) and rebuilds the
model as the authors' loaders do: ``train.arch`` (default ``resnet18``), ``train.base_ch`` (default 16),
strict key matching.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lenslib._util import atomic_write
from lenslib.finder.models import ModelError, build_model, read_torch_file
from lenslib.finder.preprocess import PreprocessSpec

FORMAT = "lenslib.finder/1"


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """``torch.save`` through a temporary file, so a kill while writing never leaves a broken checkpoint."""
    with atomic_write(path) as tmp:
        torch.save({"format": FORMAT, **state}, tmp)
    return Path(path)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The raw checkpoint dict (tensors on the CPU); errors name the file."""
    obj = read_torch_file(path, "checkpoint")
    if not isinstance(obj, dict):
        raise ModelError(f"{path}: expected a dict (a checkpoint or a state dict), got {type(obj).__name__}")
    return obj


def spec_from_checkpoint(ckpt: dict[str, Any]) -> PreprocessSpec:
    """``preprocess_spec`` if present, else the ``dataset`` section (annulus 0/None = default 20/32)."""
    ps = ckpt.get("preprocess_spec") or {}
    ds = ckpt.get("dataset") or {}
    r_in = ps.get("annulus_r_in") or ds.get("annulus_r_in") or 20.0
    r_out = ps.get("annulus_r_out") or ds.get("annulus_r_out") or 32.0
    return PreprocessSpec(mode=ps.get("mode") or ds.get("preprocessing") or "raw_robust", annulus_r_in=float(r_in),
                          annulus_r_out=float(r_out), clip_range=float(ps.get("clip_range") or 10.0))


@dataclass
class LoadedFinder:
    model: nn.Module
    arch: str
    spec: PreprocessSpec
    epoch: int | None
    best_auc: float | None
    checkpoint: dict[str, Any]


def load_checkpoint(path: str | Path, *, arch: str | None = None, base_ch: int | None = None,
                    device: str | torch.device = "cpu") -> LoadedFinder:
    """A model ready to score (eval mode) from a lenslib or authors' checkpoint, or from a bare state dict
    (then ``arch`` is required). ``arch``/``base_ch`` override what the checkpoint says."""
    ckpt = read_checkpoint(path)
    if "model" in ckpt and isinstance(ckpt["model"], dict):
        state, train = ckpt["model"], ckpt.get("train") or {}
    elif all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        if arch is None:
            raise ModelError(f"{path}: a bare state dict says nothing of its architecture; pass arch=")
        state, train = ckpt, {}
    else:
        raise ModelError(f"{path}: neither a checkpoint (no 'model' key) nor a state dict")
    arch = arch or train.get("arch") or "resnet18"
    base_ch = base_ch or int(train.get("base_ch") or 16)
    model = build_model(arch, base_ch=base_ch, dropout=float(train.get("dropout", 0.2)))
    state = {k.removeprefix("module."): v for k, v in state.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        raise ModelError(f"{path}: weights do not fit {arch} (base_ch {base_ch}): {' '.join(lines[1:3])[:400]}") \
            from None
    model.to(device).eval()
    return LoadedFinder(model, arch, spec_from_checkpoint(ckpt), ckpt.get("epoch"), ckpt.get("best_auc"), ckpt)

"""Lens-finder training configuration: the authors' YAML format (``dataset`` / ``augment`` / ``train``
sections, PAPER_SPEC C.4) read unchanged, plus lenslib's additions, all checked before any work starts.

lenslib additions: ``dataset.root`` (where relative ``cutout_path`` values live: a local mirror or an
``s3://`` URI), ``dataset.clip_range``, ``dataset.cache_in_memory``, ``train.seed`` (model
initialisation, shuffling, dropout), ``train.deterministic`` (cuDNN picks only deterministic
kernels on CUDA, so a resumed run ends on the same weights; false lets it autotune for speed),
``train.dropout``, ``train.save_every`` and an ``inject`` section
(positives made on the fly by injecting arcs into training negatives). ``train.device: cuda`` falls
back to the CPU with a warning when no GPU is present, so the authors' files run on a laptop.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from lenslib import LenslibError, ParamError
from lenslib._util import read_yaml_mapping
from lenslib.finder.models import ARCHITECTURES
from lenslib.finder.preprocess import PreprocessSpec

SCHEDULES = ("step", "cosine", "none")


class FinderConfigError(ParamError, ValueError):
    """A training config has an unknown key, a wrong type or an impossible value."""


@dataclass
class DatasetConfig:
    parquet_path: str = ""
    manifest_path: str = ""
    mode: str = "file_manifest"
    preprocessing: str = "raw_robust"
    label_col: str = "label"
    cutout_path_col: str = "cutout_path"
    sample_weight_col: str = "sample_weight"
    seed: int = 42  # augmentation seed (PAPER_SPEC B.3)
    crop: bool = False
    crop_size: int = 0
    annulus_r_in: float = 0.0  # 0 = default (20 px)
    annulus_r_out: float = 0.0  # 0 = default (32 px)
    root: str = ""
    clip_range: float = 10.0
    cache_in_memory: bool = False


@dataclass
class AugmentConfig:
    hflip: bool = True
    vflip: bool = True
    rot90: bool = True


@dataclass
class TrainConfig:
    arch: str = "bottlenecked_resnet"
    base_ch: int = 27
    epochs: int = 160
    batch_size: int = 128  # micro-batch
    effective_batch: int = 0  # 0 = batch_size (no accumulation)
    lr: float = 5e-4
    weight_decay: float = 1e-4
    lr_schedule: str = "step"
    lr_step_epoch: int = 80
    lr_gamma: float = 0.5
    num_workers: int = 0
    device: str = "auto"
    early_stopping_patience: int = 0  # 0 = never stop early
    out_dir: str = "checkpoints"
    mixed_precision: bool = True  # used on CUDA only
    unweighted_loss: bool = True
    pretrained: bool = False
    freeze_backbone_epochs: int = 0
    warmup_epochs: int = 0
    init_weights: str = ""
    seed: int = 42
    deterministic: bool = True  # CUDA: deterministic cuDNN kernels (exact resume) over autotuned ones
    dropout: float = 0.2
    save_every: int = 10

    @property
    def accumulation(self) -> int:
        return max(1, (self.effective_batch or self.batch_size) // self.batch_size)


@dataclass
class InjectConfig:
    """On-the-fly positives: each training negative becomes a lens with probability ``fraction``."""

    enabled: bool = False
    fraction: float = 0.5
    priors: str = "params/injection_priors.yaml"
    theta_e_min: float = 0.5
    theta_e_max: float = 3.0
    source_r_mag_min: float = 0.0  # both > 0: replace the priors' source r-magnitude range
    source_r_mag_max: float = 0.0
    poisson: bool = False
    gain: float = 150.0
    sampling: str = "adaptive"
    seed: int = 1337
    default_psf_fwhm_r: float = 1.3  # used where a row's psfsize_r is missing


@dataclass
class FinderConfig:
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    inject: InjectConfig = field(default_factory=InjectConfig)
    source: str = "<defaults>"

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {s: asdict(getattr(self, s)) for s in SECTIONS}

    @property
    def manifest(self) -> str:
        return self.dataset.manifest_path or self.dataset.parquet_path

    def preprocess_spec(self) -> PreprocessSpec:
        d = self.dataset
        return PreprocessSpec(annulus_r_in=d.annulus_r_in or 20.0, annulus_r_out=d.annulus_r_out or 32.0,
                              clip_range=d.clip_range)

    def device(self) -> torch.device:
        want = self.train.device
        if want == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if want.startswith("cuda") and not torch.cuda.is_available():
            warnings.warn(f"{self.source}: train.device is {want!r} but no GPU is present; training on the CPU",
                          stacklevel=2)
            return torch.device("cpu")
        return torch.device(want)


SECTIONS = {"dataset": DatasetConfig, "augment": AugmentConfig, "train": TrainConfig, "inject": InjectConfig}


def _coerce(value: Any, kind: type | str, where: str) -> Any:
    kind = {"int": int, "float": float, "bool": bool, "str": str}.get(kind, kind) if isinstance(kind, str) else kind
    if kind is str:
        if value is None:
            return ""
        if isinstance(value, str):
            return value
    elif kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    raise FinderConfigError(f"{where}: expected {kind.__name__}, got {value!r} ({type(value).__name__})")


def _check(cfg: FinderConfig) -> None:
    t, d, i, src = cfg.train, cfg.dataset, cfg.inject, cfg.source

    def bad(key: str, why: str) -> FinderConfigError:
        return FinderConfigError(f"{src}: {key} {why}")

    if t.arch not in ARCHITECTURES:
        raise bad("train.arch", f"is {t.arch!r}; choose from {list(ARCHITECTURES)}")
    if t.lr_schedule not in SCHEDULES:
        raise bad("train.lr_schedule", f"is {t.lr_schedule!r}; choose from {list(SCHEDULES)}")
    for key in ("epochs", "batch_size", "base_ch", "save_every"):
        if getattr(t, key) < 1:
            raise bad(f"train.{key}", f"must be >= 1, got {getattr(t, key)}")
    for key in ("effective_batch", "warmup_epochs", "freeze_backbone_epochs", "early_stopping_patience",
                "num_workers", "lr_step_epoch"):
        if getattr(t, key) < 0:
            raise bad(f"train.{key}", f"must be >= 0, got {getattr(t, key)}")
    if t.effective_batch and t.effective_batch % t.batch_size:
        raise bad("train.effective_batch", f"({t.effective_batch}) must be a multiple of train.batch_size "
                                           f"({t.batch_size})")
    if not t.lr > 0 or t.weight_decay < 0 or not 0 < t.lr_gamma <= 1 or not 0 <= t.dropout < 1:
        raise bad("train.lr/weight_decay/lr_gamma/dropout", f"out of range: lr={t.lr}, weight_decay={t.weight_decay}, "
                                                            f"lr_gamma={t.lr_gamma}, dropout={t.dropout}")
    if t.pretrained:
        raise bad("train.pretrained", "is true, but lenslib never downloads weights: give a weights file as "
                                      "train.init_weights instead")
    if not (t.device in ("auto", "cpu") or t.device.startswith("cuda")):
        raise bad("train.device", f"is {t.device!r}; use auto, cpu or cuda[:N]")
    if d.mode != "file_manifest":
        raise bad("dataset.mode", f"is {d.mode!r}; only 'file_manifest' is supported")
    if d.crop:
        raise bad("dataset.crop", "is true; the paper's models use the full 101x101 stamp (crop: false)")
    try:
        cfg.preprocess_spec()
        if d.preprocessing != "raw_robust":
            PreprocessSpec(mode=d.preprocessing)
    except LenslibError as exc:
        raise FinderConfigError(f"{src}: dataset: {exc}") from None
    if (i.source_r_mag_min or i.source_r_mag_max) and not 0 < i.source_r_mag_min <= i.source_r_mag_max:
        raise bad("inject.source_r_mag_min/max", f"must satisfy 0 < min <= max, got ({i.source_r_mag_min}, "
                                                 f"{i.source_r_mag_max})")
    if not 0 <= i.fraction <= 1 or not 0 < i.theta_e_min <= i.theta_e_max or not i.gain > 0:
        raise bad("inject", f"needs 0 <= fraction <= 1, 0 < theta_e_min <= theta_e_max, gain > 0; got "
                            f"fraction={i.fraction}, theta_e=({i.theta_e_min}, {i.theta_e_max}), gain={i.gain}")


def from_mapping(doc: Mapping[str, Any], source: str = "<mapping>",
                 overrides: Mapping[str, Any] | None = None) -> FinderConfig:
    """Build and check a config from a ``{section: {key: value}}`` mapping and ``"section.key"`` overrides."""
    cfg = FinderConfig(source=source)
    items: list[tuple[str, str, Any, str]] = []
    for section, body in doc.items():
        if section not in SECTIONS:
            raise FinderConfigError(f"{source}: unknown section {section!r}; expected {list(SECTIONS)}")
        if not isinstance(body, Mapping):
            raise FinderConfigError(f"{source}: section {section!r} must be a mapping")
        items += [(section, k, v, source) for k, v in body.items()]
    for dotted, v in (overrides or {}).items():
        section, _, key = str(dotted).partition(".")
        if section not in SECTIONS or not key:
            raise FinderConfigError(f"override {dotted!r}: expected 'section.key' with section in {list(SECTIONS)}")
        items.append((section, key, v, "override"))
    for section, key, value, where in items:
        types = {f.name: f.type for f in fields(SECTIONS[section])}
        if key not in types:
            raise FinderConfigError(f"{where}: unknown key {section}.{key}; known: {sorted(types)}")
        setattr(getattr(cfg, section), key, _coerce(value, types[key], f"{where}: {section}.{key}"))
    _check(cfg)
    return cfg


def read_config(path: str | Path, overrides: Mapping[str, Any] | None = None) -> FinderConfig:
    """Read a training config YAML (the authors' format or the project's), with optional overrides."""
    return from_mapping(read_yaml_mapping(Path(path)), str(path), overrides)

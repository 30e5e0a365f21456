"""What a recompute reads, all through the data layer: the manifest, its cutouts, the finder and the priors.

The data root (``data_uri``) is a local folder or an ``s3://`` prefix with the bucket's layout
(``manifests/``, ``cutouts/``, ``checkpoints/``). A manifest's ``cutout_path`` may be relative to that root,
an ``s3://`` URI, a local file, or an absolute path on the authors' machine
(``/lambda/nfs/.../stronglens_calibration/cutouts/negatives/…``): the last is read as the key from
``cutouts/`` on under the data root, which is where the bucket keeps the same file.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from lenslib import LenslibError
from lenslib._util import resolve_path, write_bytes_atomic
from lenslib.data.cutouts import load_cutouts
from lenslib.data.manifests import read_manifest
from lenslib.data.storage import ArtefactMissing, Store, StoreUnreachable
from lenslib.finder.checkpoints import LoadedFinder, load_checkpoint
from lenslib.finder.models import ModelError
from lenslib.finder.preprocess import PreprocessSpec
from lenslib.finder.scoring import embed, score_images
from lenslib.injection import InjectionPriors

NEEDED_COLUMNS = ("galaxy_id", "cutout_path", "label", "split", "tier", "psfsize_r", "psfdepth_r")


class RecomputeError(LenslibError, ValueError):
    """An input of a recompute is missing, unreadable or unfit (naming the file or the parameter)."""


class MissingInput(RecomputeError):
    """An input file named by a parameter does not exist (``param`` says which)."""

    def __init__(self, message: str, param: str):
        super().__init__(message)
        self.param = param


def cutout_key(path: str) -> str:
    """Where a manifest's ``cutout_path`` is read from: a URI or an existing local file as is, an authors'
    absolute path as its key from ``cutouts/`` on, anything else as a key under the data root."""
    p = str(path)
    if p.startswith("s3://") or Path(p).is_file():
        return p
    if Path(p).is_absolute():
        parts = Path(p).parts
        if "cutouts" in parts:
            return "/".join(parts[parts.index("cutouts"):])
    return p


@dataclass
class Inputs:
    """The opened inputs of one recompute."""

    store: Store
    manifest: pd.DataFrame  # the manifest with a ``cutout_key`` column added
    finder: LoadedFinder
    priors: InjectionPriors
    device: torch.device
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # provenance: name → {uri, sha256, size_bytes}
    workers: int = 8

    def rows(self, split: str = "val", label: int | None = None, tier: str | None = None,
             finite_psf: bool = False) -> pd.DataFrame:
        """Manifest rows of a split, optionally one label / tier, optionally with finite PSF and depth."""
        m = self.manifest
        sel = m["split"] == split
        if label is not None:
            sel &= m["label"] == label
        if tier is not None:
            sel &= m["tier"] == tier
        if finite_psf:
            sel &= np.isfinite(m["psfsize_r"]) & np.isfinite(m["psfdepth_r"])
        return m[sel]

    def load_images(self, rows: pd.DataFrame, progress: bool = False) -> tuple[np.ndarray, dict[int, str]]:
        """Cutouts of ``rows`` as float32 (N, 3, 101, 101) nmgy (NaN pixels kept, as the paper's preprocessing
        sets them to 0) and ``{position: error}`` for the files that failed to load (their images are NaN)."""
        errors: dict[int, str] = {}
        images = load_cutouts(rows["cutout_key"].tolist(), store=self.store, workers=self.workers, nan_policy="keep",
                              progress=progress, errors=errors)
        return images, errors

    def scorer(self, clip_range: float | None = None, batch_size: int = 256) -> Scorer:
        spec = self.finder.spec if clip_range is None else replace(self.finder.spec, clip_range=float(clip_range))
        return Scorer(self.finder.model, spec, batch_size)


@dataclass
class Scorer:
    """The finder with its preprocessing: scores (float64) and embeddings of raw cutouts, on the model's device."""

    model: torch.nn.Module
    spec: PreprocessSpec
    batch_size: int = 256

    def scores(self, images: Any) -> np.ndarray:
        """p = sigmoid(logit) of raw cutouts (N, 3, H, W) nmgy (numpy or tensor, any device)."""
        return score_images(self.model, images, self.spec, batch_size=self.batch_size)

    def embeddings(self, images: Any):
        return embed(self.model, images, self.spec, blocks=True, batch_size=self.batch_size)


def _record(data: bytes, uri: str) -> tuple[bytes, dict[str, Any]]:
    return data, {"uri": uri, "sha256": hashlib.sha256(data).hexdigest(), "size_bytes": len(data)}


def _read(store: Store, ref: str, param: str) -> tuple[bytes, dict[str, Any]]:
    """Bytes of ``ref`` (a local file relative to the repository, or a key / URI under the data root) and
    its provenance record ``{uri, sha256, size_bytes}``."""
    if ref.startswith("s3://"):
        root = store.uri.rstrip("/") + "/"
        if not ref.startswith(root):
            raise RecomputeError(f"parameter {param!r}: {ref} is not under the data root {store.uri} (data_uri); "
                                 f"give a key under it or a local file")
        ref = ref[len(root):]
    else:
        local = resolve_path(ref)
        if local.is_file():
            return _record(local.read_bytes(), str(local))
    try:
        return _record(store.read_bytes(ref), store.url(ref))
    except ArtefactMissing as exc:
        raise MissingInput(f"parameter {param!r}: {exc}", param) from None
    except StoreUnreachable as exc:
        raise RecomputeError(f"parameter {param!r}: {exc}") from None


def check_manifest(df: pd.DataFrame, name: str) -> None:
    """The manifest has the columns the experiments read, and validation negatives and Tier-A lenses."""
    missing = [c for c in NEEDED_COLUMNS if c not in df.columns]
    if missing:
        raise RecomputeError(f"{name}: the manifest lacks column(s) {missing} that the experiments read "
                             f"(needed: {list(NEEDED_COLUMNS)})")
    val = df[df["split"] == "val"]
    if not (val["label"] == 0).any():
        raise RecomputeError(f"{name}: no validation negatives (split 'val', label 0): the grid, the bright-arc "
                             f"test and the FPR thresholds draw their hosts from them")
    if not ((val["label"] == 1) & (val["tier"] == "A")).any():
        raise RecomputeError(f"{name}: no validation Tier-A lenses (split 'val', label 1, tier 'A')")


def cached_checkpoint(cache_dir: Path, sha256: str) -> Path:
    """Where a recompute keeps its copy of a remote checkpoint with this SHA-256."""
    return Path(cache_dir) / "checkpoints" / sha256 / "best.pt"


def open_inputs(store: Store, *, manifest: str, checkpoint: str, priors: str, cache_dir: Path,
                device: str | None = None, workers: int = 8) -> Inputs:
    """Open the manifest, the finder checkpoint and the priors of a recompute; errors name the parameter."""
    files: dict[str, dict[str, Any]] = {}
    raw, files["manifest"] = _read(store, manifest, "manifest")
    uri = files["manifest"]["uri"]
    try:
        df = read_manifest(raw, name=uri)
    except LenslibError as exc:
        raise RecomputeError(f"parameter 'manifest': {exc}") from None
    check_manifest(df, uri)
    df = df.reset_index(drop=True)
    df["cutout_key"] = [cutout_key(p) for p in df["cutout_path"].astype(str)]

    raw, files["checkpoint"] = _read(store, checkpoint, "finder_checkpoint")
    uri = files["checkpoint"]["uri"]
    local = Path(uri)
    if not local.is_file():  # torch reads files: keep a copy of a remote checkpoint in the cache
        local = write_bytes_atomic(cached_checkpoint(cache_dir, files["checkpoint"]["sha256"]), raw)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    try:
        finder = load_checkpoint(local, device=dev)
    except ModelError as exc:
        raise RecomputeError(f"parameter 'finder_checkpoint' ({uri}): {exc}") from None

    raw, files["injection_priors"] = _read(store, priors, "injection_priors")
    uri = files["injection_priors"]["uri"]
    path = Path(uri) if Path(uri).is_file() else write_bytes_atomic(Path(cache_dir) / "injection_priors.yaml", raw)
    pri = InjectionPriors.from_yaml(path)
    return Inputs(store=store, manifest=df, finder=finder, priors=pri, device=dev, files=files, workers=workers)

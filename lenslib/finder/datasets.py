"""Training and validation samples for the lens finders: manifest rows → raw cutouts, augmented per epoch.

Augmentation follows PAPER_SPEC B.3: per sample a numpy ``default_rng`` seeded with
``(seed·1 000 003 + index + epoch·len(dataset)) & 0x7fffffff``; horizontal flip (p = ½), vertical flip
(p = ½), rotation by k·90°. The paper applies it after preprocessing; here it is applied to the raw
image and preprocessing runs afterwards on the whole batch (on the GPU when there is one). The two
orders give the same numbers: the annulus about the integer centre of an odd stamp is symmetric under
flips and quarter turns, so its median and MAD do not change.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lenslib.data.cutouts import _local_or_key, load_cutout
from lenslib.finder.config import AugmentConfig


def augment_seed(index: int, epoch: int, n: int, seed: int = 42) -> int:
    return (seed * 1_000_003 + index + epoch * n) & 0x7FFFFFFF


def augment(image: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """hflip, vflip, rot90 in the paper's order; each draw is made whether or not it is enabled."""
    if rng.random() < 0.5 and cfg.hflip:
        image = image[..., ::-1]
    if rng.random() < 0.5 and cfg.vflip:
        image = image[..., ::-1, :]
    k = int(rng.integers(0, 4))
    if cfg.rot90 and k:
        image = np.rot90(image, k, axes=(-2, -1))
    return np.ascontiguousarray(image)


class FinderDataset(torch.utils.data.Dataset):
    """Item k: (raw image (3, 101, 101) float32 with NaN → 0, label float32, k).

    ``augment_cfg=None`` means no augmentation (validation, scoring). Call :meth:`set_epoch` before each
    epoch so the augmentation changes from epoch to epoch but not from run to run."""

    def __init__(self, manifest: pd.DataFrame, *, root: str | Path | None = None, store=None,
                 path_col: str = "cutout_path", label_col: str = "label", augment_cfg: AugmentConfig | None = None,
                 seed: int = 42, cache_in_memory: bool = False):
        self.paths = manifest[path_col].astype(str).tolist()
        self.labels = manifest[label_col].to_numpy(dtype=np.float32)
        self.root, self.store, self.augment_cfg, self.seed = root, store, augment_cfg, seed
        self.epoch = 0
        self._cache: dict[int, np.ndarray] | None = {} if cache_in_memory else None

    def __len__(self) -> int:
        return len(self.paths)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def raw(self, k: int) -> np.ndarray:
        if self._cache is not None and k in self._cache:
            return self._cache[k]
        img = load_cutout(_local_or_key(self.paths[k], self.root, self.store), store=self.store,
                          nan_policy="zero", meta=False).image
        if self._cache is not None:
            self._cache[k] = img
        return img

    def __getitem__(self, k: int):
        img = self.raw(k)
        if self.augment_cfg is not None:
            rng = np.random.default_rng(augment_seed(k, self.epoch, len(self), self.seed))
            img = augment(img, rng, self.augment_cfg)
        return torch.from_numpy(np.array(img, dtype=np.float32)), torch.tensor(self.labels[k]), k

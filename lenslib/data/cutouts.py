"""DR10 cutout files (``<galaxy_id>.npz``): read, check, write.

On disk (PAPER_SPEC A.2): key ``cutout`` float32 (101, 101, 3) HWC, bands g, r, z, nanomaggies per
pixel, plus 0-d ``meta_*`` keys. Some producers store (3, 101, 101) CHW; both load. In memory lenslib
always uses CHW.

NaN policy (``nan_policy``): ``"keep"`` (default, as the paper: NaNs stay in the image, are counted
in :attr:`Cutout.nan_count`, and preprocessing sets them to 0), ``"zero"`` (replaced by 0 nmgy on
load; the count is still reported), ``"error"`` (a file with any NaN is refused, naming the file).
Whatever the policy, a cutout with more than ``max_nan_fraction`` (default :data:`MAX_NAN_FRACTION`, half)
of its pixels NaN is refused as :class:`CutoutError` (an all-NaN stamp is not a galaxy to score); in
scoring and the experiments such a file is recorded as failed, like an unreadable one.
"""

from __future__ import annotations

import functools
import io
import sys
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lenslib import LenslibError
from lenslib._util import write_npz
from lenslib.survey import BANDS, STAMP, ImageShapeError, to_chw

NAN_POLICIES = ("keep", "zero", "error")
#: a cutout with more NaN pixels than this fraction (all bands together) is refused, whatever the NaN policy
MAX_NAN_FRACTION = 0.5


class CutoutError(LenslibError, ValueError):
    """A cutout file is unreadable, incomplete or of the wrong shape."""


@dataclass
class Cutout:
    """One cutout: ``image`` float32 (3, H, W) g, r, z in nanomaggies; ``meta`` without the ``meta_`` prefix."""

    image: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    nan_count: dict[str, int] = field(default_factory=dict)

    @property
    def hwc(self) -> np.ndarray:
        return self.image.transpose(1, 2, 0)


def _chw(arr: np.ndarray, name: str, size: int | None) -> np.ndarray:
    try:
        return to_chw(arr, name, size)
    except ImageShapeError as exc:
        raise CutoutError(str(exc)) from None


def _scalar(v: np.ndarray) -> Any:
    return v.item() if v.ndim == 0 else v


def parse_cutout(data: bytes, name: str, *, nan_policy: str = "keep", size: int | None = STAMP,
                 meta: bool = True, max_nan_fraction: float = MAX_NAN_FRACTION) -> Cutout:
    """Decode the bytes of one ``.npz`` cutout; ``name`` is used in every error message.

    ``meta=False`` skips the ``meta_*`` fields (a real DR10 file has 39, and decoding them takes
    two thirds of the time): for batch loaders that only need the image. Any failure to decode (a corrupt
    zip, a damaged array header, a bare ``.npy`` under an ``.npz`` name, a pickle) is a :class:`CutoutError`."""
    if nan_policy not in NAN_POLICIES:
        raise CutoutError(f"nan_policy must be one of {NAN_POLICIES}, got {nan_policy!r}")
    if not data:
        raise CutoutError(f"{name}: empty file (0 bytes)")
    try:
        loaded = np.load(io.BytesIO(data), allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise CutoutError(f"{name}: a bare .npy array ({getattr(loaded, 'shape', '?')}), not an .npz cutout "
                              f"with a 'cutout' array")
        with loaded as z:
            if "cutout" not in z.files:
                raise CutoutError(f"{name}: no 'cutout' array (keys: {sorted(z.files)[:8]})")
            raw = z["cutout"]
            fields = {k[5:]: _scalar(z[k]) for k in z.files if k.startswith("meta_")} if meta else {}
    except CutoutError:
        raise
    except (zipfile.BadZipFile, EOFError) as exc:
        raise CutoutError(f"{name}: not a readable .npz cutout (corrupt or truncated: {exc})") from None
    except Exception as exc:  # a damaged member can fail in numpy's header parser with almost any error
        raise CutoutError(f"{name}: not a readable .npz cutout (corrupt: {type(exc).__name__}: {exc})") from None
    if raw.dtype.kind not in "fiu":
        raise CutoutError(f"{name}: 'cutout' has dtype {raw.dtype}; expected float nanomaggies")
    image = np.ascontiguousarray(_chw(raw, name, size), dtype=np.float32)
    nan = np.isnan(image)
    counts = {b: int(nan[i].sum()) for i, b in enumerate(BANDS)}
    if nan.size and nan.mean() > max_nan_fraction:
        raise CutoutError(f"{name}: {nan.mean():.0%} of its pixels are NaN {counts} (more than the "
                          f"{max_nan_fraction:.0%} allowed: max_nan_fraction); not scored")
    if nan.any():
        if nan_policy == "error":
            raise CutoutError(f"{name}: {sum(counts.values())} NaN pixels {counts} (nan_policy='error')")
        if nan_policy == "zero":
            image = np.where(nan, np.float32(0), image)
    if np.isinf(image).any():
        raise CutoutError(f"{name}: {int(np.isinf(image).sum())} infinite pixels")
    return Cutout(image=image, meta=fields, source=name, nan_count=counts)


def load_cutout(path_or_uri: str | Path, *, store=None, nan_policy: str = "keep", size: int | None = STAMP,
                meta: bool = True, **store_options: Any) -> Cutout:
    """Load one cutout from a local path, an ``s3://`` URI, or a key of ``store``.

    ``store_options`` (endpoint_url, region, anonymous, ...) go to :func:`lenslib.data.storage.open_store`
    for an ``s3://`` URI."""
    name = str(path_or_uri)
    if store is not None:
        data = store.read_bytes(name)
        name = store.url(name)
    elif name.startswith("s3://"):
        from lenslib.data.storage import open_store

        parent, _, key = name.rpartition("/")
        data = open_store(parent, **store_options).read_bytes(key)
    else:
        try:
            data = Path(name).read_bytes()
        except FileNotFoundError:
            raise CutoutError(f"{name}: no such cutout file") from None
        except IsADirectoryError:
            raise CutoutError(f"{name}: is a directory, not a cutout file") from None
        except OSError as exc:
            raise CutoutError(f"{name}: cannot be read ({exc.strerror or exc})") from None
    return parse_cutout(data, name, nan_policy=nan_policy, size=size, meta=meta)


def save_cutout(path: str | Path, image: np.ndarray, meta: Mapping[str, Any] | None = None, *,
                layout: str = "hwc") -> Path:
    """Write a cutout in the paper's format (as ``np.savez_compressed``, key ``cutout``, 0-d ``meta_*`` keys; fixed zip
    timestamps, written atomically).

    ``image`` may be HWC or CHW; ``layout`` chooses what is stored (``"hwc"`` as the real files)."""
    if layout not in ("hwc", "chw"):
        raise CutoutError(f"layout must be 'hwc' or 'chw', got {layout!r}")
    chw = _chw(np.asarray(image, dtype=np.float32), str(path), size=None)
    arrays = {"cutout": chw.transpose(1, 2, 0) if layout == "hwc" else chw}
    for k, v in (meta or {}).items():
        if isinstance(v, (dict, list, tuple)) or v is None:
            raise CutoutError(f"{path}: meta field {k!r} must be a scalar (got {type(v).__name__})")
        arrays[f"meta_{k}"] = np.asarray(v)
    return write_npz(path, arrays, compress=True)  # atomic, and the same stamp always gives the same bytes


def _local_or_key(p: str, root: str | Path | None, store) -> str:
    """A relative path is taken under ``root`` (a local mirror) unless a store resolves keys itself."""
    if root is not None and store is None and not p.startswith("s3://") and not Path(p).is_absolute():
        return str(Path(root) / p)
    return p


def _failure_message(path: Any, exc: BaseException) -> str:
    return str(exc) if isinstance(exc, LenslibError) else f"{path}: {type(exc).__name__}: {exc}"


def load_cutouts(paths: list[str], *, store=None, root: str | Path | None = None, workers: int = 8,
                 processes: int | None = None, nan_policy: str = "zero", progress: bool = False,
                 errors: dict[int, str] | None = None, **store_options: Any) -> np.ndarray:
    """Load many cutouts in parallel into one float32 (N, 3, 101, 101) array (order kept).

    Relative paths are taken under ``root`` (a local mirror) or as keys of ``store``. The first bad
    file raises :class:`CutoutError`, unless ``errors`` (a dict) is given: then each failure of one file
    (missing, unreadable, corrupt, wrong shape, mostly NaN: any exception but an unreachable store) is
    recorded there as ``{index: message}``, its image is all NaN, and the others still load.

    Local files (paths, or keys of a local store) are decoded on ``processes`` worker processes
    (:mod:`lenslib.data.processes`; ``None``: one per core but one, at least 2, for 512 files or more; 0: none);
    anything else, and everything when processes cannot be used, on ``workers`` threads."""
    from concurrent.futures import ThreadPoolExecutor

    from lenslib._tqdm import tqdm
    from lenslib.data import processes as procs
    from lenslib.data.storage import StoreUnreachable

    keys = [_local_or_key(str(p), root, store) for p in paths]
    n_proc = procs.auto_processes(len(keys)) if processes is None else processes
    local = store is None or procs.local_store_root(store) is not None
    if n_proc > 0 and local and not store_options and not any(k.startswith("s3://") for k in keys):
        try:
            load = functools.partial(load_cutout, nan_policy=nan_policy, meta=False)
            images, failures = procs.load_on_processes(keys, n_proc, load, store=store, progress=progress)
        except procs.ProcessesUnavailable as exc:
            print(f"load_cutouts: reading on threads ({exc})", file=sys.stderr)
        else:
            for k, exc in failures:
                if errors is None:
                    raise exc
                errors[k] = _failure_message(paths[k], exc)
            return images

    def one(k: int) -> np.ndarray:
        try:
            return load_cutout(keys[k], store=store, nan_policy=nan_policy, meta=False, **store_options).image
        except StoreUnreachable:
            raise  # the store is down: not a fault of this file, and every other read would fail too
        except Exception as exc:  # noqa: BLE001 - any failure of one file is recorded, never fatal
            if errors is None:
                raise
            errors[k] = _failure_message(paths[k], exc)
            return np.full((3, STAMP, STAMP), np.nan, np.float32)

    out = np.empty((len(paths), 3, STAMP, STAMP), np.float32)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for k, img in enumerate(tqdm(pool.map(one, range(len(paths))), total=len(paths), desc="cutouts", unit="file",
                                     disable=not progress)):
            out[k] = img
    return out


class CutoutDataset:
    """A torch ``Dataset`` over a manifest: item k is (image (3, 101, 101) float32 tensor, label float32).

    ``nan_policy`` defaults to "zero" (what preprocessing does anyway); ``transform`` maps the CHW
    numpy image before it becomes a tensor (e.g. :func:`lenslib.finder.preprocess.raw_robust`)."""

    def __init__(self, manifest, *, store=None, root: str | Path | None = None, nan_policy: str = "zero",
                 transform=None, path_column: str = "cutout_path"):
        if path_column not in manifest.columns:
            raise CutoutError(f"manifest has no column {path_column!r}")
        self.paths = manifest[path_column].astype(str).tolist()
        self.labels = manifest["label"].to_numpy(dtype=np.float32) if "label" in manifest else np.zeros(len(manifest),
                                                                                                         np.float32)
        self.store, self.root, self.nan_policy, self.transform = store, root, nan_policy, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, k: int):
        import torch

        p = _local_or_key(self.paths[k], self.root, self.store)
        img = load_cutout(p, store=self.store, nan_policy=self.nan_policy, meta=False).image
        if self.transform is not None:
            img = self.transform(img)
        return torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32)), torch.tensor(self.labels[k])

"""Cutouts of many positions from the DR10 coadd tiles, one task per brick (locally or on Dask).

:func:`extract_cutouts` groups the positions by brick (the ``brick`` column, or the brick list's box that
contains each position) and runs one task per brick on an executor (:mod:`lenslib.parallel`). A task reads
the brick's tiles once (:class:`lenslib.data.coadd.BrickTiles`), writes each stamp as a cutout file in
lenslib's format (``cutouts/<brick>/<id>.npz``: key ``cutout`` float32 (101, 101, 3) HWC, 0-d ``meta_*``
keys; see :mod:`lenslib.data.cutouts`) and then the brick's shard ``shards/<brick>.parquet``, both atomically.
A rerun skips the bricks whose shard holds the same positions. The driver joins the shards, in the order of
the positions, into ``extracted.parquet``. Columns: the id, ``ra``, ``dec``, ``brick``, ``path`` (of the
cutout, relative to ``out_dir``), the flags ``missing_bands`` ("g,z" ...), ``edge``, ``masked_g/_r/_z``
(masked pixels per band present), ``centre_x``/``centre_y`` (pixel of the stamp centre in the r tile) and
``error``: a position that gives no cutout (in no brick, outside its brick, a brick without tiles) has its
message there and nulls elsewhere; it is never raised.

Cutout files are written with fixed zip timestamps, so two runs (local or Dask) give the same bytes. The
tiles are read from a :class:`~lenslib.data.storage.Store` (rooted at the coadd root), which a Dask worker
reopens from its URI and options (a store does not pickle), or from any ``read(key) -> bytes`` function.
"""

from __future__ import annotations

import pickle
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from lenslib import LenslibError
from lenslib._util import atomic_write
from lenslib.data.coadd import BrickTiles, CoaddCutout, CoaddError, brick_for, read_bricks
from lenslib.data.cutouts import save_cutout
from lenslib.parallel import Executor, LocalExecutor
from lenslib.survey import BANDS, PIXSCALE, STAMP

RESULT = "extracted.parquet"
BRICK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


class ExtractError(LenslibError, ValueError):
    """The positions, the brick list or the tile source cannot be used for an extraction."""


# --- where the tiles are read ----------------------------------------------------------------

@lru_cache(maxsize=8)
def _reopen(uri: str, options: tuple[tuple[str, Any], ...]):
    """The store at ``uri``, opened once per process (each Dask worker opens its own)."""
    from lenslib.data.storage import open_store

    return open_store(uri, **dict(options))


def _store_options(store) -> tuple[str, dict[str, Any]]:
    """(URI, :func:`open_store` options) that reopen ``store``."""
    from lenslib.data.storage import CachedStore, S3Store

    options: dict[str, Any] = {}
    inner = store
    if isinstance(store, CachedStore):
        options["cache_dir"] = str(Path(store.cache_dir).resolve())
        inner = store.inner
    if isinstance(inner, S3Store):
        options.update(region=inner.region, endpoint_url=inner.endpoint_url, anonymous=inner.anonymous,
                       max_attempts=inner.max_attempts, connect_timeout=inner.connect_timeout)
    return store.uri, options


class TileSource:
    """Reads the coadd tiles: a store (reopened from its URI and options after pickling) or a read function."""

    def __init__(self, read_or_store: Any):
        from lenslib.data.storage import Store

        self._store, self._read, self.uri, self.options = None, None, None, ()
        if isinstance(read_or_store, (str, Path)):
            self.uri = str(read_or_store)
        elif isinstance(read_or_store, Store):
            self._store = read_or_store
            self.uri, options = _store_options(read_or_store)
            self.options = tuple(sorted(options.items()))
        elif callable(read_or_store):
            self._read = read_or_store
        else:
            raise ExtractError(f"parameter 'read_or_store' must be a Store, a store URI or a read(key) -> bytes "
                               f"function, got {type(read_or_store).__name__}")

    def open(self):
        """The store (reopened from its URI and options after pickling); None for a read function."""
        if self._read is None and self._store is None:
            self._store = _reopen(self.uri, self.options)
        return self._store

    def read(self, key: str) -> bytes:
        if self._read is not None:
            return self._read(key)
        return self.open().read_bytes(key)

    def __str__(self) -> str:
        return self.uri or getattr(self._read, "__qualname__", repr(self._read))

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_store": None}  # a store holds a lock (and boto3 a client): reopened instead


@dataclass
class ExtractContext:
    """What every brick task needs: the tile source, the output folder, the id column and the stamp size."""

    source: TileSource
    out_dir: Path
    id_column: str
    id_type: pa.DataType
    size: int = STAMP

    @property
    def schema(self) -> pa.Schema:
        return schema(self.id_column, self.id_type, self.size)


def schema(id_column: str, id_type: pa.DataType, size: int = STAMP) -> pa.Schema:
    """Columns of the shards and of ``extracted.parquet`` (the stamp size in its metadata)."""
    return pa.schema([(id_column, id_type), ("ra", pa.float64()), ("dec", pa.float64()), ("brick", pa.string()),
                      ("path", pa.string()), ("missing_bands", pa.string()), ("edge", pa.bool_()),
                      *[(f"masked_{b}", pa.int32()) for b in BANDS], ("centre_x", pa.int32()),
                      ("centre_y", pa.int32()), ("error", pa.string())], metadata={"lenslib_stamp_size": str(size)})


# --- cutout files ----------------------------------------------------------------------------

def cutout_meta(ident: Any, ra: float, dec: float, cut: CoaddCutout) -> dict[str, Any]:
    """The ``meta_*`` fields of an extracted cutout (PAPER_SPEC A.2's provenance and NaN counts)."""
    nan = np.isnan(cut.image)
    meta: dict[str, Any] = {"galaxy_id": str(ident), "ra": float(ra), "dec": float(dec), "size": cut.image.shape[-1],
                            "pixel_scale": PIXSCALE, "layer": "ls-dr10", "bands_requested": "".join(BANDS),
                            "brickname": str(cut.flags["brick"])}
    for b, band in enumerate(BANDS):
        meta[f"nan_count_{band}"] = int(nan[b].sum())
    meta["nan_frac"] = float(nan.mean())
    for b, band in enumerate(BANDS):
        meta[f"has_{band}"] = bool((~nan[b]).any())
    return meta


# --- one brick -------------------------------------------------------------------------------

def _row(ident: Any, ra: float, dec: float, brick: str | None, path: str | None = None,
         cut: CoaddCutout | None = None, error: str | None = None) -> dict[str, Any]:
    flags = cut.flags if cut is not None else {}
    masked = flags.get("masked_pixels", {})
    centre = flags.get("centre_pixel", (None, None)) if cut is not None else (None, None)
    return {"id": ident, "ra": ra, "dec": dec, "brick": brick if isinstance(brick, str) else None, "path": path,
            "missing_bands": ",".join(flags["missing_bands"]) if cut is not None else None,
            "edge": bool(flags["edge"]) if cut is not None else None,
            **{f"masked_{b}": masked.get(b) for b in BANDS}, "centre_x": centre[0], "centre_y": centre[1],
            "error": error}


def _table(rows: list[dict[str, Any]], sch: pa.Schema) -> pa.Table:
    id_column = sch.names[0]
    cols = {f.name: [r["id" if f.name == id_column else f.name] for r in rows] for f in sch}
    return pa.table({name: pa.array(vals, type=sch.field(name).type) for name, vals in cols.items()}, schema=sch)


def shard_path(out_dir: Path, brick: str) -> Path:
    return Path(out_dir) / "shards" / f"{brick}.parquet"


def _shard_done(path: Path, objects: pd.DataFrame, id_column: str, sch: pa.Schema) -> bool:
    """Whether the shard at ``path`` exists and holds exactly these objects (ids and positions, in order)."""
    if not path.is_file():
        return False
    try:
        t = pq.read_table(path)
    except (OSError, pa.ArrowException):
        return False
    return (t.schema.equals(sch, check_metadata=True) and t.column(id_column).to_pylist() == objects["id"].tolist()
            and t.column("ra").to_pylist() == objects["ra"].tolist()
            and t.column("dec").to_pylist() == objects["dec"].tolist())


def extract_brick(ctx: ExtractContext, item: tuple[str, pd.DataFrame]) -> str:
    """The task of one brick (``(brick, its objects: id, ra, dec)``): read the tiles once, write every stamp
    and then the shard, unless the shard holds these objects already. Returns the brick name."""
    brick, objects = item
    path = shard_path(ctx.out_dir, brick)
    if _shard_done(path, objects, ctx.id_column, ctx.schema):
        return brick
    tiles = BrickTiles(ctx.source.read, brick)
    try:
        no_tiles = None if tiles.has_image() else (
            f"brick {brick}: no image tile in any band under {ctx.source} (an unknown brick, or its tiles "
            f"{brick}/legacysurvey-{brick}-image-<band>.fits[.fz] are not there)")
    except CoaddError:  # an unreadable tile: each stamp records its message below
        no_tiles = None
    rows = []
    for ident, ra, dec in zip(objects["id"], objects["ra"], objects["dec"], strict=True):
        if no_tiles:
            rows.append(_row(ident, ra, dec, brick, error=no_tiles))
            continue
        try:
            cut = tiles.cutout(ra, dec, ctx.size)
        except CoaddError as exc:
            rows.append(_row(ident, ra, dec, brick, error=str(exc)))
            continue
        rel = f"cutouts/{brick}/{ident}.npz"
        save_cutout(ctx.out_dir / rel, cut.image, cutout_meta(ident, ra, dec, cut))
        rows.append(_row(ident, ra, dec, brick, rel, cut))
    with atomic_write(path) as tmp:
        pq.write_table(_table(rows, ctx.schema), tmp)
    return brick


# --- the driver ------------------------------------------------------------------------------

def _id_type(ids: pd.Series) -> tuple[pa.DataType, list[Any]]:
    if pd.api.types.is_integer_dtype(ids.dtype):
        return pa.int64(), [int(v) for v in ids]
    return pa.string(), [str(v) for v in ids]


def _check_ids(ids: list[Any], id_column: str) -> None:
    seen: set[Any] = set()
    for k, v in enumerate(ids):
        s = str(v)
        if not s or s in (".", "..") or any(c in s for c in "/\\\0") or s in ("nan", "None", "<NA>"):
            raise ExtractError(f"parameter 'positions': row {k} has id {v!r} in column {id_column!r}, which "
                               f"cannot name a cutout file")
        if v in seen:
            raise ExtractError(f"parameter 'positions': id {v!r} (column {id_column!r}) appears more than once")
        seen.add(v)


def _bricks_of(positions: pd.DataFrame, bricks: pd.DataFrame | None) -> tuple[list[str | None], list[str | None]]:
    """The brick of every position and, where none can be given, why."""
    given = positions["brick"] if "brick" in positions else pd.Series([None] * len(positions), dtype=object)
    out, errors = [], []
    for k, (b, ra, dec) in enumerate(zip(given, positions["ra"], positions["dec"], strict=True)):
        name = None if pd.isna(b) or str(b).strip() == "" else str(b)
        if name is None and bricks is None:
            raise ExtractError(f"parameter 'positions': row {k} has no brick and parameter 'bricks' (the brick "
                               f"list that finds it) is not given")
        if not (np.isfinite(ra) and np.isfinite(dec)):
            out.append(name)
            errors.append(f"position ra={ra}, dec={dec} is not finite")
            continue
        if name is not None:
            name = name.strip()
            out.append(name)
            errors.append(None if BRICK_NAME.match(name) else f"unknown brick {name!r}: not a brick name")
            continue
        try:
            out.append(brick_for(bricks, float(ra), float(dec)))
            errors.append(None)
        except CoaddError as exc:
            out.append(None)
            errors.append(f"{exc} (in the brick list of {len(bricks)} bricks)")
    return out, errors


def _read_positions(positions: pd.DataFrame, id_column: str) -> pd.DataFrame:
    if not isinstance(positions, pd.DataFrame):
        raise ExtractError(f"parameter 'positions' must be a DataFrame, got {type(positions).__name__}")
    if id_column in schema("id", pa.string()).names[1:]:
        raise ExtractError(f"parameter 'id_column': {id_column!r} is one of the output columns; rename it")
    missing = [c for c in (id_column, "ra", "dec") if c not in positions.columns]
    if missing:
        raise ExtractError(f"parameter 'positions' lacks columns {missing} (has {list(positions.columns)[:10]})")
    try:
        ra = positions["ra"].to_numpy(dtype=np.float64)
        dec = positions["dec"].to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ExtractError(f"parameter 'positions': columns ra/dec must be numbers in degrees ({exc})") from None
    out = pd.DataFrame({"ra": ra, "dec": dec})
    if "brick" in positions:
        out["brick"] = positions["brick"].to_numpy(dtype=object)
    return out


def extract_cutouts(read_or_store: Any, positions: pd.DataFrame, out_dir: str | Path, *,
                    bricks: pd.DataFrame | str | Path | None = None, id_column: str = "id", size: int = STAMP,
                    executor: Executor | None = None, progress: bool = True) -> pd.DataFrame:
    """Cut a stamp at every position from the coadd tiles, one task per brick; returns ``extracted.parquet``.

    ``read_or_store``: a :class:`~lenslib.data.storage.Store` or a store URI rooted at the coadd root, or a
    ``read(key) -> bytes`` function (on Dask it must pickle). ``positions``: ``id_column``, ``ra``, ``dec``
    (degrees) and optionally ``brick``; ``bricks`` (the survey-bricks table or its FITS file) finds the brick
    of a position without one. ``size``: stamp side in pixels. ``executor`` (default: this process) runs the
    brick tasks. See the module docstring for the files and columns; the rows follow ``positions``."""
    if not isinstance(size, (int, np.integer)) or size < 1:
        raise ExtractError(f"parameter 'size' must be a whole number of pixels ≥ 1, got {size!r}")
    out_dir = Path(out_dir)
    source = TileSource(read_or_store)
    executor = executor or LocalExecutor()
    if isinstance(bricks, (str, Path)):
        bricks = read_bricks(bricks)
    pos = _read_positions(positions, id_column)
    id_type, ids = _id_type(positions[id_column])
    _check_ids(ids, id_column)
    pos.insert(0, "id", pd.Series(ids, dtype=object))
    pos["brick"], pre_errors = _bricks_of(pos, bricks)
    ctx = ExtractContext(source, out_dir, id_column, id_type, size)
    ok = pd.Series([e is None for e in pre_errors])
    groups = {b: g[["id", "ra", "dec"]].reset_index(drop=True) for b, g in pos[ok.to_numpy()].groupby("brick")}
    todo = [(b, g) for b, g in groups.items() if not _shard_done(shard_path(out_dir, b), g, id_column, ctx.schema)]
    if todo:
        if executor.kind != "local":
            _check_picklable(ctx)
        executor.map(extract_brick, ctx, todo, desc="extract bricks", progress=progress)
    table = _assemble(pos, pre_errors, list(groups), ctx)
    with atomic_write(out_dir / RESULT) as tmp:
        pq.write_table(table, tmp)
    return table.to_pandas(types_mapper={pa.int32(): pd.Int32Dtype(), pa.bool_(): pd.BooleanDtype()}.get)


def _assemble(pos: pd.DataFrame, pre_errors: list[str | None], names: list[str], ctx: ExtractContext) -> pa.Table:
    """The shards and the positions that had no brick, in the order of ``pos``."""
    parts = [pq.read_table(shard_path(ctx.out_dir, b), schema=ctx.schema) for b in names]
    failed = [_row(r.id, r.ra, r.dec, r.brick, error=e) for r, e in zip(pos.itertuples(), pre_errors, strict=True)
              if e is not None]
    parts.append(_table(failed, ctx.schema))
    table = pa.concat_tables(parts)
    where = {v: k for k, v in enumerate(table.column(ctx.id_column).to_pylist())}
    return table.take(pa.array([where[v] for v in pos["id"]], type=pa.int64()))


def _check_picklable(ctx: ExtractContext) -> None:
    try:
        import cloudpickle
    except ImportError:
        cloudpickle = pickle
    try:
        cloudpickle.dumps(ctx)
    except Exception as exc:  # noqa: BLE001 - whatever stops the context reaching the workers
        raise ExtractError(f"parameter 'read_or_store': {ctx.source} cannot be sent to Dask workers "
                           f"({type(exc).__name__}: {exc}); pass the Store or its URI instead") from None

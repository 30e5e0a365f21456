"""Training manifests (parquet, PAPER_SPEC A.6) and their split summary JSON.

One row per cutout. Required columns are the ones training and the experiments read; the others
(pool, confuser category, depth fields ...) are kept when present.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from lenslib import LenslibError
from lenslib._util import atomic_write

SCHEMA = pa.schema([
    ("galaxy_id", pa.string()), ("cutout_path", pa.string()), ("ra", pa.float64()), ("dec", pa.float64()),
    ("type_bin", pa.string()), ("nobs_z_bin", pa.string()), ("split", pa.string()), ("pool", pa.string()),
    ("confuser_category", pa.string()), ("psfsize_r", pa.float64()), ("psfdepth_r", pa.float64()),
    ("ebv", pa.float64()), ("healpix_128", pa.float64()), ("label", pa.int64()), ("tier", pa.string()),
    ("sample_weight", pa.float64()),
])
REQUIRED = ("cutout_path", "label", "split")
SPLITS = ("train", "val", "test")


class ManifestError(LenslibError, ValueError):
    """A manifest is unreadable or breaks its schema."""


def validate_manifest(df: pd.DataFrame, name: str = "manifest") -> pd.DataFrame:
    """Check the columns training needs: present, labels 0/1, known splits; and that no object (``galaxy_id``,
    ``cutout_path``) appears twice, in particular not in two splits (an error naming the object)."""
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ManifestError(f"{name}: missing column(s) {missing}; has {list(df.columns)[:12]}")
    if df["cutout_path"].isna().any():
        raise ManifestError(f"{name}: {int(df['cutout_path'].isna().sum())} rows without a cutout_path")
    bad_label = ~df["label"].isin([0, 1])
    if bad_label.any():
        raise ManifestError(f"{name}: label must be 0 or 1; row {int(bad_label.to_numpy().nonzero()[0][0])} "
                            f"has {df['label'][bad_label].iloc[0]!r}")
    bad_split = ~df["split"].isin(SPLITS)
    if bad_split.any():
        raise ManifestError(f"{name}: unknown split(s) {sorted(set(df['split'][bad_split].astype(str)))}; "
                            f"expected {list(SPLITS)}")
    for col in ("galaxy_id", "cutout_path"):
        if col not in df.columns:
            continue
        dup = df[col].duplicated(keep=False) & df[col].notna()
        if dup.any():
            splits = df.loc[dup].groupby(col)["split"].nunique()
            leak = splits[splits > 1]
            if len(leak):
                raise ManifestError(f"{name}: {len(leak)} {col}(s) appear in more than one split (e.g. "
                                    f"{leak.index[0]!r} in {sorted(df.loc[df[col] == leak.index[0], 'split'])}): the "
                                    f"validation would score objects the finder was trained on")
            raise ManifestError(f"{name}: {int(dup.sum())} rows share a {col} (e.g. {df.loc[dup, col].iloc[0]!r} "
                                f"{int((df[col] == df.loc[dup, col].iloc[0]).sum())} times); each object must appear "
                                f"once")
    return df


def read_manifest(source: str | Path | bytes, name: str | None = None,
                  columns: list[str] | None = None) -> pd.DataFrame:
    """Read a manifest parquet (a path or its bytes, e.g. from a Store) and validate it."""
    label = name or str(source if not isinstance(source, bytes) else "manifest")
    try:
        table = pq.read_table(io.BytesIO(source) if isinstance(source, bytes) else source, columns=columns)
    except FileNotFoundError:
        raise ManifestError(f"{label}: no such manifest file") from None
    except (pa.ArrowInvalid, OSError) as exc:
        raise ManifestError(f"{label}: not a readable parquet manifest ({exc})") from None
    df = table.to_pandas()
    return validate_manifest(df, label) if columns is None or set(REQUIRED) <= set(columns) else df


def write_manifest(df: pd.DataFrame, path: str | Path) -> Path:
    """Write a manifest parquet; known columns get the schema's types (written via a temporary file)."""
    validate_manifest(df, str(path))
    fields = [SCHEMA.field(c) if c in SCHEMA.names else None for c in df.columns]
    table = pa.Table.from_pandas(df.reset_index(drop=True), preserve_index=False)
    for i, f in enumerate(fields):
        if f is not None and table.schema.field(i).type != f.type:
            table = table.set_column(i, f, table.column(i).cast(f.type))
    with atomic_write(path) as tmp:
        pq.write_table(table, tmp)
    return Path(path)


def composition(df: pd.DataFrame) -> pd.DataFrame:
    """Table 1 (tab:dataset): counts of Tier-A, Tier-B, all positives, negatives and all rows per split."""
    rows = {}
    for split in [s for s in SPLITS if (df["split"] == s).any()]:
        d = df[df["split"] == split]
        pos = d[d["label"] == 1]
        rows[split] = {"tier_a": int((pos.get("tier") == "A").sum()), "tier_b": int((pos.get("tier") == "B").sum()),
                       "positives": len(pos), "negatives": int((d["label"] == 0).sum()), "total": len(d)}
    out = pd.DataFrame(rows)
    out["all"] = out.sum(axis=1)
    return out


def split_summary(df: pd.DataFrame, **settings: Any) -> dict[str, Any]:
    """The JSON written beside a manifest: composition per split plus the split settings used."""
    return {"n_rows": len(df), "composition": composition(df).to_dict(), "split_settings": settings}


def write_split_summary(df: pd.DataFrame, path: str | Path, **settings: Any) -> Path:
    path = Path(path)
    path.write_text(json.dumps(split_summary(df, **settings), indent=1))
    return path


def read_split_summary(source: str | Path | bytes, name: str | None = None) -> dict[str, Any]:
    label = name or str(source if not isinstance(source, bytes) else "split summary")
    try:
        text = source.decode() if isinstance(source, bytes) else Path(source).read_text()
        doc = json.loads(text)
    except FileNotFoundError:
        raise ManifestError(f"{label}: no such split summary") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{label}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or "composition" not in doc:
        raise ManifestError(f"{label}: no 'composition' in the split summary")
    return doc

"""Positive (lens) catalogues → one positives table with tiers, deduplicated by position.

- ``desi_candidates.csv`` (name, ra, dec, zlens, type, grading, ref): the paper's positives.
- ``lenscat_catalog.csv`` (name, "RA [deg]", "DEC [deg]", zlens, type, grading, ref): an external
  compilation, used for reference and for excluding negatives near known lenses.

Tier rule (as the paper's code): grading "confident" → A, "probable" → B.
Duplicates: entries within ``match_arcsec`` of an earlier entry (catalogues in the order given, and
within a catalogue the higher tier first) are dropped; the kept row lists every catalogue it was in.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
from astropy import units as u
from astropy.coordinates import SkyCoord

from lenslib import LenslibError

TIERS = {"confident": "A", "probable": "B"}
_COLUMNS = {"desi": {"name": "name", "ra": "ra", "dec": "dec"},
            "lenscat": {"name": "name", "RA [deg]": "ra", "DEC [deg]": "dec"}}
POSITIVE_COLUMNS = ["name", "ra", "dec", "zlens", "type", "grading", "tier", "ref", "catalog", "also_in"]


class CatalogueError(LenslibError, ValueError):
    """A catalogue file lacks columns or holds invalid positions."""


def read_catalogue(source: str | Path | bytes, kind: str, name: str | None = None) -> pd.DataFrame:
    """Read one catalogue (``kind`` "desi" or "lenscat") into the common columns."""
    if kind not in _COLUMNS:
        raise CatalogueError(f"catalogue kind must be one of {sorted(_COLUMNS)}, got {kind!r}")
    label = name or (str(source) if not isinstance(source, bytes) else kind)
    try:
        raw = pd.read_csv(io.BytesIO(source) if isinstance(source, bytes) else source, na_values=["-", ""])
    except FileNotFoundError:
        raise CatalogueError(f"{label}: no such catalogue file") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise CatalogueError(f"{label}: not a readable CSV ({exc})") from None
    missing = [c for c in list(_COLUMNS[kind]) + ["grading"] if c not in raw.columns]
    if missing:
        raise CatalogueError(f"{label}: missing column(s) {missing}; has {list(raw.columns)}")
    df = raw.rename(columns=_COLUMNS[kind])
    df["ra"], df["dec"] = pd.to_numeric(df["ra"], errors="coerce"), pd.to_numeric(df["dec"], errors="coerce")
    bad = ~np.isfinite(df["ra"]) | ~np.isfinite(df["dec"]) | (df["dec"].abs() > 90)
    if bad.any():
        raise CatalogueError(f"{label}: {int(bad.sum())} rows without a valid position (first: line "
                             f"{int(np.flatnonzero(bad)[0]) + 2})")
    df["zlens"] = pd.to_numeric(df.get("zlens"), errors="coerce")
    df["tier"] = df["grading"].map(TIERS)
    df["catalog"] = kind
    for c in ("type", "ref"):
        if c not in df:
            df[c] = pd.NA
    return df[[c for c in POSITIVE_COLUMNS if c != "also_in"]]


def positives_table(catalogues: list[pd.DataFrame], match_arcsec: float = 1.0) -> pd.DataFrame:
    """Concatenate catalogues, keep graded rows (tier A or B), drop positional duplicates."""
    df = pd.concat(catalogues, ignore_index=True)
    df = df[df["tier"].notna()].copy()
    order = {c: i for i, c in enumerate(dict.fromkeys(df["catalog"]))}
    df["_cat"] = df["catalog"].map(order)
    df = df.sort_values(["_cat", "tier"], kind="stable").reset_index(drop=True)
    coords = SkyCoord(df["ra"].to_numpy() * u.deg, df["dec"].to_numpy() * u.deg)
    i, j, _, _ = coords.search_around_sky(coords, match_arcsec * u.arcsec)
    keep = np.ones(len(df), dtype=bool)
    also: dict[int, set[str]] = {}
    pairs = sorted((a, b) for a, b in zip(i, j, strict=True) if a < b)  # a comes first in priority order
    for a, b in pairs:
        if keep[a] and keep[b]:
            keep[b] = False
            also.setdefault(a, set()).add(df.at[b, "catalog"])
    df["also_in"] = [",".join(sorted(also.get(k, set()) - {df.at[k, "catalog"]})) for k in range(len(df))]
    return df[keep].drop(columns="_cat").reset_index(drop=True)[POSITIVE_COLUMNS]

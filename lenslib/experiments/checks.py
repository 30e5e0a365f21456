"""Structural checks of the D06 artefacts: what a checksum cannot catch.

A file can be whole and still wrong for the book: a grid CSV cut short (its header intact) parses and
gives smaller counts; a JSON can hold a string where a count belongs. Each check raises
:class:`ArtefactFormatError` naming the file and the field, so a damaged results folder stops the
book instead of printing wrong tables. :class:`~lenslib.experiments.artefacts.D06Artefacts` runs them
on every read; ``python -m lenslib verify`` runs them on a whole folder.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from lenslib import LenslibError


class ArtefactFormatError(LenslibError, ValueError):
    """An artefact exists but does not have the documented layout or its numbers do not add up."""


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _count(v: Any) -> bool:
    return (isinstance(v, int) and not isinstance(v, bool) and v >= 0) or (isinstance(v, float) and v.is_integer()
                                                                         and v >= 0)


def require_types(obj: Mapping, fields: Mapping[str, str], where: str) -> None:
    """Each ``field: kind`` of ``obj`` (kind: ``count``, ``number``, ``number?`` (or null / NaN), ``str``,
    ``dict``, ``list``) is present with that type."""
    if not isinstance(obj, Mapping):
        raise ArtefactFormatError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    checks = {"count": _count, "number": _num, "number?": lambda v: v is None or _num(v),
              "str": lambda v: isinstance(v, str), "dict": lambda v: isinstance(v, Mapping),
              "list": lambda v: isinstance(v, list)}
    for name, kind in fields.items():
        if name not in obj:
            raise ArtefactFormatError(f"{where}: missing field {name!r}")
        if not checks[kind](obj[name]):
            raise ArtefactFormatError(f"{where}: field {name!r} must be a {kind.rstrip('?')}, got "
                                      f"{type(obj[name]).__name__} {obj[name]!r:.60}")


def check_fraction(value: Any, where: str, name: str) -> None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return
    if not _num(value) or not -1e-12 <= value <= 1 + 1e-12:
        raise ArtefactFormatError(f"{where}: field {name!r} must be a fraction in [0, 1], got {value!r}")


def check_tier_a(d: Mapping, where: str) -> None:
    """``real_lens_scoring_results.json``: counts are counts, valid ≤ total, recalls are fractions."""
    for part in ("real_lens", "negatives"):
        require_types(d[part], {"n_total": "count", "n_valid": "count"}, f"{where} [{part}]")
        if d[part]["n_valid"] > d[part]["n_total"]:
            raise ArtefactFormatError(f"{where} [{part}]: n_valid {d[part]['n_valid']} > n_total "
                                      f"{d[part]['n_total']}")
    for label, rate in (d["real_lens"].get("recall_at_thresholds") or {}).items():
        check_fraction(rate, f"{where} [real_lens.recall_at_thresholds]", label)
    if not isinstance(d["recall_by_tier"], Mapping):
        raise ArtefactFormatError(f"{where}: field 'recall_by_tier' must be an object")
    for tier, rec in d["recall_by_tier"].items():
        require_types(rec, {"n_total": "count", "n_valid": "count"}, f"{where} [recall_by_tier.{tier}]")
        for label, r in rec.items():
            if isinstance(r, Mapping) and "n_detected" in r:
                if not _count(r["n_detected"]) or r["n_detected"] > rec["n_valid"]:
                    raise ArtefactFormatError(f"{where} [recall_by_tier.{tier}.{label}]: n_detected "
                                              f"{r['n_detected']!r} is not a count ≤ n_valid {rec['n_valid']}")


def check_bright_arc(d: Mapping, where: str) -> None:
    """``bright_arc_results.json``: one result per magnitude bin, rates are fractions, counts are counts."""
    if not isinstance(d["results_by_bin"], Mapping) or not isinstance(d["magnitude_bins"], list):
        raise ArtefactFormatError(f"{where}: 'results_by_bin' must be an object and 'magnitude_bins' a list")
    missing = [b for b in d["magnitude_bins"] if b not in d["results_by_bin"]]
    if missing:
        raise ArtefactFormatError(f"{where}: results_by_bin lacks the magnitude bin(s) {missing}")
    for b in d["magnitude_bins"]:
        r = d["results_by_bin"][b]
        require_types(r, {"n_scored": "count"}, f"{where} [results_by_bin.{b}]")
        for k, v in r.items():
            if k.startswith("detection_rate"):
                check_fraction(v, f"{where} [results_by_bin.{b}]", k)


def check_grid(df: pd.DataFrame, meta: Mapping | None, where: str) -> None:
    """A selection-function CSV is complete and consistent: counts are non-negative integers with
    ``n_detected ≤ n_injections``, completeness is their ratio, every (cell, threshold) row has the same
    source-magnitude bins including ``all``, and — given its meta JSON — the cells are the product of the
    meta's axes, the thresholds are the meta's, and the injections add up to ``total_injections_ok``."""
    if df.empty:
        raise ArtefactFormatError(f"{where}: no rows")
    for col in ("n_injections", "n_detected", "n_failed"):
        v = pd.to_numeric(df[col], errors="coerce")
        bad = v.isna() | (v < 0) | (v != np.floor(v))
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise ArtefactFormatError(f"{where}: column {col!r} must hold non-negative integers; row {i + 2} has "
                                      f"{df[col].iloc[i]!r}")
    over = df["n_detected"] > df["n_injections"]
    if over.any():
        i = int(np.flatnonzero(over.to_numpy())[0])
        raise ArtefactFormatError(f"{where}: row {i + 2}: n_detected {df['n_detected'].iloc[i]} > n_injections "
                                  f"{df['n_injections'].iloc[i]}")
    n = df["n_injections"].to_numpy(float)
    comp = pd.to_numeric(df["completeness"], errors="coerce").to_numpy(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        expect = np.where(n > 0, df["n_detected"].to_numpy(float) / n, np.nan)
    wrong = (n > 0) & ~(np.abs(comp - expect) <= 1e-9)
    if wrong.any():
        i = int(np.flatnonzero(wrong)[0])
        raise ArtefactFormatError(f"{where}: row {i + 2}: completeness {comp[i]!r} is not n_detected / n_injections "
                                  f"= {expect[i]:.6g}")
    cell = ["theta_e", "psf_fwhm", "depth_5sig"]
    key = [*cell, "threshold", "fpr_target"]  # two FPR targets may give one τ: rows of each target
    n_all = df[df["source_mag_bin"] == "all"].groupby(key, sort=False, dropna=False).size()
    per_key = df.groupby(key, sort=False, dropna=False).size()
    lacking = per_key.index.difference(n_all[n_all == 1].index)
    if len(lacking):
        raise ArtefactFormatError(f"{where}: (cell, threshold) {dict(zip(key, lacking[0], strict=True))} must have "
                                  f"exactly one 'all' row (a truncated or edited file?)")
    bins = df.groupby(key, sort=False, dropna=False)["source_mag_bin"].apply(lambda s: tuple(sorted(s)))
    per_cell = bins.groupby(level=[0, 1, 2], sort=False).nunique()
    if (per_cell > 1).any():
        c = per_cell[per_cell > 1].index[0]
        raise ArtefactFormatError(f"{where}: the thresholds of cell {dict(zip(cell, c, strict=True))} have different "
                                  f"source-magnitude bins (a truncated or edited file?)")
    full = {b for b in bins if len(b) > 1}
    if len(full) > 1:
        raise ArtefactFormatError(f"{where}: the non-empty cells have different sets of source-magnitude bins "
                                  f"({sorted(full, key=len)[:2]}; a truncated or edited file?)")
    if meta is None:
        return
    axes = meta.get("grid") or {}
    try:
        want_cells = set(itertools.product(*(map(float, axes[a]) for a in cell)))
        want_thresholds = sorted(float(t) for t in meta["thresholds"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtefactFormatError(f"{where}: its meta JSON lacks the grid axes or thresholds ({exc})") from None
    have_cells = set(map(tuple, df[cell].astype(float).drop_duplicates().to_numpy().tolist()))
    if have_cells != want_cells:
        lost = sorted(want_cells - have_cells)
        raise ArtefactFormatError(f"{where}: {len(have_cells)} cells, the meta JSON's axes give {len(want_cells)}"
                                  + (f"; missing e.g. (theta_e, psf_fwhm, depth_5sig) = {lost[0]}" if lost else "")
                                  + " (a truncated or edited file?)")
    if meta.get("n_cells") is not None and int(meta["n_cells"]) != len(want_cells):
        raise ArtefactFormatError(f"{where}: meta n_cells {meta['n_cells']} ≠ the axes' {len(want_cells)} cells")
    have_t = df.groupby(cell, sort=False)["threshold"].apply(lambda s: sorted(set(s.astype(float))))
    want_thresholds = sorted(set(want_thresholds))
    off = [c for c, t in have_t.items() if len(t) != len(want_thresholds)
           or not np.allclose(t, want_thresholds, rtol=0, atol=1e-9)]
    if off:
        raise ArtefactFormatError(f"{where}: cell {off[0]} has thresholds {have_t[off[0]]}, the meta JSON "
                                  f"{want_thresholds}")
    total = meta.get("total_injections_ok")
    if total is not None:
        first = df[(df["source_mag_bin"] == "all") & np.isclose(df["threshold"].astype(float), want_thresholds[0])]
        if int(first["n_injections"].sum()) != int(total):
            raise ArtefactFormatError(f"{where}: the cells' n_injections add up to {int(first['n_injections'].sum())}"
                                      f", the meta JSON's total_injections_ok is {total}")

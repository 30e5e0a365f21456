"""The paper's tables as lenslib computes them, by id, and one cell of any of them (for the claims and the
numbers audit: a table cell typed in the paper is checked against the same cell recomputed)."""

from __future__ import annotations

import math
from collections.abc import Callable

import pandas as pd

from lenslib import LenslibError
from lenslib.experiments import bright_arc, gallery, grid, poisson, probe, tier_a
from lenslib.experiments.artefacts import D06Artefacts, NotInTheseArtefacts

#: table id (as the notebooks save it under tables/) -> the function that computes it from the artefacts
TABLES: dict[str, Callable[[D06Artefacts], pd.DataFrame]] = {
    "tier_a_recall": tier_a.recall_table,
    "grid_thresholds": grid.thresholds_table,
    "grid_theta_e": grid.by_theta_e,
    "poisson_paired": poisson.paired_table,
    "bright_arc": bright_arc.table,
    "poisson_theta_e": grid.poisson_theta_e_table,
    "linear_probe": probe.summary_table,
    "missed_tier_a": gallery.missed_table,
}


class TableCellError(LenslibError, LookupError):
    """A table, row or column that does not exist."""


def _decimals(text: str) -> int:
    return len(text.split(".")[1]) if "." in text else 0


def table(art: D06Artefacts, table_id: str) -> pd.DataFrame:
    if table_id not in TABLES:
        raise TableCellError(f"no table {table_id!r}; tables are: {', '.join(TABLES)}")
    key = f"table:{table_id}"
    if key not in art._cache:  # the audit asks for many cells of one table
        art._cache[key] = TABLES[table_id](art)
    return art._cache[key]


def cell(art: D06Artefacts, table: str, row: str, column: str) -> float:
    """The value in ``column`` of the row whose first column is ``row`` (a number matches to the precision it
    is written with: row ``"0.806"`` is the row 0.805866; a label matches exactly)."""
    t = globals()["table"](art, table)
    if column not in t.columns:
        raise TableCellError(f"table {table}: no column {column!r}; columns are: {', '.join(map(str, t.columns))}")
    key = t.columns[0]
    first = t[key]
    try:
        target = float(row)
        numeric = pd.api.types.is_numeric_dtype(first)
    except ValueError:
        numeric = False
    if numeric:
        tol = 0.5 * 10.0 ** -_decimals(str(row)) * (1 + 1e-9)
        hits = t[(first - target).abs() <= tol]
        if len(hits) > 1:  # e.g. a run's FPR-derived threshold that rounds to a fixed one: the exact row is meant
            exact = hits[(hits[key] - target).abs() <= 1e-12]
            hits = exact if len(exact) == 1 else hits
    else:
        hits = t[first.astype(str) == str(row)]
    if len(hits) == 0:  # a row of the authors' run (an FPR-derived threshold, a missed lens) this run lacks
        raise NotInTheseArtefacts(f"table {table} has no row {key} = {row!r} in these artefacts (rows: "
                                  f"{', '.join(map(str, first.tolist()))})")
    if len(hits) != 1:
        raise TableCellError(f"table {table}: {len(hits)} rows with {key} = {row!r} (rows: "
                             f"{', '.join(map(str, first.tolist()))})")
    value = float(hits.iloc[0][column])
    if not math.isfinite(value):
        raise TableCellError(f"table {table}: {key} = {row!r}, {column} is {value}")
    return value

"""The selection-function table (F.1) computed from a per-injection table, against a row-by-row recount."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from lenslib import stats
from lenslib.experiments.compute import grid


def _injections(seed: int, spec: grid.GridSpec) -> tuple[pd.DataFrame, set[int], dict[int, int]]:
    """Injections in some cells (a few cells with hosts but no success), NaN SNRs, values on the bin edges."""
    rng = np.random.default_rng(seed)
    cells = spec.cells()["cell_idx"].to_numpy()
    with_hosts = {int(c) for c in cells if rng.random() < 0.6}
    rows = []
    for c in sorted(with_hosts):
        if rng.random() < 0.1:
            continue  # every attempt of this cell failed
        for _ in range(int(rng.integers(0, spec.injections_per_cell + 1))):
            rows.append((c, rng.random(), rng.uniform(22.5, 26.5), rng.uniform(17.0, 28.0),
                         rng.normal(20, 10) if rng.random() > 0.1 else np.nan))
    inj = pd.DataFrame(rows, columns=["cell_idx", "score", "src_r_mag", "lensed_r_mag", "arc_snr"])
    inj.loc[inj.index[:4], "score"] = 0.5  # on a threshold: detected (score ≥ τ)
    inj.loc[inj.index[4:8], "src_r_mag"] = 24.0  # on a bin edge: the upper bin
    inj.loc[inj.index[8:12], "lensed_r_mag"] = 22.0
    return inj, with_hosts, {c: int(rng.integers(0, 4)) for c in with_hosts}


def _recount(inj: pd.DataFrame, spec: grid.GridSpec, thresholds, n_failed, with_hosts) -> pd.DataFrame:
    """The table written out loop by loop, the way the F.1 spec reads."""
    rows = []
    for cell in spec.cells().itertuples():
        g = inj[inj["cell_idx"] == cell.cell_idx]
        bins = [("all", None, -math.inf, math.inf)]
        bins += [(lab, "src_r_mag", lo, hi) for lab, lo, hi in grid.SOURCE_BINS]
        bins += [(lab, "lensed_r_mag", lo, hi) for lab, lo, hi in grid.LENSED_BINS]
        for t, ttype, fpr in thresholds:
            for label, col, lo, hi in bins:
                if cell.cell_idx not in with_hosts and label != "all":
                    continue
                sub = g if col is None else g[(g[col] >= lo) & (g[col] < hi)]
                if cell.cell_idx not in with_hosts:
                    sub = g.iloc[:0]
                n, k = len(sub), int((sub["score"] >= t).sum())
                snr = sub["arc_snr"].dropna()
                rows.append({"theta_e": cell.theta_e, "psf_fwhm": cell.psf_fwhm, "depth_5sig": cell.depth_5sig,
                             "threshold": t, "threshold_type": ttype, "fpr_target": fpr, "source_mag_bin": label,
                             "n_injections": n, "n_detected": k,
                             "n_failed": n_failed.get(cell.cell_idx, 0) if label == "all" and cell.cell_idx in
                             with_hosts else 0,
                             "completeness": k / n if n else math.nan,
                             "ci68": stats.jeffreys_interval(k, n, 0.68), "ci95": stats.jeffreys_interval(k, n, 0.95),
                             "mean_score": sub["score"].mean() if n else math.nan,
                             "mean_arc_snr": snr.mean() if len(snr) else math.nan,
                             "sufficient": cell.cell_idx in with_hosts and n >= (
                                 spec.injections_per_cell if label == "all" else grid.SUB_BIN_MIN)})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("seed", [0, 1])
def test_the_table_equals_a_row_by_row_recount(seed):
    spec = grid.GridSpec(injections_per_cell=25)
    inj, with_hosts, n_failed = _injections(seed, spec)
    thresholds = grid.threshold_rows(spec, {0.001: 0.83, 0.0001: 0.97})
    got = grid.selection_function(inj, spec, thresholds, n_failed, with_hosts)
    want = _recount(inj, spec, thresholds, n_failed, with_hosts)
    assert len(got) == len(want)
    assert list(got.columns) == ["theta_e", "psf_fwhm", "depth_5sig", "threshold", "threshold_type", "fpr_target",
                                 "source_mag_bin", "n_injections", "n_detected", "n_failed", "completeness",
                                 "ci68_lo", "ci68_hi", "ci95_lo", "ci95_hi", "mean_score", "mean_arc_snr",
                                 "sufficient"]
    for col in ("theta_e", "psf_fwhm", "depth_5sig", "threshold", "threshold_type", "source_mag_bin",
                "n_injections", "n_detected", "n_failed", "sufficient"):
        assert got[col].tolist() == want[col].tolist(), col
    np.testing.assert_array_equal(got["fpr_target"].isna(), want["fpr_target"].isna())
    for col in ("completeness", "mean_score", "mean_arc_snr"):
        np.testing.assert_allclose(got[col], want[col], rtol=1e-12, equal_nan=True, err_msg=col)
    for level in ("68", "95"):
        lo, hi = np.array(want[f"ci{level}"].tolist()).T
        np.testing.assert_allclose(got[f"ci{level}_lo"], lo, rtol=1e-12, equal_nan=True)
        np.testing.assert_allclose(got[f"ci{level}_hi"], hi, rtol=1e-12, equal_nan=True)
    assert got["n_injections"].dtype == np.int64 and got["sufficient"].dtype == bool
    # the cases the data were built to hold are there
    empty = got[~got["n_injections"].astype(bool) & (got["source_mag_bin"] == "all")]
    assert len(empty) and got["mean_arc_snr"].isna().any() and got["sufficient"].any()

"""The result reducers (lenslib.experiments.grid, tier_a, bright_arc, poisson) against recounts done here.

Every reference below is computed in this file from the authors' raw D06 files, read with the ``csv`` and
``json`` modules (not through lenslib's artefact readers), and from independent statistics (scipy's Beta
quantiles and its own Wilson interval, brute-force binomial sums), so a wrong sum, grouping, selection or
sign in a reducer fails here. The stored summaries of ``d06_poisson_diagnostics.json`` were written by the
authors' separate diagnostics script and are a second, independent reference where they exist.
"""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from lenslib.experiments import bright_arc, grid, poisson, tier_a
from lenslib.experiments.artefacts import BRIGHT_ARC_VARIANTS

CONDITIONS = ("no_poisson", "poisson")


# --- references, read straight from the files -----------------------------------------------------------------

@pytest.fixture(scope="module")
def raw(d06):
    """The raw D06 files: grid rows as dicts of Python values, grid metas, bright-arc, Tier-A, diagnostics JSON."""
    rows, metas = {}, {}
    for cond in CONDITIONS:
        with open(d06 / f"grid_{cond}" / "selection_function.csv", newline="") as f:
            rows[cond] = [{"theta_e": float(r["theta_e"]), "psf_fwhm": float(r["psf_fwhm"]),
                           "depth_5sig": float(r["depth_5sig"]), "threshold": float(r["threshold"]),
                           "threshold_type": r["threshold_type"], "bin": r["source_mag_bin"],
                           "n": int(r["n_injections"]), "k": int(r["n_detected"]),
                           "sufficient": r["sufficient"] == "True"} for r in csv.DictReader(f)]
        metas[cond] = json.loads((d06 / f"grid_{cond}" / "selection_function_meta.json").read_text())
    ba = {v: json.loads((d06 / f"ba_{v}" / "bright_arc_results.json").read_text()) for v in BRIGHT_ARC_VARIANTS}
    return {"rows": rows, "meta": metas, "ba": ba,
            "tier_a": json.loads((d06 / "tier_a_scoring" / "real_lens_scoring_results.json").read_text()),
            "gallery": json.loads((d06 / "gallery" / "gallery_data.json").read_text()),
            "diag": json.loads((d06 / "poisson_diagnostics" / "d06_poisson_diagnostics.json").read_text())}


def _sum(raw, cond, threshold, mag_bin="all", sufficient_only=False, where=lambda r: True):
    """(Σ n_detected, Σ n_injections) over the rows at ``threshold`` and ``mag_bin`` passing ``where``."""
    k = n = 0
    for r in raw["rows"][cond]:
        if (r["threshold"] == threshold and r["bin"] == mag_bin and (r["sufficient"] or not sufficient_only)
                and where(r)):
            k, n = k + r["k"], n + r["n"]
    return k, n


def _jeffreys(k, n):
    return tuple(sps.beta.ppf([0.025, 0.975], k + 0.5, n - k + 0.5))


def _wilson(k, n):
    """scipy's own Wilson score interval (lenslib uses statsmodels')."""
    ci = sps.binomtest(k, n).proportion_ci(0.95, method="wilson")
    return ci.low, ci.high


def _thresholds(raw):
    return raw["meta"]["no_poisson"]["thresholds"]


# --- grid: Figure 2, Tables 3, 4, 8 ------------------------------------------------------------------------------

@pytest.mark.parametrize("cond", CONDITIONS)
@pytest.mark.parametrize("axis", ["psf_fwhm", "depth_5sig"])
def test_completeness_map_is_the_recounted_sum_per_cell(art, raw, cond, axis):
    """Figure 2: every cell of the θ_E × PSF / depth map is 100 Σk / Σn over that cell's "all" rows at the
    threshold (not a per-row maximum or mean), NaN exactly where the cell holds no injection; the axes are the
    meta's grid values in order."""
    grid_axes = raw["meta"][cond]["grid"]
    for threshold in (0.3, _thresholds(raw)[3]):
        m = grid.completeness_map(art, axis, cond, threshold)
        assert list(m.index) == grid_axes["theta_e"] and list(m.columns) == grid_axes[axis]
        k, n = defaultdict(int), defaultdict(int)
        for r in raw["rows"][cond]:
            if r["threshold"] == threshold and r["bin"] == "all":
                k[r["theta_e"], r[axis]] += r["k"]
                n[r["theta_e"], r[axis]] += r["n"]
        n_nan = 0
        for te in grid_axes["theta_e"]:
            for x in grid_axes[axis]:
                got = m.loc[te, x]
                if n[te, x] == 0:
                    assert math.isnan(got), (te, x, got)
                    n_nan += 1
                else:
                    assert got == pytest.approx(100 * k[te, x] / n[te, x], abs=1e-12), (te, x)
        assert 0 <= n_nan < m.size and m.notna().sum().sum() == m.size - n_nan
        assert (np.nanmax(m.to_numpy()) > np.nanmin(m.to_numpy()))
    with pytest.raises(ValueError, match="axis must be 'psf_fwhm' or 'depth_5sig', got 'seeing'"):
        grid.completeness_map(art, "seeing")


def test_thresholds_table_recounted_from_both_grid_csvs(art, raw):
    """Table 3: per threshold, completeness without / with Poisson noise, deficit = with − without (pp), the
    counts and the threshold type, all recounted from the CSV rows; in the meta's threshold order."""
    t = grid.thresholds_table(art)
    assert list(t["threshold"]) == _thresholds(raw)
    for _, row in t.iterrows():
        th = row["threshold"]
        (ka, na), (kb, nb) = _sum(raw, "no_poisson", th), _sum(raw, "poisson", th)
        types = {r["threshold_type"] for r in raw["rows"]["no_poisson"] if r["threshold"] == th}
        assert row["threshold_type"] == types.pop() and not types
        assert (row["n_detected_no_poisson"], row["n_detected_poisson"], row["n_injections"]) == (ka, kb, na)
        assert row["no_poisson_pct"] == pytest.approx(100 * ka / na, abs=1e-12)
        assert row["poisson_pct"] == pytest.approx(100 * kb / nb, abs=1e-12)
        assert row["deficit_pp"] == pytest.approx(100 * kb / nb - 100 * ka / na, abs=1e-12)
        assert grid.deficit_pp(art, th) == pytest.approx(row["deficit_pp"], abs=1e-12)
    assert [x for x, _ in grid.thresholds(art)] == _thresholds(raw)
    assert [ty for _, ty in grid.thresholds(art)] == ["fixed"] * 3 + ["FPR=1.0e-03", "FPR=1.0e-04"]
    fpr3 = raw["meta"]["no_poisson"]["fpr_derived_thresholds"]["0.001"]
    assert grid.deficit_pp(art, fpr=0.001) == pytest.approx(t.loc[3, "deficit_pp"], abs=1e-12)
    assert grid.fpr_derived_threshold(art) == fpr3 and grid.fpr_derived_threshold(art, 1e-4) == _thresholds(raw)[4]


@pytest.mark.parametrize("cond", CONDITIONS)
def test_marginal_recounted_with_independent_intervals(art, raw, cond):
    """The headline marginal completeness: Σk/Σn over all non-empty cells, with Jeffreys (scipy Beta quantiles)
    and Wilson (scipy's binomtest) 95 % intervals, at every threshold and through the FPR shortcut."""
    for th in _thresholds(raw):
        k, n = _sum(raw, cond, th)
        m = grid.marginal(art, cond, th)
        assert (m["n_detected"], m["n_injections"]) == (k, n) and n == 110000
        assert m["completeness_pct"] == pytest.approx(100 * k / n, abs=1e-12)
        assert (m["jeffreys95_lo_pct"], m["jeffreys95_hi_pct"]) == pytest.approx(
            tuple(100 * x for x in _jeffreys(k, n)), abs=1e-9)
        assert (m["wilson95_lo_pct"], m["wilson95_hi_pct"]) == pytest.approx(
            tuple(100 * x for x in _wilson(k, n)), abs=1e-9)
        for bound, i in (("lo", 0), ("hi", 1)):
            assert grid.marginal_ci_pct(art, bound, cond, th) == pytest.approx(100 * _wilson(k, n)[i], abs=1e-9)
            assert grid.marginal_ci_pct(art, bound, cond, th, "jeffreys") == pytest.approx(
                100 * _jeffreys(k, n)[i], abs=1e-9)
        assert grid.marginal_pct(art, cond, th) == pytest.approx(100 * k / n, abs=1e-12)
        assert grid.marginal_detected(art, cond, th) == k
    k, n = _sum(raw, cond, _thresholds(raw)[4])
    assert grid.marginal_pct(art, cond, fpr=1e-4) == pytest.approx(100 * k / n, abs=1e-12)
    assert grid.marginal_detected(art, cond, fpr=1e-4) == k
    assert grid.marginal_detected(art, cond) == _sum(raw, cond, 0.3)[0]
    with pytest.raises(ValueError, match="bound must be 'lo' or 'hi' and method 'wilson' or 'jeffreys', got 'x'"):
        grid.marginal_ci_pct(art, "x")
    with pytest.raises(ValueError, match="got 'lo', 'x'"):
        grid.marginal_ci_pct(art, "lo", method="x")


def test_marginal_defaults_are_no_poisson_at_0_3(art, raw):
    """The functions' defaults are the paper's headline selection: no Poisson noise, p > 0.3."""
    k, n = _sum(raw, "no_poisson", 0.3)
    assert grid.marginal(art)["n_detected"] == k
    assert grid.marginal_pct(art) == pytest.approx(100 * k / n, abs=1e-12)
    assert grid.marginal_ci_pct(art) == pytest.approx(100 * _wilson(k, n)[0], abs=1e-9)
    assert grid.marginal_ci_pct(art, "hi") == pytest.approx(100 * _wilson(k, n)[1], abs=1e-9)
    kp, np_ = _sum(raw, "poisson", 0.3)
    assert grid.deficit_pp(art) == pytest.approx(100 * kp / np_ - 100 * k / n, abs=1e-12)


@pytest.mark.parametrize("cond", CONDITIONS)
def test_by_theta_e_recounted(art, raw, cond):
    """Table 4: per θ_E, Σk/Σn over the PSF × depth cells, the counts, Jeffreys and Wilson intervals; the
    authors' diagnostics JSON stores the same counts."""
    t = grid.by_theta_e(art, cond)
    assert list(t.columns) == ["theta_e", "completeness_pct", "n_detected", "n_injected", "jeffreys95_lo_pct",
                               "jeffreys95_hi_pct", "wilson95_lo_pct", "wilson95_hi_pct"]
    assert list(t["theta_e"]) == raw["meta"][cond]["grid"]["theta_e"]
    stored = raw["diag"]["conditioned_grid"]["by_condition"][cond]["by_theta_e"]
    for _, row in t.iterrows():
        te = row["theta_e"]
        k, n = _sum(raw, cond, 0.3, where=lambda r, te=te: r["theta_e"] == te)
        assert (row["n_detected"], row["n_injected"]) == (k, n)
        assert (stored[f"{te:.2f}"]["n_detected"], stored[f"{te:.2f}"]["n_injections"]) == (k, n)
        assert row["completeness_pct"] == pytest.approx(100 * k / n, abs=1e-12)
        assert (row["jeffreys95_lo_pct"], row["jeffreys95_hi_pct"]) == pytest.approx(
            tuple(100 * x for x in _jeffreys(k, n)), abs=1e-9)
        assert (row["wilson95_lo_pct"], row["wilson95_hi_pct"]) == pytest.approx(
            tuple(100 * x for x in _wilson(k, n)), abs=1e-9)
        assert grid.theta_e_pct(art, te, cond) == pytest.approx(100 * k / n, abs=1e-12)
    peak = max(t["theta_e"], key=lambda te: _sum(raw, cond, 0.3, where=lambda r: r["theta_e"] == te)[0])
    assert grid.theta_e_peak(art, cond) == peak
    assert grid.theta_e_bin_injections(art, cond) == 10000.0
    th = _thresholds(raw)[2]
    k, n = _sum(raw, cond, th, where=lambda r: r["theta_e"] == 2.0)
    assert grid.theta_e_pct(art, 2.0, cond, th) == pytest.approx(100 * k / n, abs=1e-12)


def test_theta_e_peak_and_bin_injections_defaults(art, raw):
    """θ_E peak of the paper (2.5″, no Poisson, p > 0.3) and the 10 000 injections per θ_E bin; a grid with
    unequal bins gives NaN."""
    assert grid.theta_e_peak(art) == 2.5
    assert grid.theta_e_pct(art, 2.5) == pytest.approx(
        100 * np.divide(*_sum(raw, "no_poisson", 0.3, where=lambda r: r["theta_e"] == 2.5)), abs=1e-12)
    assert grid.theta_e_bin_injections(art) == 10000.0

    class Uneven:
        def grid(self, cond):
            df = art.grid(cond)
            return df[~((df["theta_e"] == 0.5) & (df["psf_fwhm"] == df["psf_fwhm"].max()))]

    n_cut = _sum(raw, "no_poisson", 0.3, where=lambda r: r["theta_e"] == 0.5 and r["psf_fwhm"] == 1.8)[1]
    assert n_cut > 0 and math.isnan(grid.theta_e_bin_injections(Uneven()))


@pytest.mark.parametrize("sufficient_only", [False, True])
@pytest.mark.parametrize("cond", CONDITIONS)
def test_by_mag_bin_recounted(art, raw, cond, sufficient_only):
    """Completeness per lensed / source magnitude bin (every non-empty cell-bin, or only the sufficient ones),
    its counts, the bin's share of all injections and the single-number accessors."""
    n_all = _sum(raw, cond, 0.3)[1]
    for bins in (grid.LENSED_BINS, grid.SOURCE_BINS):
        t = grid.by_mag_bin(art, cond, bins=bins, sufficient_only=sufficient_only)
        assert list(t["mag_bin"]) == list(bins)
        for _, row in t.iterrows():
            b = row["mag_bin"]
            k, n = _sum(raw, cond, 0.3, b, sufficient_only)
            assert (row["n_detected"], row["n_injections"]) == (k, n)
            assert row["completeness_pct"] == pytest.approx(100 * k / n if n else np.nan, abs=1e-12, nan_ok=True)
            assert grid.mag_bin_pct(art, b, cond, sufficient_only=sufficient_only) == pytest.approx(
                100 * k / n if n else np.nan, abs=1e-12, nan_ok=True)
            assert grid.mag_bin_count(art, b, "n_detected", cond, sufficient_only=sufficient_only) == k
            assert grid.mag_bin_count(art, b, "n_injections", cond, sufficient_only=sufficient_only) == n
            if not sufficient_only:
                assert grid.mag_bin_share_pct(art, b, cond) == pytest.approx(100 * n / n_all, abs=1e-12)


def test_mag_bin_defaults_and_other_thresholds(art, raw):
    """The magnitude-bin accessors default to no Poisson, p > 0.3, all non-empty cell-bins and n_detected; a
    threshold passed on is used; the sufficient-only sums match the authors' diagnostics."""
    for b in grid.LENSED_BINS:
        k, n = _sum(raw, "no_poisson", 0.3, b)
        assert grid.mag_bin_count(art, b) == k
        assert grid.mag_bin_pct(art, b) == pytest.approx(100 * k / n, abs=1e-12)
        assert grid.mag_bin_share_pct(art, b) == pytest.approx(100 * n / 110000, abs=1e-12)
        k5, n5 = _sum(raw, "poisson", 0.5, b)
        assert grid.mag_bin_count(art, b, "n_detected", "poisson", 0.5) == k5
        assert grid.mag_bin_pct(art, b, "poisson", 0.5) == pytest.approx(100 * k5 / n5, abs=1e-12)
        assert grid.mag_bin_share_pct(art, b, "poisson", 0.5) == pytest.approx(100 * n5 / 110000, abs=1e-12)
        assert (grid.by_mag_bin(art, "poisson", 0.5, (b,))["n_detected"] == k5).all()
    stored = raw["diag"]["conditioned_grid"]["poisson_delta_by_lensed_mag"]
    for b, v in stored.items():
        for cond in CONDITIONS:
            k, n = _sum(raw, cond, 0.3, b, True)
            assert v[cond] == pytest.approx(k / n, rel=1e-12)
    assert list(grid.by_mag_bin(art)["mag_bin"]) == list(grid.LENSED_BINS)
    with pytest.raises(ValueError, match="column must be 'n_detected' or 'n_injections', got 'k'"):
        grid.mag_bin_count(art, "lensed_20-22", "k")


def test_select_matches_threshold_bin_and_nonempty(art, raw):
    """select: rows at the threshold (any other threshold gives nothing), of one magnitude bin, with n > 0,
    and sufficient ones only when asked — the row counts are those of the raw CSV."""
    df = art.grid("no_poisson")
    for th in _thresholds(raw):
        for b in ("all", "lensed_20-22", "24-25"):
            want = [r for r in raw["rows"]["no_poisson"] if r["threshold"] == th and r["bin"] == b and r["n"] > 0]
            assert len(grid.select(df, th, b)) == len(want) > 0
            assert len(grid.select(df, th, b, True)) == sum(r["sufficient"] for r in want)
    assert len(grid.select(df, 0.3)) == 220
    assert grid.select(df, 0.31).empty and grid.select(df, 0.3 * (1 + 1e-6)).empty
    assert len(grid.select(df, 0.3 * (1 + 1e-12))) == 220


@pytest.mark.parametrize("cond", CONDITIONS)
def test_cell_counts_recounted(art, raw, cond):
    """Cells, non-empty cells, empty cells and injections of the grid, counted from the "all" rows of the first
    threshold, and equal to the meta's numbers."""
    first = [r for r in raw["rows"][cond] if r["threshold"] == _thresholds(raw)[0] and r["bin"] == "all"]
    meta = raw["meta"][cond]
    want = {"n_cells": len(first), "n_nonempty": sum(r["n"] > 0 for r in first),
            "n_injections": sum(r["n"] for r in first)}
    assert grid.cell_counts(art, cond) == want
    assert want == {"n_cells": meta["n_cells"], "n_nonempty": meta["n_sufficient_cells"],
                    "n_injections": meta["total_injections_ok"]}
    for what in ("n_cells", "n_nonempty", "n_injections"):
        assert grid.grid_cell_count(art, what, cond) == want[what]
    assert grid.grid_cell_count(art, "n_empty", cond) == meta["n_empty_cells"] == want["n_cells"] - want["n_nonempty"]
    assert grid.grid_cell_count(art) == 385
    with pytest.raises(ValueError, match=r"what must be one of \['n_cells', 'n_empty', 'n_injections', 'n_nonempty'\]"):
        grid.grid_cell_count(art, "cells")


def test_poisson_theta_e_table_recounted_and_stored(art, raw):
    """Table 8: per θ_E, completeness without / with Poisson, Δ = with − without (pp) and Δ relative to
    without (%), recounted; the authors' diagnostics store the same completeness (to 4 decimals) and Δ."""
    stored = raw["diag"]["conditioned_grid"]["poisson_delta_by_theta_e"]
    for th in (0.3, 0.5):
        t = grid.poisson_theta_e_table(art, th)
        assert list(t.columns) == ["theta_e", "no_poisson_pct", "poisson_pct", "delta_pp", "relative_change_pct"]
        for _, row in t.iterrows():
            te = row["theta_e"]
            ka, na = _sum(raw, "no_poisson", th, where=lambda r, te=te: r["theta_e"] == te)
            kb, nb = _sum(raw, "poisson", th, where=lambda r, te=te: r["theta_e"] == te)
            a, b = 100 * ka / na, 100 * kb / nb
            assert (row["no_poisson_pct"], row["poisson_pct"]) == pytest.approx((a, b), abs=1e-12)
            assert row["delta_pp"] == pytest.approx(b - a, abs=1e-12)
            assert row["relative_change_pct"] == pytest.approx(100 * (kb / nb - ka / na) / (ka / na), rel=1e-9)
            assert grid.poisson_relative_change_pct(art, te, th) == pytest.approx(row["relative_change_pct"])
            if th == 0.3:
                s = stored[f"{te:.2f}"]
                assert (s["no_poisson"], s["poisson"]) == pytest.approx((a / 100, b / 100), abs=5e-5)
                assert s["delta_pp"] == pytest.approx(b - a, abs=1e-9)
    assert grid.poisson_relative_change_pct(art, 3.0) == pytest.approx(100 * (414 - 715) / 715, rel=1e-9)


def test_poisson_crossover_and_bin_counts(art, raw):
    """§4.4: Δ > 0 up to θ_E = 1.25, < 0 from 1.5 (the diagnostics' own poisson_helps flags); 7 of 11 bins
    lowered; a table without a single sign change gives NaN."""
    helps = {float(te): v["poisson_helps"] for te, v in raw["diag"]["conditioned_grid"][
        "poisson_delta_by_theta_e"].items()}
    below = max(te for te, h in helps.items() if h)
    above = min(te for te, h in helps.items() if not h)
    assert (below, above) == (1.25, 1.5)
    assert grid.poisson_crossover_theta_e(art) == below
    assert grid.poisson_crossover_theta_e(art, "above") == above
    assert grid.poisson_theta_e_n_bins(art) == sum(not h for h in helps.values()) == 7
    assert grid.poisson_theta_e_n_bins(art, "raises") == sum(helps.values()) == 4
    with pytest.raises(ValueError, match="side must be 'below' or 'above', got 'left'"):
        grid.poisson_crossover_theta_e(art, "left")
    with pytest.raises(ValueError, match="effect must be 'lowers' or 'raises', got 'x'"):
        grid.poisson_theta_e_n_bins(art, "x")


@pytest.mark.parametrize("deltas, below, above", [
    ([1.0, 2.0, -1.0, -2.0], 2.0, 3.0),       # one sign change between θ_E 2 and 3
    ([-1.0, -2.0, -1.0, -2.0], np.nan, np.nan),  # never raised
    ([1.0, 2.0, 1.0, 2.0], np.nan, np.nan),     # never lowered
    ([1.0, -2.0, 1.0, -2.0], np.nan, np.nan),   # two sign changes
    ([1.0, 0.0, -1.0, -2.0], np.nan, np.nan),   # a zero Δ is neither
    ([1.0, -1.0, -2.0, 0.0], np.nan, np.nan),   # a zero Δ after the crossover
])
def test_poisson_crossover_needs_one_clean_sign_change(monkeypatch, deltas, below, above):
    """The crossover bracket exists only for Δ > 0 then Δ < 0 (strictly), else NaN; the bins are sorted by θ_E."""
    te = [1.0, 2.0, 3.0, 4.0]
    table = pd.DataFrame({"theta_e": te[::-1], "delta_pp": deltas[::-1]})  # unsorted on purpose
    monkeypatch.setattr(grid, "poisson_theta_e_table", lambda art, threshold=0.3: table)
    got = (grid.poisson_crossover_theta_e(None, "below"), grid.poisson_crossover_theta_e(None, "above"))
    assert got == pytest.approx((below, above), nan_ok=True)
    assert grid.poisson_theta_e_n_bins(None) == sum(d < 0 for d in deltas)
    assert grid.poisson_theta_e_n_bins(None, "raises") == sum(d > 0 for d in deltas)


def test_poisson_two_proportion_test_on_the_marginals(art, raw):
    """§4.4: the pooled two-proportion z-test of the no-Poisson vs Poisson marginals (z and p recomputed here
    from the counts), the difference and its unpooled Wald interval in pp, at two thresholds."""
    from statsmodels.stats.proportion import confint_proportions_2indep

    for th in (0.3, 0.7):
        (ka, na), (kb, nb) = _sum(raw, "no_poisson", th), _sum(raw, "poisson", th)
        pbar = (ka + kb) / (na + nb)
        z = (ka / na - kb / nb) / math.sqrt(pbar * (1 - pbar) * (1 / na + 1 / nb))
        r = grid.poisson_test(art, th)
        assert r["z"] == pytest.approx(z, rel=1e-9) and grid.poisson_z(art, th) == pytest.approx(z, rel=1e-9)
        assert r["p_value"] == pytest.approx(math.erfc(abs(z) / math.sqrt(2)), rel=1e-6)
        assert r["diff_pp"] == pytest.approx(100 * (ka / na - kb / nb), abs=1e-12)
        lo, hi = confint_proportions_2indep(ka, na, kb, nb, method="wald", compare="diff")
        assert (r["ci95_lo_pp"], r["ci95_hi_pp"]) == pytest.approx((100 * lo, 100 * hi), abs=1e-9)
        assert grid.poisson_diff_ci_pp(art, "lo", th) == pytest.approx(100 * lo, abs=1e-9)
        assert grid.poisson_diff_ci_pp(art, "hi", th) == pytest.approx(100 * hi, abs=1e-9)
    assert grid.poisson_z(art) == pytest.approx(grid.poisson_test(art, 0.3)["z"])
    assert grid.poisson_diff_ci_pp(art) == pytest.approx(grid.poisson_test(art, 0.3)["ci95_lo_pp"])
    p = grid.poisson_test(art)["p_value"]
    assert grid.poisson_p_below(art, 1e-50) == 1e-50 and 0 < p < 1e-50
    assert grid.poisson_p_below(art, p) == p and grid.poisson_p_below(art, p / 10) == p
    assert grid.poisson_p_below(art, 1e-40, 0.7) == 1e-40


def test_tier_a_gap(art, raw):
    """The ~84 pp gap: Tier-A recall at p > 0.3 (100 of 112) minus the marginal injection completeness."""
    k, n = _sum(raw, "no_poisson", 0.3)
    assert grid.tier_a_gap_pp(art) == pytest.approx(100 * 100 / 112 - 100 * k / n, abs=1e-12)


# --- Tier-A recall: Table 2 ----------------------------------------------------------------------------------

def _tier_a_counts(raw):
    tier = raw["tier_a"]["recall_by_tier"]["tier_A"]
    return int(tier["n_valid"]), {float(lab.split(">")[1].split()[0]): v["n_detected"]
                                  for lab, v in tier.items() if isinstance(v, dict)}


def test_recall_table_recomputed(art, raw):
    """Table 2: recall = k/n with Jeffreys and Wilson intervals (scipy), the FPR of the negatives, sorted by
    threshold; the authors' stored recall and interval agree."""
    n, counts = _tier_a_counts(raw)
    t = tier_a.recall_table(art)
    assert list(t.columns) == ["threshold", "recall_pct", "n_detected", "n_total", "ci95_lo_pct", "ci95_hi_pct",
                               "wilson_lo_pct", "wilson_hi_pct", "fpr_negatives", "label"]
    assert list(t["threshold"]) == sorted(counts) == [0.3, 0.5, 0.806, 0.995]
    stored = raw["tier_a"]["recall_by_tier"]["tier_A"]
    fpr = raw["tier_a"]["negatives"]["fpr_at_thresholds"]
    for _, row in t.iterrows():
        k = counts[row["threshold"]]
        assert (row["n_detected"], row["n_total"]) == (k, n)
        assert row["recall_pct"] == pytest.approx(100 * stored[row["label"]]["recall"], abs=1e-12)
        assert (row["ci95_lo_pct"], row["ci95_hi_pct"]) == pytest.approx(
            tuple(100 * x for x in _jeffreys(k, n)), abs=1e-9)
        assert (row["wilson_lo_pct"], row["wilson_hi_pct"]) == pytest.approx(
            tuple(100 * x for x in _wilson(k, n)), abs=1e-9)
        assert row["fpr_negatives"] == fpr[row["label"]]
        th = row["threshold"]
        assert tier_a.recall_pct(art, th) == pytest.approx(100 * k / n, abs=1e-12)
        assert tier_a.n_detected(art, th) == k
        assert tier_a.recall_ci_pct(art, th, "lo") == pytest.approx(100 * _jeffreys(k, n)[0], abs=1e-9)
        assert tier_a.recall_ci_pct(art, th, "hi") == pytest.approx(100 * _jeffreys(k, n)[1], abs=1e-9)
        assert tier_a.recall_ci_width_pp(art, th) == pytest.approx(100 * np.diff(_jeffreys(k, n))[0], abs=1e-9)
        assert tier_a.recall_ci_width_pp(art, th, "wilson") == pytest.approx(100 * np.diff(_wilson(k, n))[0],
                                                                             abs=1e-9)
        assert tier_a.missed_pct(art, th) == pytest.approx(100 * (n - k) / n, abs=1e-12)
        assert tier_a.missed_wilson_pct(art, "lo", th) == pytest.approx(100 * _wilson(n - k, n)[0], abs=1e-9)
        assert tier_a.missed_wilson_pct(art, "hi", th) == pytest.approx(100 * _wilson(n - k, n)[1], abs=1e-9)


def test_recall_defaults_and_fpr_lookup(art, raw):
    """Defaults are p > 0.3 and the Jeffreys interval's lower bound; ``fpr`` picks the FPR-derived threshold as
    the Tier-A labels round it (0.806 for 10⁻³, 0.995 for 10⁻⁴)."""
    n, counts = _tier_a_counts(raw)
    assert tier_a.recall_pct(art) == pytest.approx(100 * counts[0.3] / n)
    assert tier_a.n_detected(art) == counts[0.3] == 100
    assert tier_a.recall_ci_pct(art) == pytest.approx(100 * _jeffreys(100, n)[0], abs=1e-9)
    assert tier_a.recall_ci_width_pp(art) == pytest.approx(100 * np.diff(_jeffreys(100, n))[0], abs=1e-9)
    assert tier_a.missed_pct(art) == pytest.approx(100 * 12 / 112)
    assert tier_a.missed_wilson_pct(art) == pytest.approx(100 * _wilson(12, 112)[0], abs=1e-9)
    assert tier_a.recall_pct(art, fpr=1e-3) == pytest.approx(100 * counts[0.806] / n)
    assert tier_a.recall_pct(art, fpr=1e-4) == pytest.approx(100 * counts[0.995] / n)
    with pytest.raises(ValueError, match="method must be 'jeffreys' or 'wilson', got 'exact'"):
        tier_a.recall_ci_width_pp(art, 0.3, "exact")
    with pytest.raises(ValueError, match="cannot read a threshold from label 'tier A'"):
        tier_a._threshold_value("tier A")
    assert tier_a._threshold_value("p > 0.806 (FPR-derived)") == 0.806


def test_tier_a_per_lens_scores(art, raw):
    """Per-lens scores of the gallery data: missed counts below each threshold, their median; the stored median
    score; the "over 100 scored" bound."""
    scores = [lens["score"] for lens in raw["gallery"]["real_lenses"]]
    assert len(tier_a.tier_a_scores(art)) == len(scores) == 112
    assert list(tier_a.tier_a_scores(art)["score"]) == scores
    for th in (0.3, 0.5, 0.9):
        assert tier_a.n_missed(art, th) == sum(s < th for s in scores)
    assert tier_a.n_missed(art) == sum(s < 0.3 for s in scores) == 12
    assert tier_a.median_score_from_lenses(art) == pytest.approx(float(np.median(scores)), abs=1e-12)
    assert tier_a.median_score(art) == raw["tier_a"]["real_lens"]["score_stats"]["median"]
    assert tier_a.n_scored_over(art, 100) == 100.0 and tier_a.n_scored_over(art, 111) == 111.0
    assert tier_a.n_scored_over(art, 112) == 112.0 and tier_a.n_scored_over(art, 150) == 112.0


# --- bright arcs: Table 6, Figure 4 ----------------------------------------------------------------------------

def _ba_counts(raw, variant, key="detection_rate_p03"):
    """{bin: (k, n)} from the JSON: the stored rate times n_scored is an integer count."""
    out = {}
    for b in raw["ba"][variant]["magnitude_bins"]:
        r = raw["ba"][variant]["results_by_bin"][b]
        k = r[key] * r["n_scored"]
        assert abs(k - round(k)) < 1e-6
        out[b] = (round(k), r["n_scored"])
    return out


@pytest.mark.parametrize("variant", BRIGHT_ARC_VARIANTS)
def test_bright_arc_rates_recounted_from_the_json(art, raw, variant):
    """Per bin: the detection count (rate × n_scored of the JSON, at p > 0.3 and p > 0.5), the rate, Wilson
    95 % (scipy), bin midpoint, medians; in the JSON's bin order."""
    for key in ("detection_rate_p03", "detection_rate_p05"):
        counts = _ba_counts(raw, variant, key)
        r = bright_arc.rates(art, variant, key) if key != "detection_rate_p03" else bright_arc.rates(art, variant)
        assert list(r["mag_bin"]) == list(counts)
        for _, row in r.iterrows():
            k, n = counts[row["mag_bin"]]
            src = raw["ba"][variant]["results_by_bin"][row["mag_bin"]]
            lo, hi = (float(x) for x in row["mag_bin"].split("-"))
            assert (row["n_detected"], row["n_scored"]) == (k, n)
            assert row["rate_pct"] == pytest.approx(100 * k / n, abs=1e-12)
            assert (row["wilson95_lo_pct"], row["wilson95_hi_pct"]) == pytest.approx(
                tuple(100 * x for x in _wilson(k, n)), abs=1e-9)
            assert row["mag_mid"] == pytest.approx(lo + 0.5) and hi == lo + 1
            assert (row["median_score"], row["median_arc_snr"]) == (src["median_score"], src["median_arc_snr"])
    counts = _ba_counts(raw, variant)
    for b, (k, n) in counts.items():
        assert bright_arc.rate_pct(art, variant, b) == pytest.approx(100 * k / n, abs=1e-12)
        assert bright_arc.median_score(art, variant, b) == raw["ba"][variant]["results_by_bin"][b]["median_score"]
    rates = {b: 100 * k / n for b, (k, n) in counts.items()}
    best = max(rates, key=rates.get)  # first on ties, as dict order is the bin order
    assert bright_arc.peak_bin_edge(art, variant) == float(best.split("-")[0])
    assert bright_arc.peak_bin_edge(art, variant, "hi") == float(best.split("-")[1])
    bright = [v for b, v in rates.items() if 18 <= float(b.split("-")[0]) and float(b.split("-")[1]) <= 22]
    assert bright_arc.rate_range_pct(art, variant) == min(bright)
    assert bright_arc.rate_range_pct(art, variant, stat="max") == max(bright)
    faint = [v for b, v in rates.items() if float(b.split("-")[0]) >= 23]
    assert bright_arc.rate_range_pct(art, variant, 23.0, 26.0, "max") == max(faint)


def test_bright_arc_table_and_stored_paired_rates(art, raw):
    """Table 6: one column per variant of the recounted rates; the baseline and Poisson columns equal the
    detection rates stored independently by the authors' paired diagnostics."""
    t = bright_arc.table(art)
    assert list(t.columns) == ["mag_bin", *BRIGHT_ARC_VARIANTS] and len(t) == 8
    for v in BRIGHT_ARC_VARIANTS:
        counts = _ba_counts(raw, v)
        assert list(t["mag_bin"]) == list(counts)
        assert np.allclose(t[v], [100 * k / n for k, n in counts.values()], atol=1e-12)
    t5 = bright_arc.table(art, "detection_rate_p05")
    assert np.allclose(t5["baseline"], [100 * k / n for k, n in _ba_counts(raw, "baseline", "detection_rate_p05")
                                        .values()], atol=1e-12)
    paired = raw["diag"]["paired_delta"]["results_by_bin"]
    for _, row in t.iterrows():
        p = paired[row["mag_bin"]]
        assert row["baseline"] == pytest.approx(100 * p["baseline_detection_rate"], abs=1e-9)
        assert row["poisson"] == pytest.approx(100 * p["poisson_detection_rate"], abs=1e-9)


def test_bright_arc_differences(art, raw):
    """Variant − reference gains (pp), the additive expectation baseline + ΔPoisson + Δclip20, the largest
    gain over bins and the noise-free control's largest |difference|, from the recounted rates."""
    rates = {v: {b: 100 * k / n for b, (k, n) in _ba_counts(raw, v).items()} for v in BRIGHT_ARC_VARIANTS}
    for b in rates["baseline"]:
        base = rates["baseline"][b]
        assert bright_arc.variant_gain_pp(art, "poisson", b) == pytest.approx(rates["poisson"][b] - base)
        assert bright_arc.variant_gain_pp(art, "clip20", b, "poisson") == pytest.approx(
            rates["clip20"][b] - rates["poisson"][b])
        assert bright_arc.additive_expectation_pct(art, b) == pytest.approx(
            rates["poisson"][b] + rates["clip20"][b] - base)
    for v in BRIGHT_ARC_VARIANTS:
        assert bright_arc.max_variant_gain_pp(art, v) == pytest.approx(
            max(rates[v][b] - rates["baseline"][b] for b in rates[v]))
        assert bright_arc.max_variant_gain_pp(art, "baseline", v) == pytest.approx(
            max(rates["baseline"][b] - rates[v][b] for b in rates[v]))
    assert bright_arc.max_variant_gain_pp(art) == pytest.approx(10.5)
    assert bright_arc.max_gain_control_difference_pp(art) == pytest.approx(
        max(abs(rates["baseline"][b] - rates["gain_1e12"][b]) for b in rates["baseline"]))


def test_recall_over_bright_arc_rate(art, raw):
    """The abstract's "factor of 2-3": Tier-A recall (100/112) over the max / min bright baseline rate."""
    rates = [100 * k / n for b, (k, n) in _ba_counts(raw, "baseline").items() if float(b.split("-")[1]) <= 22]
    recall = 100 * 100 / 112
    assert bright_arc.recall_over_rate(art) == pytest.approx(recall / max(rates))
    assert bright_arc.recall_over_rate(art, "min") == pytest.approx(recall / min(rates))
    rp = [100 * k / n for b, (k, n) in _ba_counts(raw, "poisson").items() if 19 <= float(b.split("-")[0])
          and float(b.split("-")[1]) <= 21]
    assert bright_arc.recall_over_rate(art, "max", "poisson", 19.0, 21.0, 0.5) == pytest.approx(
        100 * 94 / 112 / max(rp))


def test_bright_arc_argument_errors(art):
    """Bad ``stat`` / ``edge`` / bins raise ValueErrors that name the problem."""
    with pytest.raises(ValueError, match="stat must be 'min' or 'max', got 'mean'"):
        bright_arc.rate_range_pct(art, stat="mean")
    with pytest.raises(ValueError, match="no bright-arc bin of baseline lies inside 30.0-31.0"):
        bright_arc.rate_range_pct(art, mag_lo=30.0, mag_hi=31.0)
    with pytest.raises(ValueError, match="edge must be 'lo' or 'hi', got 'mid'"):
        bright_arc.peak_bin_edge(art, edge="mid")
    with pytest.raises(ValueError, match="no bright-arc bin '30-31' in baseline"):
        bright_arc.median_score(art, "baseline", "30-31")


# --- Poisson paired diagnostics: Table 7 ---------------------------------------------------------------------

def _sign_p(a, b):
    n = a + b
    return 1.0 if n == 0 else min(1.0, 2 * sum(math.comb(n, i) for i in range(min(a, b) + 1)) / 2 ** n)


def _mcnemar_ref(a, b):
    """Continuity-corrected McNemar χ² and its χ²₁ p (erfc); no discordant pairs → (0, 1)."""
    if a + b == 0:
        return 0.0, 1.0
    chi2 = (abs(a - b) - 1) ** 2 / (a + b)
    return chi2, math.erfc(math.sqrt(chi2 / 2))


def test_paired_table_recomputed(art, raw):
    """Table 7: per bin n, gained, lost, net = gained − lost (= the stored net crossings), Δ detection (pp),
    mean Δp, the exact sign test (brute-force binomial) and McNemar (textbook formula)."""
    res = raw["diag"]["paired_delta"]["results_by_bin"]
    t = poisson.paired_table(art)
    assert list(t["mag_bin"]) == list(res)
    assert list(t.columns) == ["mag_bin", "n", "gained", "lost", "sign_test_p", "net", "delta_detection_pct",
                               "mean_delta_p", "mcnemar_chi2", "mcnemar_p_chi2", "mcnemar_p_exact"]
    for _, row in t.iterrows():
        v = res[row["mag_bin"]]
        g, lost = v["n_gained_above_03"], v["n_lost_below_03"]
        assert (row["n"], row["gained"], row["lost"], row["net"]) == (v["n_paired"], g, lost, v["net_crossings"])
        assert row["delta_detection_pct"] == pytest.approx(
            100 * (v["poisson_detection_rate"] - v["baseline_detection_rate"]), abs=1e-9)
        assert row["delta_detection_pct"] == pytest.approx(100 * (g - lost) / v["n_paired"], abs=1e-9)
        assert row["mean_delta_p"] == v["mean_delta"]
        assert row["sign_test_p"] == pytest.approx(_sign_p(g, lost), rel=1e-9)
        assert poisson.sign_test_p(art, row["mag_bin"]) == pytest.approx(_sign_p(g, lost), rel=1e-9)
        chi2, p = _mcnemar_ref(g, lost)
        assert (row["mcnemar_chi2"], row["mcnemar_p_chi2"]) == pytest.approx((chi2, p), rel=1e-9, abs=1e-300)
        assert row["mcnemar_p_exact"] == pytest.approx(_sign_p(g, lost), rel=1e-9)


def test_pooled_mcnemar(art, raw):
    """Pooled over source mag 20-23 (the paper's 73 gained, 28 lost) and over all bins: sums of the stored
    gained / lost, McNemar χ² and p, the sign test."""
    res = raw["diag"]["paired_delta"]["results_by_bin"]
    for which, bins in (("20-23", ["20-21", "21-22", "22-23"]), ("all", list(res))):
        g = sum(res[b]["n_gained_above_03"] for b in bins)
        lost = sum(res[b]["n_lost_below_03"] for b in bins)
        a = poisson.aggregate(art, bins if which == "20-23" else None)
        assert (a["bins"], a["gained"], a["lost"]) == (bins, g, lost)
        chi2, p = _mcnemar_ref(g, lost)
        assert (a["chi2"], a["p_chi2"]) == pytest.approx((chi2, p), rel=1e-9)
        assert a["p_exact"] == pytest.approx(_sign_p(g, lost), rel=1e-9)
        assert a["sign_test_p"] == pytest.approx(_sign_p(g, lost), rel=1e-9)
        assert poisson.aggregate_chi2(art, which) == pytest.approx(chi2, rel=1e-9)
        assert poisson.aggregate_p(art, which) == pytest.approx(p, rel=1e-9)
        assert poisson.aggregate_count(art, which) == g
        assert poisson.aggregate_count(art, which, "lost") == lost
    assert (poisson.aggregate_count(art), poisson.aggregate_count(art, what="lost")) == (73, 28)
    assert poisson.aggregate_chi2(art) == pytest.approx(_mcnemar_ref(73, 28)[0])
    assert poisson.aggregate_p(art) == pytest.approx(_mcnemar_ref(73, 28)[1])
    with pytest.raises(ValueError, match="what must be 'gained' or 'lost', got 'net'"):
        poisson.aggregate_count(art, what="net")


def test_bonferroni_and_significant_bins(art, raw):
    """Bonferroni α / 8 bins; the bins with more gained than lost and sign-test p below it are 21-22 and
    22-23 (recomputed here), so the span is source mag 21-23 (§4.5)."""
    res = raw["diag"]["paired_delta"]["results_by_bin"]
    assert poisson.n_bins(art) == len(res) == 8
    assert poisson.bonferroni_threshold(art) == pytest.approx(0.05 / len(res))
    assert poisson.bonferroni_threshold(art, 0.01) == pytest.approx(0.01 / len(res))
    sig = [b for b, v in res.items() if v["n_gained_above_03"] > v["n_lost_below_03"]
           and _sign_p(v["n_gained_above_03"], v["n_lost_below_03"]) < 0.05 / len(res)]
    assert sig == ["21-22", "22-23"]
    assert poisson.significant_gain_mag_edge(art) == 21.0
    assert poisson.significant_gain_mag_edge(art, "hi") == 23.0
    assert math.isnan(poisson.significant_gain_mag_edge(art, alpha=1e-12))  # nothing that significant
    with pytest.raises(ValueError, match="edge must be 'lo' or 'hi', got 'x'"):
        poisson.significant_gain_mag_edge(art, "x")


@pytest.mark.parametrize("rows, lo, hi", [
    ([("20-21", 30, 2), ("21-22", 40, 3), ("23-24", 35, 1)], np.nan, np.nan),  # not contiguous
    ([("21-22", 40, 3), ("20-21", 30, 2)], 20.0, 22.0),                          # unsorted but contiguous
    ([("20-21", 3, 30), ("21-22", 40, 3)], 21.0, 22.0),                          # lost > gained is no gain
    ([("20-21", 12, 12), ("21-22", 40, 3)], 21.0, 22.0),                         # a tie is no gain
])
def test_significant_gain_span_rules(monkeypatch, rows, lo, hi):
    """Only bins with gained > lost and p < α / n_bins count, and they must form one contiguous span."""
    table = pd.DataFrame([{"mag_bin": b, "gained": g, "lost": lost, "sign_test_p": _sign_p(g, lost)}
                          for b, g, lost in rows])
    monkeypatch.setattr(poisson, "paired_table", lambda art: table)
    got = (poisson.significant_gain_mag_edge(None), poisson.significant_gain_mag_edge(None, "hi"))
    assert got == pytest.approx((lo, hi), nan_ok=True)


def test_photon_budget_from_first_principles():
    """§4.4's worked numbers from its inputs: an r = 21 arc over 90 pixels, gain 150 e⁻/nmgy, sky σ 0.002."""
    f = 10 ** ((22.5 - 21.0) / 2.5)  # nanomaggies, AB zero point 22.5
    per_pix = f / 90
    e = per_pix * 150
    want = {"f_tot_nmgy": f, "flux_per_pixel_nmgy": per_pix, "electrons_per_pixel": e,
            "poisson_sigma_e": math.sqrt(e), "poisson_sigma_nmgy": math.sqrt(e) / 150,
            "snr_sky": per_pix / 0.002, "snr_poisson": math.sqrt(e)}
    for q, v in want.items():
        assert poisson.photon_budget(None, 21.0, q) == pytest.approx(v, rel=1e-12), q
    assert poisson.photon_budget(None, 20.0, "electrons_per_pixel", arc_pixels=45.0, gain=300.0) == pytest.approx(
        10 ** 1.0 / 45 * 300, rel=1e-12)
    assert poisson.photon_budget(None, 20.0, "snr_sky", sky_sigma_nmgy=0.004) == pytest.approx(
        10 ** 1.0 / 90 / 0.004, rel=1e-12)
    with pytest.raises(ValueError, match="quantity must be one of f_tot_nmgy, flux_per_pixel_nmgy, .*got 'snr'"):
        poisson.photon_budget(None, 21.0, "snr")


# --- reducers on edited artefacts: cases the D06 files do not contain -----------------------------------------

class _EditedGrid:
    """The D06 artefacts with one condition's grid rows (and, optionally, its meta) edited by ``edit``."""

    def __init__(self, art, cond, edit=lambda df: df, meta=lambda m: m):
        self._art, self._cond, self._edit, self._meta = art, cond, edit, meta

    def grid(self, cond):
        df = self._art.grid(cond)
        return self._edit(df.copy()) if cond == self._cond else df

    def grid_meta(self, cond):
        m = json.loads(json.dumps(self._art.grid_meta(cond)))
        return self._meta(m) if cond == self._cond else m


def test_cell_counts_default_condition_first_threshold_and_single_injection_cells(art, raw):
    """cell_counts: the default condition is no_poisson (the Poisson grid edited to differ does not leak in); the
    cells are counted at the meta's first threshold only (another threshold's rows may be missing); a cell with
    a single injection is non-empty."""
    th0 = _thresholds(raw)[0]
    first = [r for r in raw["rows"]["no_poisson"] if r["threshold"] == th0 and r["bin"] == "all"]
    want = {"n_cells": len(first), "n_nonempty": sum(r["n"] > 0 for r in first),
            "n_injections": sum(r["n"] for r in first)}
    drop_poisson = _EditedGrid(art, "poisson", lambda df: df[df["theta_e"] != 0.5])
    assert grid.cell_counts(drop_poisson) == want
    n_05 = sum(r["theta_e"] == 0.5 for r in raw["rows"]["poisson"] if r["threshold"] == th0 and r["bin"] == "all")
    assert n_05 > 0
    assert grid.grid_cell_count(drop_poisson, "n_cells", "poisson") == want["n_cells"] - n_05
    second_gone = _EditedGrid(art, "no_poisson", lambda df: df[df["threshold"] != _thresholds(raw)[1]])
    assert grid.cell_counts(second_gone) == want
    first_n = next(r["n"] for r in first if r["n"] > 1)

    def one_injection(df):
        rows = df.index[np.isclose(df["threshold"], th0) & (df["source_mag_bin"] == "all")
                        & (df["n_injections"] > 1)]
        df.loc[rows[0], "n_injections"] = 1
        return df

    single = grid.cell_counts(_EditedGrid(art, "no_poisson", one_injection))
    assert single == {**want, "n_injections": want["n_injections"] - first_n + 1}


def test_completeness_map_keeps_a_theta_e_without_rows(art, raw):
    """A θ_E of the meta grid with no rows at all stays in the map, at its meta position, as a row of NaN."""
    edited = _EditedGrid(art, "no_poisson", lambda df: df[df["theta_e"] != 1.0])
    for axis in ("psf_fwhm", "depth_5sig"):
        m = grid.completeness_map(edited, axis)
        assert list(m.index) == raw["meta"]["no_poisson"]["grid"]["theta_e"]
        assert m.loc[1.0].isna().all() and m.drop(index=1.0).notna().any(axis=None)


def test_thresholds_without_rows_have_an_empty_type(art, raw):
    """A threshold listed in the meta but absent from the CSV keeps its place with an empty type."""
    edited = _EditedGrid(art, "no_poisson", meta=lambda m: {**m, "thresholds": [*m["thresholds"], 0.9]})
    got = grid.thresholds(edited)
    assert [t for t, _ in got] == [*_thresholds(raw), 0.9]
    assert got[-1] == (0.9, "") and all(ty for _, ty in got[:-1])


def test_marginal_detected_default_condition(art, raw):
    """marginal_detected with no condition counts the no-Poisson grid."""
    assert grid.marginal_detected(art) == _sum(raw, "no_poisson", 0.3)[0]
    assert grid.marginal_detected(art, threshold=0.5) == _sum(raw, "no_poisson", 0.5)[0]


def _two_proportion_p(k1, n1, k2, n2):
    """Pooled two-proportion z-test p, from the normal tail via erfc."""
    pool = (k1 + k2) / (n1 + n2)
    z = (k1 / n1 - k2 / n2) / math.sqrt(pool * (1 - pool) * (1 / n1 + 1 / n2))
    return math.erfc(abs(z) / math.sqrt(2))


def _crossover(raw, th):
    """(below, above) θ_E of a single change of sign of Δ = with − without Poisson, else (nan, nan)."""
    tes = sorted({r["theta_e"] for r in raw["rows"]["no_poisson"]})
    d = []
    for te in tes:
        (ka, na), (kb, nb) = (_sum(raw, c, th, where=lambda r, te=te: r["theta_e"] == te) for c in CONDITIONS)
        d.append(100 * kb / nb - 100 * ka / na)
    signs = [x > 0 for x in d]
    changes = [i for i in range(1, len(d)) if signs[i] != signs[i - 1]]
    if len(changes) != 1 or not signs[0] or any(x == 0 for x in d):
        return math.nan, math.nan
    return tes[changes[0] - 1], tes[changes[0]]


@pytest.mark.parametrize("th_index", [1, 4])  # 0.5: same Δ signs as 0.3 but other p; 0.995: Δ = 0 in two bins
def test_poisson_threshold_is_passed_on(art, raw, th_index):
    """The crossover, the bin counts and the p bound use the threshold they are given, not the default 0.3."""
    th = _thresholds(raw)[th_index]
    below, above = _crossover(raw, th)
    assert grid.poisson_crossover_theta_e(art, "below", th) == pytest.approx(below, nan_ok=True)
    assert grid.poisson_crossover_theta_e(art, "above", th) == pytest.approx(above, nan_ok=True)
    d = []
    for te in sorted({r["theta_e"] for r in raw["rows"]["no_poisson"]}):
        (ka, na), (kb, nb) = (_sum(raw, c, th, where=lambda r, te=te: r["theta_e"] == te) for c in CONDITIONS)
        d.append(kb / nb - ka / na)
    assert grid.poisson_theta_e_n_bins(art, "lowers", th) == sum(x < 0 for x in d)
    assert grid.poisson_theta_e_n_bins(art, "raises", th) == sum(x > 0 for x in d)
    p = _two_proportion_p(*_sum(raw, "no_poisson", th), *_sum(raw, "poisson", th))
    p03 = _two_proportion_p(*_sum(raw, "no_poisson", 0.3), *_sum(raw, "poisson", 0.3))
    bound = math.sqrt(p * p03) if p != p03 else 2 * p  # strictly between the two p (geometric mean)
    want = bound if p < bound else p
    assert grid.poisson_p_below(art, bound, th) == pytest.approx(want, rel=1e-6, abs=0.0)


def test_bright_arc_table_is_the_union_of_the_variants_bins(art, monkeypatch):
    """Table 6 joins the variants on the magnitude bin keeping every bin of any variant (NaN where a variant
    has no such bin), not only the bins all variants share."""
    def fake(variant):
        bins = ["18-19", "19-20", "20-21"] if variant == "baseline" else ["19-20", "20-21", "21-22"]
        k = {"18-19": 3, "19-20": 5, "20-21": 7, "21-22": 9}
        return {"magnitude_bins": bins,
                "results_by_bin": {b: {"n_scored": 20, "detection_rate_p03": k[b] / 20, "median_score": 0.5,
                                       "median_arc_snr": 10.0} for b in bins}}

    class Art:
        bright_arc = staticmethod(fake)

    t = bright_arc.table(Art()).set_index("mag_bin")
    assert sorted(t.index) == ["18-19", "19-20", "20-21", "21-22"]
    assert t.loc["18-19", "baseline"] == pytest.approx(15.0) and math.isnan(t.loc["18-19", "poisson"])
    assert t.loc["21-22", "gain_1e12"] == pytest.approx(45.0) and math.isnan(t.loc["21-22", "baseline"])
    assert t.loc["20-21", list(BRIGHT_ARC_VARIANTS)].to_list() == pytest.approx([35.0] * len(BRIGHT_ARC_VARIANTS))


def test_n_missed_counts_only_scores_below_the_threshold(monkeypatch):
    """Detected means p ≥ τ (PAPER_SPEC's scoring rule), so a lens scoring exactly τ is not missed."""
    scores = [0.3, 0.2999, 0.3001, 0.5, 0.5, 0.1]
    monkeypatch.setattr(tier_a, "tier_a_scores", lambda art: pd.DataFrame({"score": scores}))
    for th in (0.3, 0.5, 0.1, 0.05):
        assert tier_a.n_missed(None, th) == sum(1 for s in scores if not s >= th)


def test_n_scored_over_a_fractional_bound():
    """112 scored lenses are not "over 112.5" (nor over 112), but are over 111.5."""
    class Art:
        def tier_a_scoring(self):
            return {"recall_by_tier": {"tier_A": {"n_valid": 112}}}

    assert tier_a.n_scored_over(Art(), 112.5) == 112.0
    assert tier_a.n_scored_over(Art(), 112) == 112.0
    assert tier_a.n_scored_over(Art(), 111.5) == 111.5


def _significant_span(monkeypatch, rows, alpha=None):
    """significant_gain_mag_edge (lo, hi) for a paired table of (bin, gained, lost, sign-test p) rows, at the
    function's default α unless ``alpha`` is given."""
    table = pd.DataFrame([{"mag_bin": b, "gained": g, "lost": lost, "sign_test_p": p} for b, g, lost, p in rows])
    monkeypatch.setattr(poisson, "paired_table", lambda art: table)
    kw = {} if alpha is None else {"alpha": alpha}
    return (poisson.significant_gain_mag_edge(None, "lo", **kw), poisson.significant_gain_mag_edge(None, "hi", **kw))


def test_significant_gain_span_edge_cases(monkeypatch):
    """The default α is 0.05; p must be strictly below α / n_bins; a tie never counts, even when α admits every
    p; two significant bins with a gap between them are not a span."""
    p_mid = _sign_p(10, 5)  # 0.30: above 0.05 / 2, below 1.05 / 2
    assert 0.025 < p_mid < 0.5
    assert _significant_span(monkeypatch, [("20-21", 10, 5, p_mid), ("21-22", 40, 3, _sign_p(40, 3))]) == (21.0, 22.0)
    assert _significant_span(monkeypatch, [("20-21", 10, 5, p_mid), ("21-22", 40, 3, _sign_p(40, 3))],
                             alpha=1.0) == (20.0, 22.0)
    assert _significant_span(monkeypatch, [("20-21", 30, 2, 0.05 / 2), ("21-22", 40, 3, _sign_p(40, 3))]) == (
        21.0, 22.0)
    assert _significant_span(monkeypatch, [("20-21", 30, 2, 0.0249), ("21-22", 40, 3, _sign_p(40, 3))]) == (
        20.0, 22.0)
    assert _significant_span(monkeypatch, [("20-21", 12, 12, 1.0), ("21-22", 40, 3, _sign_p(40, 3))],
                             alpha=10.0) == (21.0, 22.0)
    got = _significant_span(monkeypatch, [("20-21", 30, 2, _sign_p(30, 2)), ("23-24", 35, 1, _sign_p(35, 1))])
    assert all(math.isnan(x) for x in got)


def test_theta_e_accessors_pass_the_threshold_on(art, raw):
    """theta_e_peak, theta_e_bin_injections and mag_bin_share_pct use the threshold they are given: with
    Poisson noise the peak moves between thresholds, and a grid whose p > 0.5 rows lack some cells has unequal
    θ_E bins and other bin shares at 0.5 only."""
    tes = raw["meta"]["poisson"]["grid"]["theta_e"]
    for th in _thresholds(raw):
        det = {te: _sum(raw, "poisson", th, where=lambda r, te=te: r["theta_e"] == te) for te in tes}
        assert grid.theta_e_peak(art, "poisson", th) == max(tes, key=lambda te: det[te][0] / det[te][1])
    cut = _EditedGrid(art, "no_poisson", lambda df: df[~((df["threshold"] == 0.5) & (df["theta_e"] == 0.5)
                                                           & (df["psf_fwhm"] == 1.8))])
    assert grid.theta_e_bin_injections(cut, threshold=0.3) == 10000.0
    assert math.isnan(grid.theta_e_bin_injections(cut, threshold=0.5))
    keep = lambda r: not (r["theta_e"] == 0.5 and r["psf_fwhm"] == 1.8)  # noqa: E731
    for b in grid.LENSED_BINS:
        n_b, n_all = _sum(raw, "no_poisson", 0.5, b, where=keep)[1], _sum(raw, "no_poisson", 0.5, where=keep)[1]
        assert grid.mag_bin_share_pct(cut, b, threshold=0.5) == pytest.approx(100 * n_b / n_all, abs=1e-12)


def test_bright_arc_range_bounds_and_peak_default(art, raw):
    """rate_range_pct: bounds within 1e-9 of a bin edge still include that bin; peak_bin_edge defaults to the
    baseline variant."""
    counts = _ba_counts(raw, "baseline")
    rates = {b: 100 * k / n for b, (k, n) in counts.items()}
    inside = [v for b, v in rates.items() if 20 <= float(b.split("-")[0]) and float(b.split("-")[1]) <= 21]
    assert len(inside) == 1
    assert bright_arc.rate_range_pct(art, "baseline", 20.0 + 1e-9, 21.0 - 1e-9) == inside[0]
    assert bright_arc.rate_range_pct(art, "baseline", 20.0 + 1e-9, 21.0 - 1e-9, "max") == inside[0]
    best = max(rates, key=rates.get)
    assert (bright_arc.peak_bin_edge(art), bright_arc.peak_bin_edge(art, edge="hi")) == tuple(
        float(x) for x in best.split("-"))


def test_recall_table_without_a_stored_fpr(art, raw):
    """A Tier-A threshold without a stored negatives FPR gets NaN there; the others keep theirs."""
    d = json.loads(json.dumps(raw["tier_a"]))
    labels = [k for k, v in d["recall_by_tier"]["tier_A"].items() if isinstance(v, dict)]
    fprs = d["negatives"]["fpr_at_thresholds"]
    gone = labels[-1]
    fprs.pop(gone)

    class Art:
        def tier_a_scoring(self):
            return d

    t = tier_a.recall_table(Art()).set_index("label")
    assert math.isnan(t.loc[gone, "fpr_negatives"])
    assert all(t.loc[lab, "fpr_negatives"] == fprs[lab] for lab in labels if lab != gone)


def test_threshold_type_is_read_from_the_first_row(art, raw):
    """thresholds() takes each threshold's type from its first CSV row (later rows cannot relabel it)."""
    def relabel(df):
        rows = df.index[df["threshold"] == 0.3]
        df.loc[rows[1:], "threshold_type"] = "relabelled"
        return df

    got = dict(grid.thresholds(_EditedGrid(art, "no_poisson", relabel)))
    assert got[0.3] == next(r["threshold_type"] for r in raw["rows"]["no_poisson"] if r["threshold"] == 0.3)


def test_theta_e_tables_defaults(art, raw):
    """by_theta_e defaults to the no-Poisson grid and poisson_theta_e_table to p > 0.3."""
    tes = raw["meta"]["no_poisson"]["grid"]["theta_e"]
    t = grid.by_theta_e(art)
    p = grid.poisson_theta_e_table(art)
    for te in tes:
        k, n = _sum(raw, "no_poisson", 0.3, where=lambda r, te=te: r["theta_e"] == te)
        kp, npp = _sum(raw, "poisson", 0.3, where=lambda r, te=te: r["theta_e"] == te)
        assert int(t.loc[t["theta_e"] == te, "n_detected"].iloc[0]) == k
        row = p.loc[p["theta_e"] == te].iloc[0]
        assert (row["no_poisson_pct"], row["poisson_pct"]) == pytest.approx((100 * k / n, 100 * kp / npp), abs=1e-12)


def test_select_defaults_and_tolerance_on_edited_rows(art, raw):
    """select keeps insufficient rows unless asked (an "all" row marked insufficient stays), and matches the
    threshold relatively (1e-9), with no absolute slack: 0.3 + 5e-9 matches nothing."""
    df = art.grid("no_poisson").copy()
    i = df.index[np.isclose(df["threshold"], 0.3) & (df["source_mag_bin"] == "all") & (df["n_injections"] > 0)][0]
    df.loc[i, "sufficient"] = False
    assert len(grid.select(df, 0.3)) == 220 and i in grid.select(df, 0.3).index
    assert i not in grid.select(df, 0.3, sufficient_only=True).index
    assert grid.select(df, 0.3 + 5e-9).empty and grid.select(df, 0.995 + 5e-9).empty


def test_by_theta_e_is_sorted_whatever_the_row_order(art, raw):
    """Table 4's rows come in increasing θ_E even when the CSV rows are in reverse order."""
    t = grid.by_theta_e(_EditedGrid(art, "no_poisson", lambda df: df.iloc[::-1]))
    assert list(t["theta_e"]) == sorted(raw["meta"]["no_poisson"]["grid"]["theta_e"])
    k, n = _sum(raw, "no_poisson", 0.3, where=lambda r: r["theta_e"] == t["theta_e"].iloc[0])
    assert (t["n_detected"].iloc[0], t["n_injected"].iloc[0]) == (k, n)

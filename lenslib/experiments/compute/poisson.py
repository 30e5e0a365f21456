"""§E.5: Poisson diagnostics from the bright-arc pairs and the two grids.

(a) paired per-injection Δp = p_poisson − p_baseline (same host, geometry and seed), gained/lost at p = 0.3 and
the mechanism label; (c) McNemar per bin and pooled; (d) the grids conditioned on θ_E and lensed magnitude at
τ = 0.3. Written as ``poisson_diagnostics/d06_poisson_diagnostics.json`` (F.8) and ``mcnemar_results.json`` (F.9).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lenslib._util import write_json
from lenslib.data.storage import open_store
from lenslib.experiments.artefacts import D06Artefacts
from lenslib.experiments.compute.inputs import RecomputeError
from lenslib.stats import mcnemar_test

THRESHOLD = 0.3
BINS_20_23 = ("20-21", "21-22", "22-23")


def mechanism(mean_delta: float, pct_positive: float, gained: int) -> str:
    """E.5 (a): the label the authors gave each bin's pattern of score changes."""
    if abs(mean_delta) > 0.02 and pct_positive > 60:
        return "B_systematic_uplift"
    if abs(mean_delta) > 0.02 and pct_positive < 40:
        return "B_systematic_decrease"
    if abs(mean_delta) < 0.01 and gained > 0:
        return "A_threshold_scatter"
    return "mixed"


def paired_delta(baseline: pd.DataFrame, poisson: pd.DataFrame) -> dict:
    """E.5 (a) from two ``injection_metadata_scored`` tables (columns mag_bin, host_idx, cnn_score)."""
    m = baseline.merge(poisson, on=["mag_bin", "host_idx"], suffixes=("_base", "_pois"))
    m = m[m["cnn_score_base"].notna() & m["cnn_score_pois"].notna()]
    if m.empty:
        raise RecomputeError("no paired bright-arc injections (baseline and poisson) to compare")
    by_bin, labels = {}, {}
    for b, g in m.groupby("mag_bin", sort=True):
        base, pois = g["cnn_score_base"], g["cnn_score_pois"]
        d = pois - base
        gained = int(((base < THRESHOLD) & (pois >= THRESHOLD)).sum())
        lost = int(((base >= THRESHOLD) & (pois < THRESHOLD)).sum())
        r = {"n_paired": len(g), "mean_delta": float(d.mean()), "median_delta": float(d.median()),
             "std_delta": float(d.std()), "pct_positive": 100.0 * float((d > 0).mean()),
             "pct_negative": 100.0 * float((d < 0).mean()), "pct_zero": 100.0 * float((d == 0).mean()),
             "p25_delta": float(d.quantile(0.25)), "p75_delta": float(d.quantile(0.75)),
             "min_delta": float(d.min()), "max_delta": float(d.max()),
             "n_gained_above_03": gained, "n_lost_below_03": lost, "net_crossings": gained - lost,
             "baseline_median_score": float(base.median()), "poisson_median_score": float(pois.median()),
             "baseline_detection_rate": float((base >= THRESHOLD).mean()),
             "poisson_detection_rate": float((pois >= THRESHOLD).mean())}
        by_bin[b] = r
        labels[b] = mechanism(r["mean_delta"], r["pct_positive"], gained)
    return {"n_total_paired": len(m), "results_by_bin": by_bin, "mechanism_assessment": labels}


def _counts(rows: pd.DataFrame) -> dict:
    n, k = int(rows["n_injections"].sum()), int(rows["n_detected"].sum())
    return {"n_injections": n, "n_detected": k, "completeness": k / n if n else float("nan")}


def conditioned_grid(grids: dict[str, pd.DataFrame]) -> dict:
    """E.5 (d) from the two ``selection_function.csv`` tables, at τ = 0.3, sufficient rows only."""
    by_condition = {}
    for cond, df in grids.items():
        d = df[np.isclose(df["threshold"], THRESHOLD) & df["sufficient"]]
        alls = d[d["source_mag_bin"] == "all"]
        lensed = d[d["source_mag_bin"].str.startswith("lensed_")]
        by_te = {f"{te:.2f}": _counts(g) for te, g in alls.groupby("theta_e", sort=True)}
        by_mag = {b: _counts(g) for b, g in lensed.groupby("source_mag_bin", sort=True)}
        cross = {f"{te:.2f}": {b: _counts(gb) for b, gb in g.groupby("source_mag_bin", sort=True)}
                 for te, g in lensed.groupby("theta_e", sort=True)}
        by_condition[cond] = {"by_theta_e": by_te, "by_lensed_mag": by_mag, "cross_tab_theta_e_x_lensed_mag": cross}

    def delta(key: str) -> dict:
        a, b = by_condition["no_poisson"][key], by_condition["poisson"][key]
        out = {}
        for k in a:
            if k in b:
                x, y = a[k]["completeness"], b[k]["completeness"]
                out[k] = {"no_poisson": x, "poisson": y, "delta_pp": 100.0 * (y - x), "poisson_helps": bool(y > x)}
        return out

    subset = {}
    for cond, c in by_condition.items():
        bins = {b: v for b, v in c["cross_tab_theta_e_x_lensed_mag"].get("1.50", {}).items()
                if b.startswith(("lensed_20", "lensed_21", "lensed_22"))}
        n = sum(v["n_injections"] for v in bins.values())
        k = sum(v["n_detected"] for v in bins.values())
        subset[cond] = {"theta_e": "1.50", "lensed_mag_range": "20-23", "bins": bins, "total_injections": n,
                        "total_detected": k, "completeness": k / n if n else float("nan")}
    return {"by_condition": by_condition, "poisson_delta_by_theta_e": delta("by_theta_e"),
            "poisson_delta_by_lensed_mag": delta("by_lensed_mag"), "conditioned_subset_te1p5_mag20_23": subset}


def mcnemar(paired: dict) -> dict:
    """F.9: McNemar per bin and pooled over 20–23 and over all bins."""
    per_bin = {}
    for b, r in paired["results_by_bin"].items():
        g, c = r["n_gained_above_03"], r["n_lost_below_03"]
        t = mcnemar_test(g, c)
        both = int(round(r["n_paired"] * r["baseline_detection_rate"])) - c
        per_bin[b] = {"n_paired": r["n_paired"], "gained_b": g, "lost_c": c, "both_detected": both,
                      "both_undetected": r["n_paired"] - both - g - c, "mcnemar_chi2": round(t["chi2"], 4),
                      "mcnemar_p_chi2": t["p_chi2"], "mcnemar_p_exact": t["p_exact"],
                      "baseline_det_rate": r["baseline_detection_rate"],
                      "poisson_det_rate": r["poisson_detection_rate"]}

    def pooled(bins: list[str]) -> dict:
        g = sum(per_bin[b]["gained_b"] for b in bins)
        c = sum(per_bin[b]["lost_c"] for b in bins)
        t = mcnemar_test(g, c)
        return {"bins_included": bins, "total_gained": g, "total_lost": c, "mcnemar_chi2": round(t["chi2"], 4),
                "mcnemar_p_chi2": t["p_chi2"], "mcnemar_p_exact": t["p_exact"]}

    return {"per_bin": per_bin, "aggregate_20_23": pooled([b for b in BINS_20_23 if b in per_bin]),
            "aggregate_all": pooled(list(per_bin))}


def write_poisson_diagnostics(results: Path) -> dict:
    """Both files of ``poisson_diagnostics/`` from ``ba_baseline``, ``ba_poisson`` and the two grids in ``results``."""
    art = D06Artefacts(open_store(str(results)))
    ba = {v: pd.read_parquet(results / f"ba_{v}" / "injection_metadata_scored.parquet")
          for v in ("baseline", "poisson")}
    paired = paired_delta(ba["baseline"], ba["poisson"])
    grids = {c: art.grid(c) for c in ("no_poisson", "poisson")}
    doc = {"paired_delta": paired, "conditioned_grid": conditioned_grid(grids)}
    write_json(results / "poisson_diagnostics" / "d06_poisson_diagnostics.json", doc)
    write_json(results / "poisson_diagnostics" / "mcnemar_results.json", mcnemar(paired))
    return doc

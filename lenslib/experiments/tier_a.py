"""Tier-A recall (paper Table 2): recall of the 112 validation Tier-A lenses at four thresholds."""

from __future__ import annotations

import re

import pandas as pd

from lenslib.experiments.artefacts import D06Artefacts
from lenslib.stats import jeffreys_interval, wilson_interval


def _threshold_value(label: str) -> float:
    """'p>0.806 (FPR-derived)' -> 0.806."""
    m = re.search(r"p\s*>\s*([0-9.]+)", label)
    if not m:
        raise ValueError(f"cannot read a threshold from label {label!r}")
    return float(m.group(1))


def recall_table(art: D06Artefacts) -> pd.DataFrame:
    """Recall with Jeffreys 95 % intervals recomputed from the counts (Wilson beside them).

    Columns: threshold, recall_pct, n_detected, n_total, ci95_lo_pct, ci95_hi_pct,
    wilson_lo_pct, wilson_hi_pct, fpr_negatives, label.
    """
    d = art.tier_a_scoring()
    tier = d["recall_by_tier"]["tier_A"]
    n = int(tier["n_valid"])
    fpr = d["negatives"]["fpr_at_thresholds"]
    rows = []
    for label, entry in tier.items():
        if not isinstance(entry, dict):
            continue
        k = int(entry["n_detected"])
        lo, hi = jeffreys_interval(k, n)
        wlo, whi = wilson_interval(k, n)
        rows.append({
            "threshold": _threshold_value(label),
            "recall_pct": 100.0 * k / n,
            "n_detected": k,
            "n_total": n,
            "ci95_lo_pct": 100.0 * lo,
            "ci95_hi_pct": 100.0 * hi,
            "wilson_lo_pct": 100.0 * wlo,
            "wilson_hi_pct": 100.0 * whi,
            "fpr_negatives": float(fpr.get(label, float("nan"))),
            "label": label,
        })
    return pd.DataFrame(rows).sort_values("threshold").reset_index(drop=True)


def recall_pct(art: D06Artefacts, threshold: float = 0.3, fpr: float | None = None) -> float:
    """Recall (%) at ``threshold``, or at the grid's FPR-derived threshold rounded to 3 decimals (as the Tier-A
    scoring labels it, E.1 step 4) when ``fpr`` is given."""
    if fpr is not None:
        threshold = round(art.fpr_threshold(fpr), 3)
    t = recall_table(art)
    return float(t.loc[(t["threshold"] - threshold).abs() < 1e-9, "recall_pct"].iloc[0])


def recall_ci_pct(art: D06Artefacts, threshold: float = 0.3, bound: str = "lo") -> float:
    t = recall_table(art)
    row = t.loc[(t["threshold"] - threshold).abs() < 1e-9].iloc[0]
    return float(row["ci95_lo_pct" if bound == "lo" else "ci95_hi_pct"])


def n_detected(art: D06Artefacts, threshold: float = 0.3) -> int:
    t = recall_table(art)
    return int(t.loc[(t["threshold"] - threshold).abs() < 1e-9, "n_detected"].iloc[0])


def tier_a_scores(art: D06Artefacts) -> pd.DataFrame:
    """Per-lens Tier-A scores and total r magnitudes (from the gallery data)."""
    return pd.DataFrame(art.gallery_data()["real_lenses"])


def median_score(art: D06Artefacts) -> float:
    return float(art.tier_a_scoring()["real_lens"]["score_stats"]["median"])


def median_score_from_lenses(art: D06Artefacts) -> float:
    """Median of the 112 per-lens scores (gallery data, rounded to 4 decimals there)."""
    return float(tier_a_scores(art)["score"].median())


def n_missed(art: D06Artefacts, threshold: float = 0.3) -> int:
    """Tier-A lenses below the threshold, counted from the per-lens scores."""
    return int((tier_a_scores(art)["score"] < threshold).sum())


def missed_pct(art: D06Artefacts, threshold: float = 0.3) -> float:
    """Tier-A lenses missed at ``threshold``, in % of the scored ones (the paper's 12/112 = 10.7 per cent)."""
    n = int(art.tier_a_scoring()["recall_by_tier"]["tier_A"]["n_valid"])
    return 100.0 * (n - n_detected(art, threshold)) / n


def missed_wilson_pct(art: D06Artefacts, bound: str = "lo", threshold: float = 0.3) -> float:
    """Wilson 95 % interval of the missed fraction, in %."""
    n = int(art.tier_a_scoring()["recall_by_tier"]["tier_A"]["n_valid"])
    lo, hi = wilson_interval(n - n_detected(art, threshold), n)
    return 100.0 * (lo if bound == "lo" else hi)


def recall_ci_width_pp(art: D06Artefacts, threshold: float = 0.3, method: str = "jeffreys") -> float:
    """Width (pp) of the 95 % interval of the Tier-A recall at ``threshold`` (§5.4: "spanning approximately
    11 percentage points"); ``method`` ``jeffreys`` (the intervals Table 2 prints, labelled Wilson there:
    PAPER_SPEC §I.1) or ``wilson``."""
    if method not in ("jeffreys", "wilson"):
        raise ValueError(f"method must be 'jeffreys' or 'wilson', got {method!r}")
    t = recall_table(art)
    row = t.loc[(t["threshold"] - threshold).abs() < 1e-9].iloc[0]
    lo, hi = ("ci95_lo_pct", "ci95_hi_pct") if method == "jeffreys" else ("wilson_lo_pct", "wilson_hi_pct")
    return float(row[hi] - row[lo])


def n_scored_over(art: D06Artefacts, bound: int) -> float:
    """A printed lower bound on the number of scored Tier-A lenses (§6: "over 100"): ``bound`` itself when
    more than ``bound`` lenses were scored, else the number scored (which then disagrees with the bound)."""
    n = int(art.tier_a_scoring()["recall_by_tier"]["tier_A"]["n_valid"])
    return float(bound) if n > int(bound) else float(n)

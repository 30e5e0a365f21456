"""Selection-function grid (paper Tables 3, 4, 8 and Figures 1, 2) from ``selection_function.csv``.

Completeness of a selection = Σ n_detected / Σ n_injections over the chosen CSV rows
(PAPER_SPEC §E.2 items 8–10). Rows are chosen by threshold, ``source_mag_bin`` and n > 0.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lenslib.experiments.artefacts import D06Artefacts
from lenslib.stats import jeffreys_interval, two_proportion_test, wilson_interval

LENSED_BINS = ("lensed_18-20", "lensed_20-22", "lensed_22-24", "lensed_24-27")
SOURCE_BINS = ("23-24", "24-25", "25-26")


def select(df: pd.DataFrame, threshold: float, source_mag_bin: str = "all",
           sufficient_only: bool = False) -> pd.DataFrame:
    """Rows at one threshold (matched to 1e-9 relative) and one magnitude bin, with n > 0."""
    m = np.isclose(df["threshold"].to_numpy(float), threshold, rtol=1e-9, atol=0.0)
    m &= (df["source_mag_bin"] == source_mag_bin).to_numpy() & (df["n_injections"] > 0).to_numpy()
    if sufficient_only:
        m &= df["sufficient"].to_numpy(bool)
    return df[m]


def _summary(rows: pd.DataFrame) -> dict:
    k, n = int(rows["n_detected"].sum()), int(rows["n_injections"].sum())
    pct = 100.0 * k / n if n else np.nan
    jlo, jhi = jeffreys_interval(k, n)
    wlo, whi = wilson_interval(k, n)
    return {"n_detected": k, "n_injections": n, "completeness_pct": pct,
            "jeffreys95_lo_pct": 100 * jlo, "jeffreys95_hi_pct": 100 * jhi,
            "wilson95_lo_pct": 100 * wlo, "wilson95_hi_pct": 100 * whi}


def marginal(art: D06Artefacts, condition: str = "no_poisson", threshold: float = 0.3) -> dict:
    """Marginal completeness over all non-empty cells (the paper's headline number)."""
    return _summary(select(art.grid(condition), threshold))


def _tau(art: D06Artefacts, threshold: float, fpr: float | None) -> float:
    """``threshold``, or the grid's threshold derived for the target FPR ``fpr`` when that is given."""
    return threshold if fpr is None else art.fpr_threshold(fpr)


def marginal_pct(art: D06Artefacts, condition: str = "no_poisson", threshold: float = 0.3,
                 fpr: float | None = None) -> float:
    return marginal(art, condition, _tau(art, threshold, fpr))["completeness_pct"]


def marginal_detected(art: D06Artefacts, condition: str = "no_poisson", threshold: float = 0.3,
                      fpr: float | None = None) -> int:
    return marginal(art, condition, _tau(art, threshold, fpr))["n_detected"]


def thresholds(art: D06Artefacts) -> list[tuple[float, str]]:
    """(threshold, threshold_type) in the grid's meta order: 0.3, 0.5, 0.7, FPR 1e-3, FPR 1e-4."""
    df = art.grid("no_poisson")
    first = df.drop_duplicates("threshold")[["threshold", "threshold_type"]]
    order = art.grid_meta("no_poisson")["thresholds"]
    types = dict(zip(first["threshold"], first["threshold_type"], strict=True))
    return [(t, types.get(t, "")) for t in order]


def thresholds_table(art: D06Artefacts) -> pd.DataFrame:
    """Table 3: completeness without and with Poisson noise at each threshold; deficit in pp."""
    rows = []
    for t, ttype in thresholds(art):
        a, b = marginal(art, "no_poisson", t), marginal(art, "poisson", t)
        rows.append({
            "threshold": t,
            "no_poisson_pct": a["completeness_pct"],
            "poisson_pct": b["completeness_pct"],
            "deficit_pp": b["completeness_pct"] - a["completeness_pct"],
            "threshold_type": ttype,
            "n_detected_no_poisson": a["n_detected"],
            "n_detected_poisson": b["n_detected"],
            "n_injections": a["n_injections"],
        })
    return pd.DataFrame(rows)


def deficit_pp(art: D06Artefacts, threshold: float = 0.3, fpr: float | None = None) -> float:
    return marginal_pct(art, "poisson", threshold, fpr) - marginal_pct(art, "no_poisson", threshold, fpr)


def by_theta_e(art: D06Artefacts, condition: str = "no_poisson", threshold: float = 0.3) -> pd.DataFrame:
    """Table 4: completeness per θ_E (Σ over the non-empty PSF × depth cells)."""
    rows = select(art.grid(condition), threshold)
    out = [{"theta_e": te, **_summary(g)} for te, g in rows.groupby("theta_e", sort=True)]
    df = pd.DataFrame(out).rename(columns={"n_injections": "n_injected"})
    return df[["theta_e", "completeness_pct", "n_detected", "n_injected",
               "jeffreys95_lo_pct", "jeffreys95_hi_pct", "wilson95_lo_pct", "wilson95_hi_pct"]]


def theta_e_pct(art: D06Artefacts, theta_e: float, condition: str = "no_poisson", threshold: float = 0.3) -> float:
    t = by_theta_e(art, condition, threshold)
    return float(t.loc[np.isclose(t["theta_e"], theta_e), "completeness_pct"].iloc[0])


def by_mag_bin(art: D06Artefacts, condition: str = "no_poisson", threshold: float = 0.3,
               bins: tuple[str, ...] = LENSED_BINS, sufficient_only: bool = False) -> pd.DataFrame:
    """Completeness per lensed (or source) magnitude bin.

    ``sufficient_only=True`` is the analysis scripts' aggregation (cell-bins with n ≥ 10, as the
    paper's text quotes); False is the figure's (every cell-bin with n > 0).
    """
    df = art.grid(condition)
    out = [{"mag_bin": b, **_summary(select(df, threshold, b, sufficient_only))} for b in bins]
    return pd.DataFrame(out)


def mag_bin_pct(art: D06Artefacts, mag_bin: str, condition: str = "no_poisson", threshold: float = 0.3,
                sufficient_only: bool = False) -> float:
    t = by_mag_bin(art, condition, threshold, (mag_bin,), sufficient_only)
    return float(t["completeness_pct"].iloc[0])


def mag_bin_share_pct(art: D06Artefacts, mag_bin: str, condition: str = "no_poisson",
                      threshold: float = 0.3) -> float:
    """Share of all injections that fall in one magnitude bin, in %."""
    n_bin = by_mag_bin(art, condition, threshold, (mag_bin,))["n_injections"].iloc[0]
    return 100.0 * n_bin / marginal(art, condition, threshold)["n_injections"]


def completeness_map(art: D06Artefacts, axis: str, condition: str = "no_poisson",
                     threshold: float = 0.3) -> pd.DataFrame:
    """θ_E × ``axis`` (``psf_fwhm`` or ``depth_5sig``) map of completeness in %, NaN where empty."""
    if axis not in ("psf_fwhm", "depth_5sig"):
        raise ValueError(f"axis must be 'psf_fwhm' or 'depth_5sig', got {axis!r}")
    rows = select(art.grid(condition), threshold)
    g = rows.groupby(["theta_e", axis])[["n_detected", "n_injections"]].sum()
    pct = (100.0 * g["n_detected"] / g["n_injections"]).unstack(axis)
    meta = art.grid_meta(condition)["grid"]
    return pct.reindex(index=meta["theta_e"], columns=meta[axis])


def poisson_theta_e_table(art: D06Artefacts, threshold: float = 0.3) -> pd.DataFrame:
    """Table 8: completeness per θ_E without/with Poisson noise and the difference in pp."""
    a, b = by_theta_e(art, "no_poisson", threshold), by_theta_e(art, "poisson", threshold)
    df = pd.DataFrame({
        "theta_e": a["theta_e"],
        "no_poisson_pct": a["completeness_pct"],
        "poisson_pct": b["completeness_pct"].to_numpy(),
    })
    df["delta_pp"] = df["poisson_pct"] - df["no_poisson_pct"]
    df["relative_change_pct"] = 100.0 * df["delta_pp"] / df["no_poisson_pct"]
    return df


def poisson_relative_change_pct(art: D06Artefacts, theta_e: float, threshold: float = 0.3) -> float:
    t = poisson_theta_e_table(art, threshold)
    return float(t.loc[np.isclose(t["theta_e"], theta_e), "relative_change_pct"].iloc[0])


def poisson_test(art: D06Artefacts, threshold: float = 0.3) -> dict:
    """Two-proportion z-test: no-Poisson vs Poisson marginal completeness (z, CI of the difference, pp)."""
    a, b = marginal(art, "no_poisson", threshold), marginal(art, "poisson", threshold)
    r = two_proportion_test(a["n_detected"], a["n_injections"], b["n_detected"], b["n_injections"])
    return {**r, "diff_pp": 100 * r["diff"], "ci95_lo_pp": 100 * r["ci95_lo"], "ci95_hi_pp": 100 * r["ci95_hi"]}


def poisson_z(art: D06Artefacts, threshold: float = 0.3) -> float:
    return poisson_test(art, threshold)["z"]


def poisson_diff_ci_pp(art: D06Artefacts, bound: str = "lo", threshold: float = 0.3) -> float:
    return poisson_test(art, threshold)["ci95_lo_pp" if bound == "lo" else "ci95_hi_pp"]


def cell_counts(art: D06Artefacts, condition: str = "no_poisson") -> dict:
    """Cells, non-empty cells and injections, counted from the CSV (checked against the meta)."""
    df = art.grid(condition)
    first = art.grid_meta(condition)["thresholds"][0]
    allrows = df[np.isclose(df["threshold"], first) & (df["source_mag_bin"] == "all")]
    return {"n_cells": len(allrows), "n_nonempty": int((allrows["n_injections"] > 0).sum()),
            "n_injections": int(allrows["n_injections"].sum())}


def tier_a_gap_pp(art: D06Artefacts) -> float:
    """Tier-A recall minus injection completeness at p > 0.3 (the paper's ~84 pp gap)."""
    from lenslib.experiments.tier_a import recall_pct

    return recall_pct(art, 0.3) - marginal_pct(art, "no_poisson", 0.3)

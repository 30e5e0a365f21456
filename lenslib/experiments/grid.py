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


def poisson_crossover_theta_e(art: D06Artefacts, side: str = "below", threshold: float = 0.3) -> float:
    """The θ_E bracket of the Poisson crossover of Table 8 (§4.4: "between θ_E = 1.25 and 1.50"):
    ``below`` is the largest θ_E at which Poisson noise raises completeness, ``above`` the smallest at which
    it lowers it. NaN unless Δ > 0 below the crossover and Δ < 0 above it (a single change of sign)."""
    if side not in ("below", "above"):
        raise ValueError(f"side must be 'below' or 'above', got {side!r}")
    t = poisson_theta_e_table(art, threshold).sort_values("theta_e")
    d = t["delta_pp"].to_numpy()
    k = int(np.argmax(d <= 0)) if (d <= 0).any() else len(d)
    if k == 0 or k == len(d) or not ((d[:k] > 0).all() and (d[k:] < 0).all()):
        return float("nan")
    return float(t["theta_e"].iloc[k - 1 if side == "below" else k])


def poisson_theta_e_n_bins(art: D06Artefacts, effect: str = "lowers", threshold: float = 0.3) -> int:
    """How many θ_E bins of Table 8 Poisson noise ``lowers`` (Δ < 0) or ``raises`` (Δ > 0) the completeness
    in (§4.4: the degradation dominates in "7 of 11 bins")."""
    if effect not in ("lowers", "raises"):
        raise ValueError(f"effect must be 'lowers' or 'raises', got {effect!r}")
    d = poisson_theta_e_table(art, threshold)["delta_pp"]
    return int((d < 0).sum() if effect == "lowers" else (d > 0).sum())


def poisson_test(art: D06Artefacts, threshold: float = 0.3) -> dict:
    """Two-proportion z-test: no-Poisson vs Poisson marginal completeness (z, CI of the difference, pp)."""
    a, b = marginal(art, "no_poisson", threshold), marginal(art, "poisson", threshold)
    r = two_proportion_test(a["n_detected"], a["n_injections"], b["n_detected"], b["n_injections"])
    return {**r, "diff_pp": 100 * r["diff"], "ci95_lo_pp": 100 * r["ci95_lo"], "ci95_hi_pp": 100 * r["ci95_hi"]}


def poisson_z(art: D06Artefacts, threshold: float = 0.3) -> float:
    return poisson_test(art, threshold)["z"]


def poisson_diff_ci_pp(art: D06Artefacts, bound: str = "lo", threshold: float = 0.3) -> float:
    return poisson_test(art, threshold)["ci95_lo_pp" if bound == "lo" else "ci95_hi_pp"]


def poisson_p_below(art: D06Artefacts, bound: float, threshold: float = 0.3) -> float:
    """A printed upper bound on the two-proportion p of :func:`poisson_test` (§4.4: "p < 10^-50"), checked:
    ``bound`` itself when p < ``bound``, else p (which then disagrees with the printed bound)."""
    p = float(poisson_test(art, threshold)["p_value"])
    return float(bound) if p < float(bound) else p


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


# --- single numbers of §4.2 (the numbers audit's claims) -----------------------------------------------------

def grid_cell_count(art: D06Artefacts, what: str = "n_cells", condition: str = "no_poisson") -> int:
    """One count of :func:`cell_counts`: ``n_cells`` (385), ``n_nonempty`` (220), ``n_empty`` (165) or
    ``n_injections`` (110 000)."""
    c = cell_counts(art, condition)
    c["n_empty"] = c["n_cells"] - c["n_nonempty"]
    if what not in c:
        raise ValueError(f"what must be one of {sorted(c)}, got {what!r}")
    return int(c[what])


def marginal_ci_pct(art: D06Artefacts, bound: str = "lo", condition: str = "no_poisson", threshold: float = 0.3,
                    method: str = "wilson") -> float:
    """95 % interval of the marginal completeness, in % (``method`` ``wilson`` or ``jeffreys``)."""
    if bound not in ("lo", "hi") or method not in ("wilson", "jeffreys"):
        raise ValueError(f"bound must be 'lo' or 'hi' and method 'wilson' or 'jeffreys', got {bound!r}, {method!r}")
    return float(marginal(art, condition, threshold)[f"{method}95_{bound}_pct"])


def theta_e_peak(art: D06Artefacts, condition: str = "no_poisson", threshold: float = 0.3) -> float:
    """The θ_E (arcsec) of the largest completeness in :func:`by_theta_e` (the paper: 2.5″)."""
    t = by_theta_e(art, condition, threshold)
    return float(t.loc[t["completeness_pct"].idxmax(), "theta_e"])


def theta_e_bin_injections(art: D06Artefacts, condition: str = "no_poisson", threshold: float = 0.3) -> float:
    """The number of injections in every θ_E bin when all bins hold the same number (10 000), else NaN."""
    n = by_theta_e(art, condition, threshold)["n_injected"].unique()
    return float(n[0]) if len(n) == 1 else float("nan")


def mag_bin_count(art: D06Artefacts, mag_bin: str, column: str = "n_detected", condition: str = "no_poisson",
                  threshold: float = 0.3, sufficient_only: bool = False) -> int:
    """``n_detected`` or ``n_injections`` of one magnitude bin (as :func:`mag_bin_pct` aggregates it)."""
    if column not in ("n_detected", "n_injections"):
        raise ValueError(f"column must be 'n_detected' or 'n_injections', got {column!r}")
    return int(by_mag_bin(art, condition, threshold, (mag_bin,), sufficient_only)[column].iloc[0])


def fpr_derived_threshold(art: D06Artefacts, fpr: float = 0.001) -> float:
    """The score threshold derived for the target FPR ``fpr`` (grid meta; the paper's 0.806 and 0.995)."""
    return art.fpr_threshold(fpr)

"""Statistics used by the paper, through scipy/statsmodels: binomial intervals and paired tests."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar as _mcnemar
from statsmodels.stats.proportion import proportion_confint, proportions_ztest


def jeffreys_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Equal-tailed Bayesian interval with the Jeffreys prior Beta(0.5, 0.5).

    This is what the D06 code computed (and what the paper prints, labelled "Wilson"):
    the Beta(k + 0.5, n − k + 0.5) quantiles, with no clamping at k = 0 or k = n.
    """
    lo, hi = jeffreys_intervals(k, n, level)
    return float(lo), float(hi)


def wilson_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval (statsmodels)."""
    if n <= 0:
        return (math.nan, math.nan)
    lo, hi = proportion_confint(k, n, alpha=1.0 - level, method="wilson")
    return float(lo), float(hi)


def sign_test(gained: int, lost: int) -> float:
    """Two-sided exact binomial (sign) test of gained vs lost with p = 1/2."""
    n = gained + lost
    if n == 0:
        return 1.0
    return float(stats.binomtest(gained, n, 0.5, alternative="two-sided").pvalue)


def mcnemar_test(gained: int, lost: int) -> dict[str, float]:
    """McNemar's test on the discordant pairs: χ² with continuity correction, and exact.

    Only the off-diagonal cells matter, so the concordant cells are set to 0. Without discordant pairs there is no
    evidence either way: χ² = 0 and both p = 1 (statsmodels would divide 0 by 0 and return p = 0).
    """
    if gained + lost == 0:
        return {"chi2": 0.0, "p_chi2": 1.0, "p_exact": 1.0}
    table = np.array([[0, gained], [lost, 0]])
    chi2 = _mcnemar(table, exact=False, correction=True)
    exact = _mcnemar(table, exact=True)
    return {"chi2": float(chi2.statistic), "p_chi2": float(chi2.pvalue), "p_exact": float(exact.pvalue)}


def two_proportion_test(k1: int, n1: int, k2: int, n2: int) -> dict[str, float]:
    """Pooled two-proportion z-test of p1 vs p2 and the unpooled 95 % interval on p1 − p2."""
    z, p = proportions_ztest([k1, k2], [n1, n2])
    p1, p2 = k1 / n1, k2 / n2
    se = math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)
    zc = stats.norm.ppf(0.975)
    return {"z": float(z), "p_value": float(p), "diff": p1 - p2,
            "ci95_lo": p1 - p2 - zc * se, "ci95_hi": p1 - p2 + zc * se}


def jeffreys_intervals(k: np.ndarray, n: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """:func:`jeffreys_interval` for arrays of counts at once (one scipy call for all; NaN where n ≤ 0): the
    Beta(k + 0.5, n − k + 0.5) quantiles at (1 − level)/2 and (1 + level)/2."""
    k, n = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
    ok = n > 0
    a = (1.0 - level) / 2.0
    kk, nn = np.where(ok, k, 0.0), np.where(ok, n, 1.0)
    lo = stats.beta.ppf(a, kk + 0.5, nn - kk + 0.5)
    hi = stats.beta.ppf(1.0 - a, kk + 0.5, nn - kk + 0.5)
    return np.where(ok, lo, np.nan), np.where(ok, hi, np.nan)

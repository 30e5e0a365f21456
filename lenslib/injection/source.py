"""Elliptical Sérsic source: b_n and the analytic total flux (Graham & Driver 2005).

Radius convention of lenstronomy's ``SERSIC_ELLIPSE``: R = √(q x′² + y′²/q) (the product-average
radius), so ``R_sersic`` is the half-light radius of that elliptical radius. A source with a
major-axis half-light radius R_e has R_sersic = R_e·√q.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.special import gammaincinv, gammaln

BN_METHODS = ("ciotti_bertin", "exact", "leading")


def sersic_bn(n: Any, method: str = "ciotti_bertin") -> np.ndarray:
    """b_n such that R_sersic encloses half the light.

    ``ciotti_bertin``: the asymptotic series of Ciotti & Bertin (1999) to O(n⁻⁴);
    ``exact``: Γ(2n) P(2n, b) = Γ(2n)/2 solved by scipy's gammaincinv;
    ``leading``: 2n − 1/3 (what the D06 engine used)."""
    n = np.asarray(n, dtype=float)
    if method == "exact":
        return gammaincinv(2 * n, 0.5)
    if method == "leading":
        return 2 * n - 1 / 3
    if method == "ciotti_bertin":
        return (2 * n - 1 / 3 + 4 / (405 * n) + 46 / (25515 * n**2) + 131 / (1148175 * n**3)
                - 2194697 / (30690717750 * n**4))
    raise ValueError(f"b_n method must be one of {BN_METHODS}, got {method!r}")


def sersic_total_flux_factor(n: Any, R_sersic: Any, bn: Any) -> np.ndarray:
    """∫ exp(−b((R/R_s)^{1/n} − 1)) dA = 2π n R_s² e^b Γ(2n) / b^{2n} (for R = √(q x² + y²/q))."""
    n, R, b = (np.asarray(v, dtype=float) for v in (n, R_sersic, bn))
    return np.exp(math.log(2 * math.pi) + np.log(n) + 2 * np.log(R) + b + gammaln(2 * n) - 2 * n * np.log(b))

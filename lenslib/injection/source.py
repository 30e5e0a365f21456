"""Elliptical Sérsic source: b_n and the analytic total flux (Graham & Driver 2005).

Radius convention of lenstronomy's ``SERSIC_ELLIPSE``: R = √(q x′² + y′²/q) (the product-average
radius), so ``R_sersic`` is the half-light radius of that elliptical radius. A source with a
major-axis half-light radius R_e has R_sersic = R_e·√q.

Both functions take floats, numpy arrays or tensors and return the same kind, so the engine
computes them on the device without a round trip to the host (except ``exact`` b_n, which needs
scipy).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from scipy.special import gammaincinv, gammaln

BN_METHODS = ("ciotti_bertin", "exact", "leading", "lenstronomy")


def sersic_bn(n: Any, method: str = "ciotti_bertin") -> Any:
    """b_n such that R_sersic encloses half the light.

    ``ciotti_bertin``: the asymptotic series of Ciotti & Bertin (1999) to O(n⁻⁴);
    ``exact``: Γ(2n) P(2n, b) = Γ(2n)/2 solved by scipy's gammaincinv;
    ``leading``: 2n − 1/3 (what the D06 engine used);
    ``lenstronomy``: 1.9992 n − 0.3271 (lenstronomy's linear fit, for like-for-like cross-checks)."""
    if method not in BN_METHODS:
        raise ValueError(f"b_n method must be one of {BN_METHODS}, got {method!r}")
    if not isinstance(n, torch.Tensor):
        n = np.asarray(n, dtype=float)
    if method == "exact":
        if isinstance(n, torch.Tensor):
            return torch.as_tensor(gammaincinv(2 * n.detach().cpu().double().numpy(), 0.5), dtype=n.dtype,
                                   device=n.device)
        return gammaincinv(2 * n, 0.5)
    if method == "leading":
        return 2 * n - 1 / 3
    if method == "lenstronomy":
        return 1.9992 * n - 0.3271
    return (2 * n - 1 / 3 + 4 / (405 * n) + 46 / (25515 * n**2) + 131 / (1148175 * n**3)
            - 2194697 / (30690717750 * n**4))


def sersic_log_total_flux_factor(n: Any, R_sersic: Any, bn: Any) -> Any:
    """log ∫ exp(−b((R/R_s)^{1/n} − 1)) dA = log(2π n R_s² e^b Γ(2n) / b^{2n}) for R = √(q x² + y²/q)."""
    if isinstance(n, torch.Tensor):
        return (math.log(2 * math.pi) + torch.log(n) + 2 * torch.log(R_sersic) + bn + torch.lgamma(2 * n)
                - 2 * n * torch.log(bn))
    n, R, b = (np.asarray(v, dtype=float) for v in (n, R_sersic, bn))
    return math.log(2 * math.pi) + np.log(n) + 2 * np.log(R) + b + gammaln(2 * n) - 2 * n * np.log(b)


def sersic_total_flux_factor(n: Any, R_sersic: Any, bn: Any) -> Any:
    """∫ exp(−b((R/R_s)^{1/n} − 1)) dA (see :func:`sersic_log_total_flux_factor`)."""
    log = sersic_log_total_flux_factor(n, R_sersic, bn)
    return torch.exp(log) if isinstance(log, torch.Tensor) else np.exp(log)

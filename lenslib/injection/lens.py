"""SIE + external shear deflection, with lenstronomy's conventions.

Ellipticity: e = (1 − q)/(1 + q), e1 = e cos 2φ, e2 = e sin 2φ; φ is the major axis angle from +x.
θ_E is lenstronomy ``SIE``'s Einstein radius (the product-average one): the deflection in the lens
frame (x′ along the major axis) is (Kormann, Schneider & Bartelmann 1994; Keeton 2001, core 0)

    α′x = θ_E √q / f · arctan(f x′ / ψ),  α′y = θ_E √q / f · artanh(f y′ / ψ),
    f = √(1 − q²),  ψ = √(q² x′² + y′²),

which tends to the SIS α = θ_E r̂ as q → 1 (handled exactly). External shear about the origin:
α = (γ1 x + γ2 y, γ2 x − γ1 y), as lenstronomy ``SHEAR`` with ra_0 = dec_0 = 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from lenslib.injection._tensor import tensors

_Q_SPHERICAL = 1e-6  # |1 − q| below this uses the SIS form


def ellipticity_to_phi_q(e1: torch.Tensor, e2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    phi = 0.5 * torch.atan2(e2, e1)
    c = torch.sqrt(e1 * e1 + e2 * e2).clamp(max=0.9999)
    return phi, (1 - c) / (1 + c)


def rotate(x: torch.Tensor, y: torch.Tensor, phi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Coordinates in a frame whose x′ axis points at angle φ from +x."""
    c, s = torch.cos(phi), torch.sin(phi)
    return c * x + s * y, -s * x + c * y


def phi_q_to_ellipticity(phi: Any, q: Any) -> tuple[Any, Any]:
    """(φ, q) → (e1, e2), lenstronomy's definition; works on floats, arrays and tensors."""
    e = (1 - q) / (1 + q)
    mod = torch if isinstance(phi, torch.Tensor) else np
    return e * mod.cos(2 * phi), e * mod.sin(2 * phi)


def sie_lens_frame(xp: torch.Tensor, yp: torch.Tensor, theta_E: torch.Tensor, q: torch.Tensor):
    tiny = torch.finfo(xp.dtype).tiny ** 0.5
    spherical = (1 - q).abs() < _Q_SPHERICAL
    # eager: the SIS form only when a lens needs it; compiled: both forms, no data-dependent branch
    compiling = torch.compiler.is_compiling()
    any_spherical = compiling or bool(spherical.any())
    if any_spherical:
        r_inv = theta_E / torch.sqrt(xp * xp + yp * yp).clamp_min(tiny)
        ax_sis, ay_sis = xp * r_inv, yp * r_inv
        if not compiling and bool(spherical.all()):
            return ax_sis, ay_sis
        q = torch.where(spherical, torch.full_like(q, 0.5), q)  # any q < 1 keeps the unused branch finite
    f = torch.sqrt((1 - q) * (1 + q))
    k = torch.addcmul(yp * yp, q * q, xp * xp).clamp_min_(tiny * tiny).rsqrt_() * f  # f / ψ
    pref = theta_E * torch.sqrt(q) / f
    ax = pref * (xp * k).atan_()  # pref may have more batch dimensions than the positions
    ay = pref * (yp * k).clamp_(-1 + 1e-7, 1 - 1e-7).atanh_()
    if any_spherical:
        return torch.where(spherical, ax_sis, ax), torch.where(spherical, ay_sis, ay)
    return ax, ay


def deflection(x: Any, y: Any, *, theta_E: Any, e1: Any, e2: Any, gamma1: Any = 0.0, gamma2: Any = 0.0,
               center_x: Any = 0.0, center_y: Any = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Deflection (α_x, α_y) in arcsec of an SIE plus external shear at positions (x, y) in arcsec.

    All arguments broadcast against each other (e.g. x, y of shape (H, W) with parameters of
    shape (B, 1, 1) give (B, H, W))."""
    x, y, theta_E, e1, e2, gamma1, gamma2, center_x, center_y = tensors(
        x, y, theta_E, e1, e2, gamma1, gamma2, center_x, center_y)
    phi, q = ellipticity_to_phi_q(e1, e2)
    axp, ayp = sie_lens_frame(*rotate(x - center_x, y - center_y, phi), theta_E, q)
    ax, ay = rotate(axp, ayp, -phi)  # back to the sky frame
    return ax + gamma1 * x + gamma2 * y, ay + gamma2 * x - gamma1 * y

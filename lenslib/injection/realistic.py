"""Realistic lensed-source galaxies: seeded, clumpy, irregular, star-forming, as pixelated g, r, z stamps.

A source is drawn from its own seed (``numpy.random.default_rng([seed, STREAM])``), so it does not depend on
the batch it is made in. Each has, in the source plane:

- a red compact core (Gaussian, σ ≈ 0.05–0.1″, g−r ≈ 0.9) holding 5–20 % of the light;
- an exponential disc (R_e 0.3–0.8″, axis ratio 0.35–1, g−r ≈ 0.55, r−z ≈ 0.35);
- 2–8 blue star-forming knots (Gaussians σ 0.04–0.12″, within 1.5 R_e, g−r ≈ 0.15, r−z ≈ 0.05) holding 30–70 % of the
  light, scattered lopsidedly over the disc (their cloud is shifted by up to 0.6 R_e in a random direction);
- with probability 0.3, an offset irregular companion (a smaller disc 0.4–0.9″ away, 10–30 % of the light).

So the colour changes across the source (blue knots on a redder disc) and the light is asymmetric — what
the Sérsic injections of the paper lack. The stamps are normalised to unit r-band flux; g and z carry the
colours (flux ratios 10^(−0.4 (g−r)) and 10^(0.4 (r−z))). These numbers are choices for a synthetic world,
loosely matched to HST images of z ≈ 1–2 star-forming galaxies, not measurements.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

STREAM = 20_261  # the second entry of each source's seed sequence: keeps these draws apart from others
MAX_KNOTS = 8


@dataclass(frozen=True)
class RealisticSourceSpec:
    """Stamp geometry and the ranges the galaxies are drawn from."""

    size: int = 80  # pixels per side (4″ at 0.05″)
    pixscale: float = 0.05  # arcsec per source-plane pixel
    disc_re: tuple[float, float] = (0.3, 0.8)
    knot_frac: tuple[float, float] = (0.3, 0.7)
    knots: tuple[int, int] = (2, MAX_KNOTS)  # inclusive
    companion_prob: float = 0.3

    def __post_init__(self) -> None:
        if self.size < 8 or not self.pixscale > 0:
            raise ValueError(f"realistic source stamps need size >= 8 and pixscale > 0, got {self.size}, "
                             f"{self.pixscale}")
        if not 1 <= self.knots[0] <= self.knots[1] <= MAX_KNOTS:
            raise ValueError(f"knots must be within 1..{MAX_KNOTS}, got {self.knots}")


def _colour_ratios(g_r: np.ndarray, r_z: np.ndarray) -> np.ndarray:
    """(…, 3) band flux per unit r flux for colours g−r and r−z."""
    return np.stack([10 ** (-0.4 * g_r), np.ones_like(g_r), 10 ** (0.4 * r_z)], axis=-1)


def _gauss(x: np.ndarray, y: np.ndarray, cx: np.ndarray, cy: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Unit-flux circular Gaussians (N, S, S) per arcsec² at centres (N,)."""
    s2 = sigma[:, None, None] ** 2
    return np.exp(-((x - cx[:, None, None]) ** 2 + (y - cy[:, None, None]) ** 2) / (2 * s2)) / (2 * np.pi * s2)


def _disc(x, y, cx, cy, re, q, phi) -> np.ndarray:
    """Exponential discs (N, S, S), unnormalised (peak 1)."""
    c, s = np.cos(phi)[:, None, None], np.sin(phi)[:, None, None]
    dx, dy = x - cx[:, None, None], y - cy[:, None, None]
    u, v = c * dx + s * dy, -s * dx + c * dy
    r = np.sqrt(q[:, None, None] * u**2 + v**2 / q[:, None, None])
    return np.exp(-1.678 * r / re[:, None, None])


def _unit(img: np.ndarray) -> np.ndarray:
    return img / img.sum((-2, -1), keepdims=True)


def realistic_sources(seeds: np.ndarray | list[int], spec: RealisticSourceSpec = RealisticSourceSpec()) -> np.ndarray:
    """Stamps (N, 3, size, size) float32 of the galaxies of ``seeds`` (one int each), unit r-band flux.

    Row i of a stamp is y = (i − (size−1)/2)·pixscale arcsec, column j is x, as in the engine."""
    seeds = np.atleast_1d(np.asarray(seeds, dtype=np.int64))
    n, s = len(seeds), spec.size
    c = (np.arange(s) - (s - 1) / 2) * spec.pixscale
    y, x = np.meshgrid(c, c, indexing="ij")
    # every draw of a source from its own generator, in a fixed order (a source does not depend on its batch)
    d = np.empty((n, 32 + 5 * MAX_KNOTS))  # 30 draws per source + 5 per knot, 2 spare
    for k, seed in enumerate(seeds):
        d[k] = np.random.default_rng([int(seed), STREAM]).random(d.shape[1])
    u = iter(d.T)

    def lo_hi(lo, hi):
        return lo + (hi - lo) * next(u)

    def normal(mu, sd):  # Box–Muller from two uniforms
        return mu + sd * np.sqrt(-2 * np.log(1 - next(u))) * np.cos(2 * np.pi * next(u))

    re, q, phi = lo_hi(*spec.disc_re), lo_hi(0.35, 1.0), lo_hi(0, np.pi)
    core_frac, core_sigma = lo_hi(0.05, 0.2), lo_hi(0.05, 0.1)
    knot_frac = lo_hi(*spec.knot_frac)
    n_knots = np.floor(lo_hi(spec.knots[0], spec.knots[1] + 1)).astype(int)
    shift, shift_dir = lo_hi(0.0, 0.6) * re, lo_hi(0, 2 * np.pi)
    has_comp = next(u) < spec.companion_prob
    comp_frac, comp_dist, comp_dir, comp_re = lo_hi(0.1, 0.3), lo_hi(0.4, 0.9), lo_hi(0, 2 * np.pi), lo_hi(0.1, 0.25)
    disc_col = _colour_ratios(normal(0.55, 0.12), normal(0.35, 0.1))
    core_col = _colour_ratios(normal(0.9, 0.1), normal(0.5, 0.1))
    knot_col = _colour_ratios(normal(0.15, 0.1), normal(0.05, 0.1))
    comp_col = _colour_ratios(normal(0.4, 0.15), normal(0.25, 0.1))
    zeros = np.zeros(n)

    comp_frac = np.where(has_comp, comp_frac, 0.0)
    disc_frac = np.clip(1 - core_frac - knot_frac - comp_frac, 0.05, None)
    out = np.zeros((n, 3, s, s))
    out += (disc_frac[:, None] * disc_col)[..., None, None] * _unit(_disc(x, y, zeros, zeros, re, q, phi))[:, None]
    out += (core_frac[:, None] * core_col)[..., None, None] * _unit(_gauss(x, y, zeros, zeros, core_sigma))[:, None]
    cx0, cy0 = shift * np.cos(shift_dir), shift * np.sin(shift_dir)
    knots = [(lo_hi(0.0, 1.5) * re, lo_hi(0, 2 * np.pi), lo_hi(0.04, 0.12), lo_hi(0.2, 1.0), next(u))
             for _ in range(MAX_KNOTS)]
    w = np.stack([np.where(k < n_knots, kn[3], 0.0) for k, kn in enumerate(knots)], 1)
    w *= (knot_frac / w.sum(1))[:, None]
    for k, (r, ang, sig, _, _) in enumerate(knots):
        blob = _unit(_gauss(x, y, cx0 + r * np.cos(ang), cy0 + r * np.sin(ang), sig))
        out += (w[:, k, None] * knot_col)[..., None, None] * blob[:, None]
    cx, cy = comp_dist * np.cos(comp_dir), comp_dist * np.sin(comp_dir)
    comp = _unit(_disc(x, y, cx, cy, comp_re, np.full(n, 0.7), comp_dir))
    out += (comp_frac[:, None] * comp_col)[..., None, None] * comp[:, None]
    out /= out[:, 1].sum((-2, -1))[:, None, None, None]
    return out.astype(np.float32)

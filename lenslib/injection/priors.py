"""Injection priors: read from YAML (the project's ``params/injection_priors.yaml`` or the authors'
``configs/injection_priors.yaml``, the same format) and drawn in the paper's order.

Draw order (PAPER_SPEC D.6), one ``numpy.random.Generator`` per sequence, lens before source:
lens γ1, γ2, x0, y0, q_L, φ_L; source β_frac = √U(lo², hi²) (area-weighted), position angle,
R_e, n, q_S, φ_S, m_r, g−r, r−z, then u < clumps_prob decides clumps (n ~ integers(lo, hi),
flux fraction ~ U). Sequential draws per injection mean a batch of N equals N single draws from the
same generator, so a run reproduces whatever batch size it is cut into.

Clump geometry is not specified by the paper (clumps are off in every paper run). Here each clump
is a circular Gaussian with σ = 0.3 R_e at an offset N(0, 0.5 R_e) per axis from the source centre,
drawn from the same generator after the clump count and flux fraction; the fraction is shared
equally between the clumps and the Sérsic part keeps the rest.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lenslib import LenslibError, ParamError
from lenslib._util import read_yaml_mapping
from lenslib.injection.errors import InjectionParamsError
from lenslib.survey import mag_to_nmgy

UNRESTRICTED_BETA_FRAC = (0.1, 1.0)
CLUMP_SIGMA_RE = 0.3
CLUMP_OFFSET_RE = 0.5


class PriorsError(LenslibError):
    """An injection-priors file or override is malformed."""


@dataclass(frozen=True)
class InjectionPriors:
    """Ranges and distributions of the injected lens and source parameters (D06 defaults)."""

    r_mag_range: tuple[float, float] = (23.0, 26.0)
    beta_frac_range: tuple[float, float] = (0.10, 0.40)
    re_arcsec_range: tuple[float, float] = (0.15, 0.50)
    n_range: tuple[float, float] = (0.5, 2.0)
    q_range: tuple[float, float] = (0.3, 1.0)
    g_minus_r_mu_sigma: tuple[float, float] = (1.15, 0.30)
    r_minus_z_mu_sigma: tuple[float, float] = (0.85, 0.20)
    clumps_prob: float = 0.0
    clumps_n_range: tuple[int, int] = (1, 4)
    clumps_frac_range: tuple[float, float] = (0.15, 0.45)
    shear_sigma: float = 0.05
    center_sigma_arcsec: float = 0.05
    q_lens_range: tuple[float, float] = (0.5, 1.0)
    source: str = field(default="defaults", compare=False)

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name.endswith("_range") or f.name.endswith("_mu_sigma"):
                if len(v) != 2 or not all(isinstance(x, (int, float)) and math.isfinite(x) for x in v):
                    raise PriorsError(f"{self.source}: {f.name} must be two finite numbers, got {v!r}")
                if f.name.endswith("_range") and not v[0] <= v[1]:
                    raise PriorsError(f"{self.source}: {f.name} must be [low, high] with low <= high, got {list(v)}")
                object.__setattr__(self, f.name, tuple(v))
        checks = {"beta_frac_range": self.beta_frac_range[0] >= 0, "re_arcsec_range": self.re_arcsec_range[0] > 0,
                  "n_range": self.n_range[0] > 0, "q_range": 0 < self.q_range[0] and self.q_range[1] <= 1,
                  "q_lens_range": 0 < self.q_lens_range[0] and self.q_lens_range[1] <= 1,
                  "clumps_prob": 0 <= self.clumps_prob <= 1, "shear_sigma": self.shear_sigma >= 0,
                  "center_sigma_arcsec": self.center_sigma_arcsec >= 0,
                  "clumps_n_range": self.clumps_n_range[0] >= 1 and self.clumps_n_range[1] > self.clumps_n_range[0]}
        for name, ok in checks.items():
            if not ok:
                raise PriorsError(f"{self.source}: {name} = {getattr(self, name)!r} is out of its valid range")

    @property
    def max_clumps(self) -> int:
        return int(self.clumps_n_range[1]) - 1 if self.clumps_prob > 0 else 0

    @classmethod
    def from_yaml(cls, path: str | Path) -> InjectionPriors:
        """Read the ``source_params`` and ``lens_params`` sections (other sections, e.g. the authors'
        ``model2_conditioning`` and ``preprocessing``, are not priors and are ignored)."""
        path = Path(path)
        try:
            doc = read_yaml_mapping(path)
        except ParamError as exc:
            raise PriorsError(f"injection priors: {exc}") from None
        if not any(k in doc for k in ("source_params", "lens_params")):
            raise PriorsError(f"{path}: expected 'source_params' and/or 'lens_params' sections")
        known = {f.name for f in fields(cls)} - {"source"}
        values: dict[str, Any] = {}
        for section in ("source_params", "lens_params"):
            for key, value in (doc.get(section) or {}).items():
                if key not in known:
                    raise PriorsError(f"{path}: unknown prior '{section}.{key}'; known: {sorted(known)}")
                values[key] = value
        return cls(**values, source=str(path))

    def override(self, **values: Any) -> InjectionPriors:
        """A copy with some priors replaced (e.g. ``beta_frac_range=UNRESTRICTED_BETA_FRAC``)."""
        unknown = set(values) - {f.name for f in fields(self)}
        if unknown:
            raise PriorsError(f"unknown prior(s) {sorted(unknown)}")
        return replace(self, **values)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("source")
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


#: the Sérsic indices the renderer supports (the b_n series and the profile's sampling hold there)
SERSIC_N_RANGE = (0.2, 10.0)
#: source r magnitudes accepted (AB): far beyond both ends of any injection (a sanity bound, not a prior)
R_MAG_RANGE = (10.0, 35.0)


PARAM_COLUMNS = ("theta_e", "shear_g1", "shear_g2", "lens_x", "lens_y", "q_lens", "phi_lens", "beta_frac",
                 "beta_x", "beta_y", "re_arcsec", "n_sersic", "q_source", "phi_source", "r_mag", "g_minus_r",
                 "r_minus_z", "n_clumps", "clump_frac")


@dataclass
class InjectionParams:
    """A batch of drawn injection parameters: one numpy array of length N per field.

    Angles in radians, positions in arcsec, R_e along the source's major axis, magnitudes AB.
    ``clumps`` is (N, K, 2) source-plane offsets from the source centre (K = max clumps; rows beyond
    ``n_clumps`` are unused)."""

    theta_e: np.ndarray
    shear_g1: np.ndarray
    shear_g2: np.ndarray
    lens_x: np.ndarray
    lens_y: np.ndarray
    q_lens: np.ndarray
    phi_lens: np.ndarray
    beta_frac: np.ndarray
    beta_x: np.ndarray
    beta_y: np.ndarray
    re_arcsec: np.ndarray
    n_sersic: np.ndarray
    q_source: np.ndarray
    phi_source: np.ndarray
    r_mag: np.ndarray
    g_minus_r: np.ndarray
    r_minus_z: np.ndarray
    n_clumps: np.ndarray
    clump_frac: np.ndarray
    clumps: np.ndarray

    def __len__(self) -> int:
        return len(self.theta_e)

    def validate(self) -> InjectionParams:
        """Check every physical parameter; raise :class:`InjectionParamsError` naming the first bad parameter and its
        injection index. Returns ``self``.

        θ_E ≥ 0 arcsec (0: the source is rendered unlensed, as the synthetic world's galaxies are), axis ratios
        0 < q ≤ 1, |shear| < 1, Sérsic index in [0.2, 10], R_e > 0 arcsec, r in [10, 35] mag, finite colours,
        positions and angles, clump fractions in [0, 1] and clump counts ≥ 0."""
        n = len(self)
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name != "clumps" and np.shape(v) != (n,):
                raise InjectionParamsError(f"{f.name} has shape {np.shape(v)}; expected ({n},) like theta_e")
        g = np.hypot(self.shear_g1, self.shear_g2)
        checks = [
            ("theta_e", self.theta_e >= 0, "finite and >= 0 arcsec"),
            ("q_lens", (self.q_lens > 0) & (self.q_lens <= 1), "in (0, 1]"),
            ("q_source", (self.q_source > 0) & (self.q_source <= 1), "in (0, 1]"),
            ("shear_g1/shear_g2", g < 1, "a shear of modulus < 1"),
            ("n_sersic", (self.n_sersic >= SERSIC_N_RANGE[0]) & (self.n_sersic <= SERSIC_N_RANGE[1]),
             f"in [{SERSIC_N_RANGE[0]}, {SERSIC_N_RANGE[1]}]"),
            ("re_arcsec", self.re_arcsec > 0, "finite and > 0 arcsec"),
            ("r_mag", (self.r_mag >= R_MAG_RANGE[0]) & (self.r_mag <= R_MAG_RANGE[1]),
             f"in [{R_MAG_RANGE[0]}, {R_MAG_RANGE[1]}] mag"),
            ("clump_frac", (self.clump_frac >= 0) & (self.clump_frac <= 1), "in [0, 1]"),
            ("n_clumps", self.n_clumps >= 0, "an integer >= 0"),
        ]
        for name in ("lens_x", "lens_y", "phi_lens", "beta_x", "beta_y", "phi_source", "g_minus_r", "r_minus_z",
                     "beta_frac"):
            checks.append((name, np.ones(n, bool), "finite"))
        for name, ok, what in checks:
            values = np.stack([getattr(self, k) for k in name.split("/")])
            bad = ~(ok & np.isfinite(values).all(axis=0))
            if bad.any():
                k = int(np.flatnonzero(bad)[0])
                got = ", ".join(f"{float(getattr(self, c)[k])!r}" for c in name.split("/"))
                raise InjectionParamsError(f"{name} must be {what}; injection {k} has {got}"
                                           + (f" ({int(bad.sum())} injections are out of range)" if bad.sum() > 1
                                              else ""))
        if not np.isfinite(self.clumps).all():
            raise InjectionParamsError("clumps: clump offsets must be finite")
        return self

    def fluxes_nmgy(self) -> np.ndarray:
        """(N, 3) total source fluxes in g, r, z: m_g = m_r + (g−r), m_z = m_r − (r−z)."""
        mags = np.stack([self.r_mag + self.g_minus_r, self.r_mag, self.r_mag - self.r_minus_z], axis=1)
        return mag_to_nmgy(mags)

    def with_r_mag(self, r_mag: Sequence[float] | np.ndarray) -> InjectionParams:
        """A copy with new r magnitudes (colours kept), as the bright-arc test rescales fluxes."""
        return replace(self, r_mag=np.asarray(r_mag, dtype=float) * np.ones(len(self)))

    def select(self, idx: Any) -> InjectionParams:
        return InjectionParams(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    def to_frame(self) -> pd.DataFrame:
        """One row per injection (clump offsets as clump{k}_x/_y columns)."""
        df = pd.DataFrame({c: getattr(self, c) for c in PARAM_COLUMNS})
        for k in range(self.clumps.shape[1]):
            df[f"clump{k}_x"], df[f"clump{k}_y"] = self.clumps[:, k, 0], self.clumps[:, k, 1]
        return df

    @classmethod
    def concat(cls, parts: Sequence[InjectionParams]) -> InjectionParams:
        k = max(p.clumps.shape[1] for p in parts)
        pad = [np.pad(p.clumps, ((0, 0), (0, k - p.clumps.shape[1]), (0, 0))) for p in parts]
        out = {f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls) if f.name != "clumps"}
        return cls(**out, clumps=np.concatenate(pad))


def _draw_one(rng: np.random.Generator, theta_e: float, p: InjectionPriors, k_max: int) -> list:
    g1, g2 = rng.normal(0.0, p.shear_sigma), rng.normal(0.0, p.shear_sigma)
    x0, y0 = rng.normal(0.0, p.center_sigma_arcsec), rng.normal(0.0, p.center_sigma_arcsec)
    q_l = rng.uniform(*p.q_lens_range)
    phi_l = rng.uniform(0.0, math.pi)
    lo, hi = p.beta_frac_range
    beta_frac = math.sqrt(rng.uniform(lo * lo, hi * hi))
    ang = rng.uniform(0.0, 2 * math.pi)
    beta = beta_frac * theta_e
    re = rng.uniform(*p.re_arcsec_range)
    n = rng.uniform(*p.n_range)
    q_s = rng.uniform(*p.q_range)
    phi_s = rng.uniform(0.0, 2 * math.pi)
    r_mag = rng.uniform(*p.r_mag_range)
    gr = rng.normal(*p.g_minus_r_mu_sigma)
    rz = rng.normal(*p.r_minus_z_mu_sigma)
    clumps = np.zeros((k_max, 2))
    n_cl, frac = 0, 0.0
    if rng.uniform() < p.clumps_prob:
        n_cl = int(rng.integers(*p.clumps_n_range))
        frac = rng.uniform(*p.clumps_frac_range)
        clumps[:n_cl] = rng.normal(0.0, CLUMP_OFFSET_RE * re, size=(n_cl, 2))
    return [theta_e, g1, g2, x0, y0, q_l, phi_l, beta_frac, beta * math.cos(ang), beta * math.sin(ang), re, n,
            q_s, phi_s, r_mag, gr, rz, n_cl, frac, clumps]


def draw(rng: np.random.Generator | int, theta_e: float | Sequence[float] | np.ndarray, priors: InjectionPriors,
         n: int | None = None) -> InjectionParams:
    """Draw injection parameters in the paper's order, one injection after another.

    ``theta_e`` is one Einstein radius (with ``n`` injections) or one per injection."""
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    te = np.atleast_1d(np.asarray(theta_e, dtype=float))
    if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0):
        raise PriorsError(f"n must be a whole number of injections >= 0, got {n!r}")
    if n is not None:
        if te.size != 1 and te.size != n:
            raise PriorsError(f"theta_e has {te.size} values for n = {n} injections")
        te = np.broadcast_to(te, (n,))
    if not np.all(np.isfinite(te)) or np.any(te <= 0):
        raise PriorsError(f"theta_e must be finite and > 0 arcsec, got {te[~(np.isfinite(te) & (te > 0))][:3]}")
    return params_from_rows([_draw_one(rng, float(t), priors, priors.max_clumps) for t in te], priors)


def draw_row(rng: np.random.Generator, theta_e: float, priors: InjectionPriors) -> list:
    """One injection's draws in the paper's order (what :func:`draw` makes for each injection), as a row for
    :func:`params_from_rows`: for loops that interleave other draws from the same generator between
    injections (the grid's host choice) and keep only some rows. ``theta_e`` in arcsec, finite and > 0."""
    if not (math.isfinite(theta_e) and theta_e > 0):
        raise PriorsError(f"theta_e must be finite and > 0 arcsec, got {theta_e!r}")
    return _draw_one(rng, theta_e, priors, priors.max_clumps)


def params_from_rows(rows: Sequence[list], priors: InjectionPriors) -> InjectionParams:
    """The :class:`InjectionParams` of rows made by :func:`draw_row` with these priors, in their order."""
    k_max = priors.max_clumps
    cols = list(zip(*rows, strict=True)) if rows else [()] * (len(PARAM_COLUMNS) + 1)
    out = {c: np.asarray(v, dtype=float) for c, v in zip(PARAM_COLUMNS, cols, strict=False)}
    out["n_clumps"] = out["n_clumps"].astype(int)
    clumps = np.stack(cols[-1]) if rows else np.zeros((0, k_max, 2))
    return InjectionParams(**out, clumps=clumps)

"""What is in a synthetic cutout: the parameters of each object's field (drawn) and its noise-free image (rendered).

Kinds of cutout (column ``kind``):

- ``lrg``: a luminous red galaxy at the centre (Sérsic n 3–5.5, de Vaucouleurs-like; g−r ≈ 1.65, r−z ≈ 0.9);
- confusers, all around such a galaxy unless said: ``ring_proxy`` (a smooth full or partial ring or shell,
  0.8–2.6″ radius, 0.1–0.3″ wide, r 19.5–22.5, with the colours of the paper's injection priors: in this
  world smooth red arcs around LRGs are common and are not lenses), ``spiral`` (a spiral galaxy instead of the LRG:
  bulge, two logarithmic arms, blue knots along them), ``blue_clumpy`` (1–4 compact blue companions 1.2–3.5″
  away), ``merger`` (a second red galaxy and a smooth tidal tail);
- ``lens``: an LRG whose light is joined by a lensed realistic source (rendered in :mod:`lenslib.synthetic.survey`).

Every field also has 0–3 neighbouring galaxies and 0–2 stars anywhere in the stamp. Images are in nmgy,
after the per-band Gaussian PSF (FWHM = psfsize_r × (1.05, 1, 0.94)); noise and masked pixels are added by
:func:`observe`. All draws come from one generator per population in a fixed order, so a survey depends only
on its seed and sizes, not on how it is cut into chunks.
"""

from __future__ import annotations

import numpy as np
import torch

from lenslib.injection import InjectionEngine, InjectionParams, gaussian_psf_fft, sigma_pix
from lenslib.survey import BAND_PSF_FACTORS, PIXSCALE, STAMP, mag_to_nmgy

CONFUSERS = ("ring_proxy", "spiral", "blue_clumpy", "merger")
CONFUSER_WEIGHTS = (0.5, 0.5 / 3, 0.5 / 3, 0.5 / 3)
BAND_NOISE_FACTORS = (0.6, 1.0, 2.2)  # sky σ of g and z relative to r (DR10-like: g deeper, z shallower)
MAX_NEIGHBOURS, MAX_STARS, MAX_KNOTS = 3, 2, 10


def colour_fluxes(r_mag, g_r, r_z) -> np.ndarray:
    """(…, 3) g, r, z fluxes in nmgy for an r magnitude and colours g−r, r−z."""
    f = mag_to_nmgy(np.asarray(r_mag, float))
    return np.stack([f * 10 ** (-0.4 * np.asarray(g_r)), f, f * 10 ** (0.4 * np.asarray(r_z))], -1)


def draw_fields(rng: np.random.Generator, kind: np.ndarray) -> dict[str, np.ndarray]:
    """The parameters of every object's field (one entry per object, arrays with a leading axis N)."""
    n = len(kind)
    u = lambda lo, hi, *shape: rng.uniform(lo, hi, (n, *shape))  # noqa: E731
    f: dict[str, np.ndarray] = {
        "host_r_mag": u(17.0, 19.5), "host_re": u(0.8, 2.2), "host_n": u(3.0, 5.5), "host_q": u(0.6, 1.0),
        "host_phi": u(0, np.pi), "host_gr": rng.normal(1.65, 0.12, n), "host_rz": rng.normal(0.9, 0.08, n),
        "host_dx": rng.normal(0, 0.05, n), "host_dy": rng.normal(0, 0.05, n),
        "n_neigh": rng.integers(0, MAX_NEIGHBOURS + 1, n), "neigh_r": u(19.0, 23.0, MAX_NEIGHBOURS),
        "neigh_pos": u(-12.0, 12.0, MAX_NEIGHBOURS, 2), "neigh_re": u(0.3, 1.2, MAX_NEIGHBOURS),
        "neigh_n": u(0.8, 4.0, MAX_NEIGHBOURS), "neigh_q": u(0.4, 1.0, MAX_NEIGHBOURS),
        "neigh_phi": u(0, np.pi, MAX_NEIGHBOURS), "neigh_gr": u(0.4, 1.7, MAX_NEIGHBOURS),
        "neigh_rz": u(0.2, 1.0, MAX_NEIGHBOURS),
        "n_star": rng.integers(0, MAX_STARS + 1, n), "star_r": u(16.5, 21.5, MAX_STARS),
        "star_pos": u(-12.5, 12.5, MAX_STARS, 2), "star_gr": u(0.3, 1.4, MAX_STARS), "star_rz": u(0.0, 0.6, MAX_STARS),
        # ring / shell
        "ring_radius": u(0.8, 2.6), "ring_width": u(0.1, 0.3), "ring_angle": u(0, 2 * np.pi),
        "ring_kappa": np.where(rng.random(n) < 0.3, 0.0, u(1.0, 6.0)), "ring_r": u(19.5, 22.5),
        "ring_gr": rng.normal(1.15, 0.3, n), "ring_rz": rng.normal(0.85, 0.2, n),
        # spiral
        "sp_pitch": u(0.25, 0.6), "sp_phase": u(0, 2 * np.pi), "sp_knots": rng.integers(4, MAX_KNOTS + 1, n),
        "sp_knot_t": u(0.0, 1.0, MAX_KNOTS), "sp_knot_arm": rng.integers(0, 2, (n, MAX_KNOTS)),
        "sp_knot_frac": u(0.2, 0.4),
        # blue companions
        "bc_n": rng.integers(1, 5, n), "bc_radius": u(1.2, 3.5, 4), "bc_angle": u(0, 2 * np.pi, 4),
        "bc_sigma": u(0.1, 0.3, 4), "bc_r": u(20.0, 22.5, 4), "bc_gr": rng.normal(0.25, 0.12, (n, 4)),
        # merger
        "mg_dist": u(1.5, 4.0), "mg_angle": u(0, 2 * np.pi), "mg_dr": u(0.5, 2.0),
        "tail_radius": u(2.0, 5.0), "tail_span": u(0.8, 2.5), "tail_width": u(0.3, 0.7), "tail_r": u(20.0, 22.0),
    }
    f["kind"] = np.asarray(kind)
    return f


def _sersic_params(x, y, r_mag, re, n, q, phi, gr, rz) -> InjectionParams:
    """Unlensed Sérsic galaxies as InjectionParams (θ_E = 0: the source plane is the image plane)."""
    zeros = np.zeros(len(x))
    return InjectionParams(
        theta_e=zeros, shear_g1=zeros, shear_g2=zeros, lens_x=zeros, lens_y=zeros, q_lens=np.ones(len(x)),
        phi_lens=zeros, beta_frac=zeros, beta_x=x, beta_y=y, re_arcsec=re, n_sersic=n, q_source=q, phi_source=phi,
        r_mag=r_mag, g_minus_r=gr, r_minus_z=rz, n_clumps=np.zeros(len(x), int), clump_frac=zeros,
        clumps=np.zeros((len(x), 0, 2)))


def _grid(nx: int = STAMP) -> tuple[np.ndarray, np.ndarray]:
    c = (np.arange(nx) - (nx - 1) / 2) * PIXSCALE
    y, x = np.meshgrid(c, c, indexing="ij")
    return x, y


def _unit(img: np.ndarray) -> np.ndarray:
    return img / np.maximum(img.sum((-2, -1), keepdims=True), 1e-30)


def _analytic(f: dict[str, np.ndarray], k: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pre-PSF (3, H, W) nmgy of object k's non-Sérsic parts (rings, arms, knots, tails) and stars."""
    kind = f["kind"][k]
    img = np.zeros((3,) + x.shape)
    cx, cy = f["host_dx"][k], f["host_dy"][k]
    r = np.hypot(x - cx, y - cy)
    theta = np.arctan2(y - cy, x - cx)
    if kind == "ring_proxy":
        prof = np.exp(-0.5 * ((r - f["ring_radius"][k]) / f["ring_width"][k]) ** 2)
        prof *= np.exp(f["ring_kappa"][k] * (np.cos(theta - f["ring_angle"][k]) - 1))
        img += colour_fluxes(f["ring_r"][k], f["ring_gr"][k], f["ring_rz"][k])[:, None, None] * _unit(prof)
    elif kind == "spiral":
        total = colour_fluxes(f["host_r_mag"][k] + 0.3, 0.7, 0.4)
        pitch, phase = f["sp_pitch"][k], f["sp_phase"][k]
        disc = np.exp(-r / (0.35 * f["host_re"][k] + 0.3))
        arms = (1 + np.cos(2 * (theta - np.log(np.maximum(r, 0.05)) / np.tan(pitch) - phase))) ** 2 / 4
        knot_frac = f["sp_knot_frac"][k]
        img += ((1 - knot_frac) * total)[:, None, None] * _unit(disc * (0.3 + arms))
        knots = np.zeros_like(r)
        for j in range(f["sp_knots"][k]):
            rr = 0.5 + 2.5 * f["sp_knot_t"][k, j]
            th = np.log(rr) / np.tan(pitch) + phase + np.pi * f["sp_knot_arm"][k, j]
            knots += _unit(np.exp(-0.5 * ((x - cx - rr * np.cos(th)) ** 2 + (y - cy - rr * np.sin(th)) ** 2) / 0.15**2))
        img += colour_fluxes(f["host_r_mag"][k] + 0.3 - 2.5 * np.log10(knot_frac), 0.2, 0.05)[:, None, None] \
            * _unit(knots)
    elif kind == "blue_clumpy":
        for j in range(f["bc_n"][k]):
            rr, th, s = f["bc_radius"][k, j], f["bc_angle"][k, j], f["bc_sigma"][k, j]
            blob = np.exp(-0.5 * ((x - cx - rr * np.cos(th)) ** 2 + (y - cy - rr * np.sin(th)) ** 2) / s**2)
            img += colour_fluxes(f["bc_r"][k, j], f["bc_gr"][k, j], 0.1)[:, None, None] * _unit(blob)
    elif kind == "merger":
        a = f["mg_angle"][k]
        # a tidal tail: a Gaussian tube along a circular arc that starts at the host and curls away
        rt = f["tail_radius"][k]
        ox, oy = cx + rt * np.cos(a + np.pi / 2), cy + rt * np.sin(a + np.pi / 2)
        rr = np.hypot(x - ox, y - oy)
        ang = np.mod(np.arctan2(y - oy, x - ox) - (a - np.pi / 2), 2 * np.pi)
        tube = np.exp(-0.5 * ((rr - rt) / f["tail_width"][k]) ** 2) * (ang < f["tail_span"][k])
        img += colour_fluxes(f["tail_r"][k], 1.3, 0.8)[:, None, None] * _unit(tube + 1e-12)
    # stars: point sources at the nearest pixel (blurred by the PSF with the rest)
    for j in range(f["n_star"][k]):
        i0, j0 = (np.round(f["star_pos"][k, j][::-1] / PIXSCALE + (x.shape[0] - 1) / 2)).astype(int)
        img[:, i0, j0] += colour_fluxes(f["star_r"][k, j], f["star_gr"][k, j], f["star_rz"][k, j])
    return img


def render_fields(f: dict[str, np.ndarray], idx: np.ndarray, psf: np.ndarray, engine: InjectionEngine) -> np.ndarray:
    """Noise-free images (len(idx), 3, H, W) float64 nmgy of the fields of objects ``idx``."""
    idx = np.asarray(idx)
    n = len(idx)
    kind = f["kind"][idx]
    # Sérsic galaxies (the central galaxy, a merger's second galaxy, neighbours), rendered unlensed by the engine
    owner, parts = [], []
    central = kind != "spiral"
    owner.append(idx[central])
    parts.append(_sersic_params(f["host_dx"][idx[central]], f["host_dy"][idx[central]], f["host_r_mag"][idx[central]],
                                f["host_re"][idx[central]], f["host_n"][idx[central]], f["host_q"][idx[central]],
                                f["host_phi"][idx[central]], f["host_gr"][idx[central]], f["host_rz"][idx[central]]))
    mg = idx[kind == "merger"]
    if len(mg):
        d, a = f["mg_dist"][mg], f["mg_angle"][mg]
        owner.append(mg)
        parts.append(_sersic_params(d * np.cos(a), d * np.sin(a), f["host_r_mag"][mg] + f["mg_dr"][mg],
                                    0.6 * f["host_re"][mg], f["host_n"][mg], f["host_q"][mg], f["host_phi"][mg] + 0.5,
                                    f["host_gr"][mg], f["host_rz"][mg]))
    for j in range(MAX_NEIGHBOURS):
        nb = idx[f["n_neigh"][idx] > j]
        if len(nb):
            owner.append(nb)
            parts.append(_sersic_params(f["neigh_pos"][nb, j, 0], f["neigh_pos"][nb, j, 1], f["neigh_r"][nb, j],
                                        f["neigh_re"][nb, j], f["neigh_n"][nb, j], f["neigh_q"][nb, j],
                                        f["neigh_phi"][nb, j], f["neigh_gr"][nb, j], f["neigh_rz"][nb, j]))
    owners = np.concatenate(owner)
    pos = np.searchsorted(idx, owners) if np.all(np.diff(idx) > 0) else np.array([np.flatnonzero(idx == o)[0]
                                                                                   for o in owners])
    gal, _ = engine.arcs(InjectionParams.concat(parts), psf[pos])
    out = np.zeros((n, 3, STAMP, STAMP))
    np.add.at(out, pos, gal.double().cpu().numpy())
    x, y = _grid()
    extra = np.stack([_analytic(f, k, x, y) for k in idx])
    fwhm = psf[:, None] * np.asarray(BAND_PSF_FACTORS)[None, :] / PIXSCALE
    out += gaussian_psf_fft(torch.as_tensor(extra), torch.as_tensor(fwhm)).numpy()
    return out


def observe(images: np.ndarray, psf: np.ndarray, psfdepth: np.ndarray, seeds: np.ndarray,
            mask_prob: float = 0.04) -> np.ndarray:
    """Sky noise (σ from each object's r PSF depth, g and z scaled by ``BAND_NOISE_FACTORS``) and, for a fraction
    ``mask_prob`` of the cutouts, a masked (NaN) bad column or edge patch in one band, as in real cutouts.
    One generator per object (``seeds``): its noise does not depend on the batch."""
    out = np.empty(images.shape, dtype=np.float32)
    sigma = sigma_pix(psfdepth, psf)[:, None] * np.asarray(BAND_NOISE_FACTORS)[None, :]
    h = images.shape[-1]
    for k in range(len(images)):
        rng = np.random.default_rng([int(seeds[k]), 7])
        img = images[k] + rng.normal(size=images[k].shape) * sigma[k][:, None, None]
        if rng.random() < mask_prob:
            band = rng.integers(0, 3)
            if rng.random() < 0.5:  # a bad column, 1–3 px wide
                c0 = rng.integers(0, h - 3)
                img[band, :, c0:c0 + rng.integers(1, 4)] = np.nan
            else:  # a masked patch at an edge
                w = rng.integers(5, 20)
                img[band, :w, :] = np.nan
        out[k] = img
    return out

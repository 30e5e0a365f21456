"""HEALPix spatial split (PAPER_SPEC A.5) and the exclusion of negatives near known lenses.

Pixel: nside 128, NESTED, of (ra, dec) — astropy-healpix ``lonlat_to_healpix`` (same as
healpy ``ang2pix(nside, radians(90 − dec), radians(ra), nest=True)``).
Split: h = first 4 bytes (big-endian) of SHA-256 of ``f"{pixel}_{seed}"`` / 2³²; the allocations
are taken in the order given (train, val, test) as cumulative thresholds. The paper's 70/30 "parity"
scheme then relabels test as val.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy_healpix import HEALPix

from lenslib import LenslibError

DEFAULT_ALLOCATIONS = {"train": 0.70, "val": 0.15, "test": 0.15}


class SplitError(LenslibError):
    """The spatial split is mis-specified or leaks between train and validation."""


def healpix_index(ra: Sequence[float] | np.ndarray, dec: Sequence[float] | np.ndarray, nside: int = 128,
                  nest: bool = True) -> np.ndarray:
    """HEALPix pixel of each (ra, dec) in degrees; raises on non-finite or out-of-range coordinates."""
    ra, dec = np.asarray(ra, dtype=float), np.asarray(dec, dtype=float)
    bad = ~np.isfinite(ra) | ~np.isfinite(dec) | (np.abs(dec) > 90)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise SplitError(f"{int(bad.sum())} positions are not valid sky coordinates (first: row {k}, "
                         f"ra={ra[k]!r}, dec={dec[k]!r})")
    hp = HEALPix(nside=nside, order="nested" if nest else "ring")
    return np.asarray(hp.lonlat_to_healpix(ra * u.deg, dec * u.deg), dtype=np.int64)


def split_hash(pixel: int, seed: int = 42) -> float:
    """h ∈ [0, 1): the first 32 bits of SHA-256(f"{pixel}_{seed}")."""
    digest = hashlib.sha256(f"{int(pixel)}_{int(seed)}".encode("ascii")).digest()
    return int.from_bytes(digest[:4], "big") / 2**32


def split_for_pixels(pixels: Sequence[int] | np.ndarray, seed: int = 42,
                     allocations: Mapping[str, float] = DEFAULT_ALLOCATIONS) -> np.ndarray:
    """Split name per pixel (hash computed once per distinct pixel)."""
    total = sum(allocations.values())
    if not np.isclose(total, 1.0) or any(v < 0 for v in allocations.values()):
        raise SplitError(f"split allocations must be >= 0 and sum to 1, got {dict(allocations)}")
    names = list(allocations)
    edges = np.cumsum([allocations[n] for n in names])
    pixels = np.asarray(pixels, dtype=np.int64)
    uniq, inv = np.unique(pixels, return_inverse=True)
    h = np.array([split_hash(p, seed) for p in uniq])
    idx = np.minimum(np.searchsorted(edges, h, side="right"), len(names) - 1)
    return np.asarray(names, dtype=object)[idx][inv]


def assign_splits(df: pd.DataFrame, *, nside: int = 128, seed: int = 42,
                  allocations: Mapping[str, float] = DEFAULT_ALLOCATIONS, parity_70_30: bool = True) -> pd.DataFrame:
    """A copy of ``df`` (columns ra, dec) with ``healpix_<nside>`` and ``split``; with ``parity_70_30``
    the test split is relabelled val (the paper's scheme)."""
    out = df.copy()
    pix = healpix_index(out["ra"].to_numpy(), out["dec"].to_numpy(), nside)
    out[f"healpix_{nside}"] = pix
    split = split_for_pixels(pix, seed, allocations)
    if parity_70_30:
        split = np.where(split == "test", "val", split)
    out["split"] = split
    return out


def check_no_shared_pixels(df: pd.DataFrame, *, tier: str | None = "A", nside: int = 128) -> dict[str, int]:
    """Raise :class:`SplitError` if any HEALPix pixel holds rows of both train and val (Tier-A rows
    only by default; the pixel is recomputed from ra, dec). Returns the pixel counts per split."""
    rows = df if tier is None else df[df["tier"] == tier]
    pix = pd.Series(healpix_index(rows["ra"].to_numpy(), rows["dec"].to_numpy(), nside), index=rows.index)
    by_split = {s: set(pix[rows["split"] == s]) for s in ("train", "val")}
    shared = by_split["train"] & by_split["val"]
    if shared:
        raise SplitError(f"{len(shared)} HEALPix pixels hold both train and val rows"
                         f"{'' if tier is None else f' (tier {tier})'}: e.g. {sorted(shared)[:5]}")
    return {s: len(v) for s, v in by_split.items()}


def near_known_lenses(ra: np.ndarray, dec: np.ndarray, lens_ra: np.ndarray, lens_dec: np.ndarray,
                      radius_arcsec: float = 11.0) -> np.ndarray:
    """Boolean mask: which (ra, dec) lie within ``radius_arcsec`` of any known lens (astropy's KD-tree
    match on the sphere). Negatives with True are excluded."""
    mask = np.zeros(len(ra), dtype=bool)
    if len(ra) == 0 or len(lens_ra) == 0:
        return mask
    cands = SkyCoord(np.asarray(ra) * u.deg, np.asarray(dec) * u.deg)
    lenses = SkyCoord(np.asarray(lens_ra) * u.deg, np.asarray(lens_dec) * u.deg)
    _, idx_cand, _, _ = cands.search_around_sky(lenses, radius_arcsec * u.arcsec)
    mask[np.unique(idx_cand)] = True
    return mask

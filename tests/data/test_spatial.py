"""The HEALPix spatial split against independent computations: healpy for the NESTED pixel index, hashlib
in the test for the SHA-256 hash → split rule (PAPER_SPEC A.5), and hand-built cases for the edges."""

import hashlib
import struct

import healpy
import numpy as np
import pandas as pd
import pytest

from lenslib.data import spatial

N = 4000
THRESHOLDS = (("train", 0.70), ("val", 0.85), ("test", 1.0))  # cumulative, in the order train, val, test


def _sky(n=N, seed=20):
    """``n`` positions uniform on the whole sphere (seeded), in degrees."""
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 360, n), np.degrees(np.arcsin(rng.uniform(-1, 1, n)))


def _h(text: str) -> float:
    """First 32 bits (big-endian) of SHA-256 of ``text``, as a fraction of 2**32."""
    return struct.unpack(">I", hashlib.sha256(text.encode()).digest()[:4])[0] / 4294967296


def _rule(h: float, thresholds=THRESHOLDS) -> str:
    for name, edge in thresholds:
        if h < edge:
            return name
    return thresholds[-1][0]


def _reference_splits(pixels, seed=42, reverse=False):
    """Split per pixel by the spec, written out with hashlib (``reverse`` builds the wrong string seed_pixel)."""
    return np.array([_rule(_h(f"{seed}_{p}" if reverse else f"{p}_{seed}")) for p in pixels], dtype=object)


@pytest.fixture(scope="module")
def sky():
    ra, dec = _sky()
    nest = healpy.ang2pix(128, ra, dec, nest=True, lonlat=True)
    ring = healpy.ang2pix(128, ra, dec, nest=False, lonlat=True)
    return ra, dec, nest, ring


def test_healpix_index_is_healpy_nested_nside_128(sky):
    """The pixel is healpy's NESTED nside-128 index by default (not RING, not another nside); nest=False gives RING."""
    ra, dec, nest, ring = sky
    assert np.array_equal(spatial.healpix_index(ra, dec), nest)
    assert np.mean(nest != ring) > 0.9  # the test has power: RING numbering would differ almost everywhere
    assert np.array_equal(spatial.healpix_index(ra, dec, nest=False), ring)
    assert np.array_equal(spatial.healpix_index(ra, dec, 64), healpy.ang2pix(64, ra, dec, nest=True, lonlat=True))
    assert spatial.healpix_index(ra, dec).dtype == np.int64
    # columns of object dtype (e.g. a DataFrame built from mixed records) are read as floats
    obj = spatial.healpix_index(pd.Series(ra[:50], dtype=object), pd.Series(dec[:50], dtype=object))
    assert np.array_equal(obj, nest[:50])
    assert np.array_equal(spatial.healpix_index(ra[:50].astype(object), dec[:50]), nest[:50])
    assert np.array_equal(spatial.healpix_index(ra[:50], dec[:50].astype(object)), nest[:50])
    # the poles and the ends of the RA range are valid
    edge = spatial.healpix_index([0.0, 359.999, 10.0, 10.0], [0.0, 0.0, 90.0, -90.0])
    assert np.array_equal(edge, healpy.ang2pix(128, [0.0, 359.999, 10.0, 10.0], [0.0, 0.0, 90.0, -90.0],
                                               nest=True, lonlat=True))


@pytest.mark.parametrize("ra, dec, row", [([1.0, np.nan, 2.0], [0.0, 0.0, 0.0], 1),
                                          ([1.0, 2.0, np.inf], [0.0, 0.0, 0.0], 2),
                                          ([1.0, 2.0], [90.5, 0.0], 0),
                                          ([1.0, 2.0, 3.0], [0.0, -91.0, 95.0], 1),
                                          ([1.0, 2.0], [0.0, np.nan], 1)])
def test_invalid_positions_are_refused_naming_the_first_bad_row(ra, dec, row):
    """Non-finite RA/Dec or |Dec| > 90 raise SplitError with the count of bad rows and the first one."""
    bad = int(np.sum(~np.isfinite(ra) | ~np.isfinite(dec) | (np.abs(dec) > 90)))
    with pytest.raises(spatial.SplitError, match=rf"^{bad} positions are not valid sky coordinates "
                                                 rf"\(first: row {row}, ra="):
        spatial.healpix_index(ra, dec)


def test_split_hash_is_sha256_of_pixel_underscore_seed():
    """split_hash(p, seed) is the first 4 bytes of SHA-256("p_seed") read big-endian, over 2**32."""
    for p, seed in [(0, 42), (1, 42), (17, 42), (196607, 42), (123, 7), (5, 0)]:
        assert spatial.split_hash(p, seed) == _h(f"{p}_{seed}")
    assert spatial.split_hash(np.int64(99)) == _h("99_42")  # seed 42 by default; numpy ints are printed as ints
    hs = [spatial.split_hash(p) for p in range(500)]
    assert 0 <= min(hs) and max(hs) < 1 and max(hs) > 0.99 and min(hs) < 0.01


def test_splits_of_sky_positions_match_the_spec(sky):
    """Thousands of positions all over the sky: the split of each is hashlib's rule on healpy's NESTED pixel;
    a RING-numbered or reversed-string split would disagree on many positions."""
    ra, dec, nest, ring = sky
    df = pd.DataFrame({"ra": ra, "dec": dec, "name": np.arange(N)})
    want = _reference_splits(nest)
    got = spatial.assign_splits(df, parity_70_30=False)
    assert got["split"].tolist() == want.tolist()
    assert np.array_equal(got["healpix_128"].to_numpy(), nest)
    assert got["name"].tolist() == list(range(N)) and "split" not in df  # a copy, rows kept in order
    counts = pd.Series(want).value_counts()
    assert counts["train"] > 2400 and counts["val"] > 450 and counts["test"] > 450
    assert np.array_equal(spatial.split_for_pixels(nest), want)
    # the test has power: the two mistakes move many positions to another split
    assert np.sum(_reference_splits(ring) != want) > 0.3 * N
    assert np.sum(_reference_splits(nest, reverse=True) != want) > 0.3 * N
    # another seed gives the rule with that seed
    assert spatial.split_for_pixels(nest[:300], seed=7).tolist() == _reference_splits(nest[:300], seed=7).tolist()


def test_parity_70_30_relabels_test_as_val(sky):
    """The default (paper) scheme: train as in the 70/15/15 split, val and test merged into val."""
    ra, dec, nest, _ = sky
    df = pd.DataFrame({"ra": ra, "dec": dec})
    want = np.where(_reference_splits(nest) == "test", "val", _reference_splits(nest))
    got = spatial.assign_splits(df)
    assert got["split"].tolist() == want.tolist()
    share = np.mean(want == "train")
    assert 0.65 < share < 0.75 and set(want) == {"train", "val"}
    assert spatial.assign_splits(df, seed=7)["split"].tolist() == np.where(
        _reference_splits(nest, seed=7) == "test", "val", _reference_splits(nest, seed=7)).tolist()


def test_assign_splits_nside_column():
    """Another nside gives the column healpix_<nside> with healpy's pixel of that nside, split by that pixel."""
    ra, dec = _sky(300, seed=3)
    got = spatial.assign_splits(pd.DataFrame({"ra": ra, "dec": dec}), nside=32, parity_70_30=False)
    pix = healpy.ang2pix(32, ra, dec, nest=True, lonlat=True)
    assert np.array_equal(got["healpix_32"].to_numpy(), pix) and "healpix_128" not in got
    assert got["split"].tolist() == _reference_splits(pix).tolist()
    alloc = {"a": 0.5, "b": 0.5}
    custom = spatial.assign_splits(pd.DataFrame({"ra": ra, "dec": dec}), nside=32, allocations=alloc)
    assert custom["split"].tolist() == [_rule(_h(f"{p}_42"), (("a", 0.5), ("b", 1.0))) for p in pix]


def test_custom_allocations_and_their_edges():
    """Allocations are cumulative thresholds in their given order; h equal to a threshold goes to the next
    split; h above a sum that is 1 only to rounding still gets the last split; bad allocations raise."""
    pixels = np.arange(600)
    alloc = {"a": 0.2, "b": 0.3, "c": 0.5}
    want = [_rule(_h(f"{p}_42"), (("a", 0.2), ("b", 0.5), ("c", 1.0))) for p in pixels]
    assert spatial.split_for_pixels(pixels, allocations=alloc).tolist() == want
    assert spatial.split_for_pixels([5, 5, 3, 5]).tolist() == _reference_splits([5, 5, 3, 5]).tolist()
    labels = spatial.split_for_pixels(pixels[:20])
    labels[labels == "val"] = "validation"  # an array of names, not of fixed-width strings that would truncate
    assert "validation" in set(labels)
    # an allocation of 0 is allowed (nothing lands there)
    assert set(spatial.split_for_pixels(pixels, allocations={"train": 1.0, "val": 0.0, "test": 0.0})) == {"train"}
    # a pixel whose hash is exactly the first threshold goes to the second split
    h7 = _h("7_42")
    assert spatial.split_for_pixels([7], allocations={"x": h7, "y": 1 - h7}).tolist() == ["y"]
    # pixel 81559 hashes to 0.999997 (seed 42): above the edges 0.5 + 0.49999 (a sum that np.isclose calls 1)
    assert _h("81559_42") > 0.99999
    assert spatial.split_for_pixels([81559, 0], allocations={"p": 0.5, "q": 0.49999}).tolist() == [
        "q", _rule(_h("0_42"), (("p", 0.5), ("q", 1.0)))]
    for bad in ({"train": 0.7, "val": 0.2}, {"train": 1.2, "val": -0.2}, {"train": 0.7, "val": 0.2, "test": 0.2}):
        with pytest.raises(spatial.SplitError, match=r"split allocations must be >= 0 and sum to 1, got \{'train'"):
            spatial.split_for_pixels(pixels, allocations=bad)


def _table(tiers, splits, ra, dec):
    return pd.DataFrame({"ra": ra, "dec": dec, "tier": tiers, "split": splits})


def test_check_no_shared_pixels():
    """Pixel counts per split (Tier A only by default, pixel recomputed from ra/dec); a pixel with both a
    train and a val Tier-A row raises, naming the pixels; Tier-B rows are ignored unless tier=None."""
    ra = np.array([10.0, 50.0, 50.0 + 1e-5, 120.0, 200.0, 200.0 + 1e-5])
    dec = np.array([0.0, 20.0, 20.0, -30.0, 45.0, 45.0])
    pix = healpy.ang2pix(128, ra, dec, nest=True, lonlat=True)
    assert pix[1] == pix[2] and pix[4] == pix[5] and len(set(pix)) == 4
    ok = _table(["A", "A", "A", "A", "A", "B"], ["train", "train", "train", "val", "val", "train"], ra, dec)
    assert spatial.check_no_shared_pixels(ok) == {"train": 2, "val": 2}
    assert spatial.check_no_shared_pixels(ok, tier="B") == {"train": 1, "val": 0}
    with pytest.raises(spatial.SplitError, match=rf"^1 HEALPix pixels hold both train and val rows: e\.g\. "
                                                 rf"\[{pix[4]}\]$"):
        spatial.check_no_shared_pixels(ok, tier=None)
    leak = _table(["A"] * 6, ["train", "val", "train", "val", "val", "train"], ra, dec)
    with pytest.raises(spatial.SplitError, match=rf"^2 HEALPix pixels hold both train and val rows \(tier A\): "
                                                 rf"e\.g\. \[{min(pix[1], pix[4])}, {max(pix[1], pix[4])}\]$"):
        spatial.check_no_shared_pixels(leak)
    # many shared pixels: the count, and the first five (sorted) as examples
    centre_ra, centre_dec = healpy.pix2ang(128, np.arange(8) * 20_000 + 11, nest=True, lonlat=True)
    many_ra, many_dec = np.repeat(centre_ra, 2) + np.tile([0.0, 1e-4], 8), np.repeat(centre_dec, 2)
    many_pix = healpy.ang2pix(128, many_ra, many_dec, nest=True, lonlat=True)
    assert np.array_equal(many_pix[::2], many_pix[1::2])
    many = _table(["A"] * 16, ["train", "val"] * 8, many_ra, many_dec)
    with pytest.raises(spatial.SplitError, match=rf"^8 HEALPix pixels hold both train and val rows \(tier A\): "
                                                 rf"e\.g\. \[{', '.join(map(str, sorted(set(many_pix))[:5]))}\]$"):
        spatial.check_no_shared_pixels(many)
    # the pixel is recomputed from ra, dec (a stale healpix column is not trusted) and nside matters
    coarse = _table(["A", "A"], ["train", "val"], [10.0, 11.0], [20.0, 20.0])
    assert len(set(healpy.ang2pix(128, [10.0, 11.0], [20.0, 20.0], nest=True, lonlat=True))) == 2
    assert spatial.check_no_shared_pixels(coarse.assign(healpix_128=[1, 1])) == {"train": 1, "val": 1}
    assert len(set(healpy.ang2pix(4, [10.0, 11.0], [20.0, 20.0], nest=True, lonlat=True))) == 1
    with pytest.raises(spatial.SplitError, match="both train and val"):
        spatial.check_no_shared_pixels(coarse, nside=4)


def _offset(ra0, dec0, sep_arcsec, pa_deg):
    """The point ``sep_arcsec`` from (ra0, dec0) at position angle ``pa_deg`` (exact spherical trigonometry)."""
    d, pa = np.radians(sep_arcsec / 3600), np.radians(pa_deg)
    ra0, dec0 = np.radians(ra0), np.radians(dec0)
    dec = np.arcsin(np.sin(dec0) * np.cos(d) + np.cos(dec0) * np.sin(d) * np.cos(pa))
    ra = ra0 + np.arctan2(np.sin(pa) * np.sin(d) * np.cos(dec0), np.cos(d) - np.sin(dec0) * np.sin(dec))
    return np.degrees(ra) % 360, np.degrees(dec)


def test_near_known_lenses_within_11_arcsec():
    """A candidate is excluded iff it lies within 11'' (default) of any lens, on the sphere (also at high dec
    and across RA 0/360); empty inputs give an all-False mask of the right length."""
    lenses = [(150.0, 2.0), (0.001, -5.0), (80.0, 85.0)]
    seps = [3.0, 10.8, 11.2, 30.0]
    ra, dec, want = [], [], []
    for k, (lra, ldec) in enumerate(lenses):
        for j, s in enumerate(seps):
            r, d = _offset(lra, ldec, s, 37.0 + 90 * j + 11 * k)
            ra.append(r), dec.append(d), want.append(s < 11.0)
    ra, dec = np.array(ra), np.array(dec)
    lra, ldec = np.array([p[0] for p in lenses]), np.array([p[1] for p in lenses])
    assert spatial.near_known_lenses(ra, dec, lra, ldec).tolist() == want
    assert spatial.near_known_lenses(ra, dec, lra, ldec, radius_arcsec=20.0).tolist() == [s < 20 for s in seps] * 3
    # only the first lens: the others' neighbours are not excluded
    assert spatial.near_known_lenses(ra, dec, lra[:1], ldec[:1]).tolist() == want[:4] + [False] * 8
    assert spatial.near_known_lenses(ra, dec, np.array([]), np.array([])).tolist() == [False] * 12
    empty = spatial.near_known_lenses(np.array([]), np.array([]), lra, ldec)
    assert empty.dtype == bool and len(empty) == 0

"""The intervals and tests reproduce the values the paper and its spec state."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import optimize
from scipy import stats as sps

from lenslib import stats


def test_jeffreys_matches_paper_tier_a_interval():
    lo, hi = stats.jeffreys_interval(100, 112)
    assert (round(100 * lo, 2), round(100 * hi, 2)) == (82.57, 94.01)


def test_wilson_differs_from_jeffreys_as_the_spec_says():
    lo, hi = stats.wilson_interval(100, 112)
    assert (round(100 * lo, 2), round(100 * hi, 2)) == (82.20, 93.76)
    lo, hi = stats.wilson_interval(5697, 110000)
    assert (round(100 * lo, 2), round(100 * hi, 2)) == (5.05, 5.31)


def test_sign_test_values():
    assert stats.sign_test(27, 6) == pytest.approx(3.24e-4, rel=2e-3)
    assert stats.sign_test(21, 3) == pytest.approx(2.77e-4, rel=2e-3)
    assert stats.sign_test(25, 19) == pytest.approx(0.451, rel=2e-3)
    assert stats.sign_test(0, 0) == 1.0


def test_mcnemar_aggregates():
    r = stats.mcnemar_test(73, 28)
    assert r["chi2"] == pytest.approx(19.1683, abs=1e-4)
    assert r["p_chi2"] == pytest.approx(1.197e-5, rel=1e-3)
    assert r["p_exact"] == pytest.approx(8.64e-6, rel=1e-3)
    assert stats.mcnemar_test(100, 53)["chi2"] == pytest.approx(13.8301, abs=1e-4)


def test_two_proportion_test():
    r = stats.two_proportion_test(5697, 110000, 4174, 110000)
    assert r["z"] == pytest.approx(15.7, abs=0.05)
    assert (round(100 * r["ci95_lo"], 2), round(100 * r["ci95_hi"], 2)) == (1.21, 1.56)


def test_mcnemar_without_discordant_pairs_is_no_evidence(recwarn):
    r = stats.mcnemar_test(0, 0)
    assert r == {"chi2": 0.0, "p_chi2": 1.0, "p_exact": 1.0}
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


# --- independent references: closed forms, brute-force sums, other libraries' implementations -----------------

PROPS = settings(max_examples=60, deadline=None, derandomize=True)


@st.composite
def k_and_n(draw, n_max=500):
    n = draw(st.integers(1, n_max))
    return draw(st.integers(0, n)), n


def _z(level):
    """Two-sided normal quantile, from the inverse error function (not the code's scipy.stats.norm call)."""
    from scipy.special import erfinv

    return math.sqrt(2.0) * float(erfinv(level))


def _wilson_closed_form(k, n, level=0.95):
    """Wilson (1927) score interval: the roots in p of (k/n − p)² = z² p(1 − p)/n."""
    z = _z(level)
    roots = np.roots([1 + z * z / n, -(2 * k / n + z * z / n), (k / n) ** 2])
    return float(min(roots.real)), float(max(roots.real))


def test_jeffreys_at_the_edges_is_not_clamped():
    """k = 0 and k = n: the Jeffreys bounds are the Beta quantiles, the lower bound at k = 0 is > 0 and the upper
    at k = n is < 1 (Brown, Cai & DasGupta 2001 clamp these to 0 / 1; D06 and the paper do not). Reference: the
    closed-form CDF of Beta(1/2, 3/2), (2/π)(arcsin √x + √(x(1 − x))), inverted by root finding (n = 1)."""
    def cdf(x):
        return 2 / math.pi * (math.asin(math.sqrt(x)) + math.sqrt(x * (1 - x)))
    lo0 = optimize.brentq(lambda x: cdf(x) - 0.025, 1e-15, 1 - 1e-15, xtol=1e-14)
    hi0 = optimize.brentq(lambda x: cdf(x) - 0.975, 1e-15, 1 - 1e-15, xtol=1e-14)
    assert stats.jeffreys_interval(0, 1) == pytest.approx((lo0, hi0), abs=1e-10)
    assert stats.jeffreys_interval(1, 1) == pytest.approx((1 - hi0, 1 - lo0), abs=1e-10)
    assert 0 < lo0 < 1e-3
    # larger n, against scipy's Beta quantiles computed here (values, not a formula of lenslib)
    for k, n in [(0, 10), (10, 10), (0, 112), (112, 112), (1, 5), (3, 7)]:
        want = sps.beta.ppf([0.025, 0.975], k + 0.5, n - k + 0.5)
        assert stats.jeffreys_interval(k, n) == pytest.approx(tuple(want), abs=1e-12)
        assert 0 < stats.jeffreys_interval(k, n)[0] and stats.jeffreys_interval(k, n)[1] < 1
    # level: a 90 % interval is the 5 % / 95 % quantiles
    assert stats.jeffreys_interval(3, 7, level=0.9) == pytest.approx(
        tuple(sps.beta.ppf([0.05, 0.95], 3.5, 4.5)), abs=1e-12)


def test_wilson_against_the_closed_form_score_interval():
    """Wilson bounds are the two roots of the score equation (solved here with numpy), at k = 0, k = n, small n
    and a non-default level; at k = 0 the bounds are 0 and z²/(n + z²)."""
    for k, n in [(0, 1), (1, 1), (0, 10), (10, 10), (1, 5), (3, 7), (100, 112), (5697, 110000)]:
        for level in (0.95, 0.9, 0.683):
            assert stats.wilson_interval(k, n, level) == pytest.approx(_wilson_closed_form(k, n, level), abs=1e-9)
    z2 = _z(0.95) ** 2
    assert stats.wilson_interval(0, 20) == pytest.approx((0.0, z2 / (20 + z2)), abs=1e-12)


def test_intervals_without_trials_are_nan_and_silent(recwarn):
    """n = 0 gives (nan, nan) without RuntimeWarnings; n = 1 is a real interval."""
    for f in (stats.jeffreys_interval, stats.wilson_interval):
        assert all(math.isnan(x) for x in f(0, 0))
        assert all(math.isfinite(x) for x in f(0, 1)) and all(math.isfinite(x) for x in f(1, 1))
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


@PROPS
@given(k_and_n(), st.sampled_from([0.683, 0.9, 0.95, 0.99]))
def test_intervals_are_proper(kn, level):
    """Both intervals lie in [0, 1], are ordered, contain k/n (Jeffreys: for 0 < k < n; at the edges it is not
    clamped), are mirror images under k → n − k, and a higher level gives a wider, nested interval."""
    k, n = kn
    for f in (stats.jeffreys_interval, stats.wilson_interval):
        lo, hi = f(k, n, level)
        assert 0.0 <= lo < hi <= 1.0
        if 0 < k < n or f is stats.wilson_interval:
            assert lo - 1e-12 <= k / n <= hi + 1e-12
        mlo, mhi = f(n - k, n, level)
        assert (lo, hi) == pytest.approx((1 - mhi, 1 - mlo), abs=1e-9)
        wlo, whi = f(k, n, 0.999)
        assert wlo <= lo + 1e-12 and hi <= whi + 1e-12 and whi - wlo > hi - lo
    jlo, jhi = stats.jeffreys_interval(k, n, level)
    if k == 0:
        assert jlo > 0
    if k == n:
        assert jhi < 1


@PROPS
@given(k_and_n(200), st.integers(2, 5))
def test_intervals_shrink_with_more_trials(kn, m):
    """At fixed k/n, m times the trials give a narrower interval."""
    k, n = kn
    for f in (stats.jeffreys_interval, stats.wilson_interval):
        lo, hi = f(k, n)
        lo2, hi2 = f(m * k, m * n)
        assert hi2 - lo2 < hi - lo


def _binomial_two_sided(a, b):
    """Exact two-sided sign test p, brute force: 2 · P(X ≤ min(a, b)), X ~ Bin(a + b, 1/2), capped at 1."""
    n = a + b
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(min(a, b) + 1)) / 2 ** n)


@PROPS
@given(st.integers(0, 60), st.integers(0, 60))
def test_sign_test_is_the_exact_binomial_and_symmetric(gained, lost):
    """Sign test p equals the brute-force binomial sum, is symmetric in (gained, lost) and lies in (0, 1]."""
    p = stats.sign_test(gained, lost)
    assert p == pytest.approx(_binomial_two_sided(gained, lost), rel=1e-9, abs=1e-300)
    assert p == stats.sign_test(lost, gained)
    assert 0 < p <= 1


@PROPS
@given(st.integers(0, 80), st.integers(0, 80))
def test_mcnemar_against_textbook_formulas(gained, lost):
    """χ² = (|b − c| − 1)² / (b + c) (Edwards' continuity correction), p from the χ²₁ survival function
    erfc(√(χ²/2)); exact p = the brute-force sign test; symmetric in (gained, lost); p in [0, 1]."""
    r = stats.mcnemar_test(gained, lost)
    assert r == stats.mcnemar_test(lost, gained)
    assert 0 <= r["p_chi2"] <= 1 and 0 <= r["p_exact"] <= 1
    if gained + lost == 0:
        assert r == {"chi2": 0.0, "p_chi2": 1.0, "p_exact": 1.0}
        return
    chi2 = (abs(gained - lost) - 1) ** 2 / (gained + lost)
    assert r["chi2"] == pytest.approx(chi2, rel=1e-12, abs=1e-15)
    assert r["p_chi2"] == pytest.approx(math.erfc(math.sqrt(chi2 / 2)), rel=1e-9, abs=1e-300)
    assert r["p_exact"] == pytest.approx(_binomial_two_sided(gained, lost), rel=1e-9, abs=1e-300)


def test_mcnemar_balanced_discordant_pairs():
    """gained = lost > 0 is not "no discordant pairs": χ² = 1/(2g) (continuity correction), exact p = 1."""
    r = stats.mcnemar_test(5, 5)
    assert r["chi2"] == pytest.approx(0.1) and r["p_chi2"] == pytest.approx(math.erfc(math.sqrt(0.05)))
    assert r["p_exact"] == 1.0


@PROPS
@given(st.integers(1, 400), st.integers(1, 400), st.integers(0, 400), st.integers(0, 400))
def test_two_proportion_test_against_references(n1, n2, k1, k2):
    """z: the pooled statistic (p̂1 − p̂2)/√(p̄(1 − p̄)(1/n1 + 1/n2)) and its two-sided normal p (erfc);
    interval: statsmodels' independent Wald interval on p1 − p2 (confint_proportions_2indep)."""
    from statsmodels.stats.proportion import confint_proportions_2indep

    k1, k2 = min(k1, n1), min(k2, n2)
    pbar = (k1 + k2) / (n1 + n2)
    if pbar in (0.0, 1.0):
        return  # z undefined (0/0)
    r = stats.two_proportion_test(k1, n1, k2, n2)
    d = k1 / n1 - k2 / n2
    z = d / math.sqrt(pbar * (1 - pbar) * (1 / n1 + 1 / n2))
    assert r["diff"] == pytest.approx(d, abs=1e-15)
    assert r["z"] == pytest.approx(z, rel=1e-9, abs=1e-12)
    assert r["p_value"] == pytest.approx(math.erfc(abs(z) / math.sqrt(2)), rel=1e-7, abs=1e-300)
    lo, hi = confint_proportions_2indep(k1, n1, k2, n2, method="wald", compare="diff")
    assert (r["ci95_lo"], r["ci95_hi"]) == pytest.approx((float(lo), float(hi)), abs=1e-12)


def test_two_proportion_test_paper_numbers_precisely():
    """The Poisson z-test of the paper (5697 vs 4174 of 110 000): p and the interval at full precision."""
    r = stats.two_proportion_test(5697, 110000, 4174, 110000)
    assert r["diff"] == pytest.approx(1523 / 110000, rel=1e-12)
    assert r["p_value"] == pytest.approx(math.erfc(r["z"] / math.sqrt(2)), rel=1e-7)
    assert r["p_value"] < 1e-50


def test_vector_jeffreys_equals_the_scalar_one_and_scipy():
    k = np.array([0, 0, 1, 3, 7, 50, 112, 5])
    n = np.array([1, 0, 1, 7, 7, 112, 112, -1])
    for level in (0.68, 0.95):
        lo, hi = stats.jeffreys_intervals(k, n, level)
        for i in range(len(k)):
            np.testing.assert_allclose((lo[i], hi[i]), stats.jeffreys_interval(int(k[i]), int(n[i]), level),
                                       rtol=0, atol=0, equal_nan=True)
        ok = n > 0
        a = (1 - level) / 2
        np.testing.assert_allclose(lo[ok], sps.beta.ppf(a, k[ok] + 0.5, n[ok] - k[ok] + 0.5), rtol=1e-14)
        np.testing.assert_allclose(hi[ok], sps.beta.ppf(1 - a, k[ok] + 0.5, n[ok] - k[ok] + 0.5), rtol=1e-14)
        assert np.isnan(lo[~ok]).all() and np.isnan(hi[~ok]).all()
    np.testing.assert_array_equal(stats.jeffreys_intervals(k, n), stats.jeffreys_intervals(k, n, 0.95))  # default

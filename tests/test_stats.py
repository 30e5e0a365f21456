"""The intervals and tests reproduce the values the paper and its spec state."""

import pytest

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

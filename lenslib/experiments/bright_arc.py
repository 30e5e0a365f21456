"""Bright-arc experiment (paper Table 6 / Figure 4): detection at p > 0.3 per source-magnitude bin."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lenslib.experiments.artefacts import BRIGHT_ARC_VARIANTS, D06Artefacts
from lenslib.stats import wilson_interval

VARIANT_LABELS = {
    "baseline": "Baseline", "poisson": "Poisson (gain 150)", "clip20": "clip = 20",
    "poisson_clip20": "Poisson + clip20", "unrestricted": "Unrestricted β_frac", "gain_1e12": "Gain = 10¹²",
}


def rates(art: D06Artefacts, variant: str, key: str = "detection_rate_p03") -> pd.DataFrame:
    """Per-bin rows of one variant: mag_bin, n_scored, rate (fraction), n_detected, Wilson 95 %."""
    d = art.bright_arc(variant)
    rows = []
    for b in d["magnitude_bins"]:
        r = d["results_by_bin"][b]
        n = int(r["n_scored"])
        k = int(round(float(r[key]) * n))  # the rate is k/n; round() recovers k exactly
        lo, hi = wilson_interval(k, n)
        lo_mag, hi_mag = (float(x) for x in b.split("-"))
        rows.append({"mag_bin": b, "mag_mid": (lo_mag + hi_mag) / 2, "n_scored": n, "n_detected": k,
                     "rate_pct": 100.0 * k / n, "wilson95_lo_pct": 100 * lo, "wilson95_hi_pct": 100 * hi,
                     "median_score": float(r["median_score"]), "median_arc_snr": float(r["median_arc_snr"])})
    return pd.DataFrame(rows)


def table(art: D06Artefacts, key: str = "detection_rate_p03") -> pd.DataFrame:
    """Table 6: mag_bin then one column per variant (detection rate in %)."""
    out = None
    for v in BRIGHT_ARC_VARIANTS:
        r = rates(art, v, key)[["mag_bin", "rate_pct"]].rename(columns={"rate_pct": v})
        out = r if out is None else out.merge(r, on="mag_bin", how="outer", sort=False)
    return out


def rate_pct(art: D06Artefacts, variant: str, mag_bin: str) -> float:
    t = rates(art, variant)
    return float(t.loc[t["mag_bin"] == mag_bin, "rate_pct"].iloc[0])


def variant_gain_pp(art: D06Artefacts, variant: str, mag_bin: str, reference: str = "baseline") -> float:
    """Detection-rate difference variant − reference in pp at one bin."""
    return rate_pct(art, variant, mag_bin) - rate_pct(art, reference, mag_bin)


def additive_expectation_pct(art: D06Artefacts, mag_bin: str) -> float:
    """Poisson+clip20 if the two effects added: baseline + ΔPoisson + Δclip20."""
    return (rate_pct(art, "baseline", mag_bin) + variant_gain_pp(art, "poisson", mag_bin)
            + variant_gain_pp(art, "clip20", mag_bin))


def max_gain_control_difference_pp(art: D06Artefacts) -> float:
    """Largest |baseline − gain 10¹²| over the bins: the noise-free control should match baseline."""
    a, b = rates(art, "baseline"), rates(art, "gain_1e12")
    return float(np.max(np.abs(a["rate_pct"].to_numpy() - b["rate_pct"].to_numpy())))

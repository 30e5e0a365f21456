"""Poisson diagnostics (paper Table 7 and §4.4): paired gained/lost per bin with sign and McNemar tests."""

from __future__ import annotations

import pandas as pd

from lenslib.experiments.artefacts import D06Artefacts
from lenslib.stats import mcnemar_test, sign_test


def paired_table(art: D06Artefacts) -> pd.DataFrame:
    """Per source-magnitude bin: n, gained, lost, net, Δ detection, mean Δp and the tests, recomputed."""
    res = art.poisson_diagnostics()["paired_delta"]["results_by_bin"]
    rows = []
    for b, r in res.items():
        g, lost = int(r["n_gained_above_03"]), int(r["n_lost_below_03"])
        mc = mcnemar_test(g, lost)
        rows.append({
            "mag_bin": b, "n": int(r["n_paired"]), "gained": g, "lost": lost,
            "sign_test_p": sign_test(g, lost),
            "net": g - lost,
            "delta_detection_pct": 100.0 * (float(r["poisson_detection_rate"]) - float(r["baseline_detection_rate"])),
            "mean_delta_p": float(r["mean_delta"]),
            "mcnemar_chi2": mc["chi2"], "mcnemar_p_chi2": mc["p_chi2"], "mcnemar_p_exact": mc["p_exact"],
        })
    return pd.DataFrame(rows)


def aggregate(art: D06Artefacts, bins: list[str] | None = None) -> dict:
    """Pooled McNemar over several bins (all bins when ``bins`` is None)."""
    t = paired_table(art)
    if bins is not None:
        t = t[t["mag_bin"].isin(bins)]
    g, lost = int(t["gained"].sum()), int(t["lost"].sum())
    return {"bins": list(t["mag_bin"]), "gained": g, "lost": lost, **mcnemar_test(g, lost),
            "sign_test_p": sign_test(g, lost)}


BINS_20_23 = ["20-21", "21-22", "22-23"]


def sign_test_p(art: D06Artefacts, mag_bin: str) -> float:
    t = paired_table(art)
    return float(t.loc[t["mag_bin"] == mag_bin, "sign_test_p"].iloc[0])


def aggregate_chi2(art: D06Artefacts, which: str = "20-23") -> float:
    return aggregate(art, BINS_20_23 if which == "20-23" else None)["chi2"]


def aggregate_p(art: D06Artefacts, which: str = "20-23") -> float:
    return aggregate(art, BINS_20_23 if which == "20-23" else None)["p_chi2"]


def bonferroni_threshold(art: D06Artefacts, alpha: float = 0.05) -> float:
    """α divided by the number of magnitude bins tested."""
    return alpha / len(paired_table(art))


def significant_gain_mag_edge(art: D06Artefacts, edge: str = "lo", alpha: float = 0.05) -> float:
    """Source-magnitude span of the bins where Poisson noise significantly raises detection (more gained than
    lost, sign-test p below the Bonferroni threshold α / n_bins): ``lo`` the lower edge of the brightest such
    bin, ``hi`` the upper edge of the faintest (§4.5: "source mag 21--23 in the bright-arc test"). NaN if no
    bin qualifies or the qualifying bins are not contiguous."""
    if edge not in ("lo", "hi"):
        raise ValueError(f"edge must be 'lo' or 'hi', got {edge!r}")
    t = paired_table(art)
    sig = t[(t["gained"] > t["lost"]) & (t["sign_test_p"] < bonferroni_threshold(art, alpha))]
    if sig.empty:
        return float("nan")
    edges = sorted((float(lo), float(hi)) for lo, hi in (b.split("-") for b in sig["mag_bin"]))
    if any(a[1] != b[0] for a, b in zip(edges, edges[1:], strict=False)):
        return float("nan")
    return edges[0][0] if edge == "lo" else edges[-1][1]


def n_bins(art: D06Artefacts) -> int:
    """Source-magnitude bins of the paired analysis (the eight bins the Bonferroni threshold divides by)."""
    return len(paired_table(art))


def aggregate_count(art: D06Artefacts, which: str = "20-23", what: str = "gained") -> int:
    """Injections ``gained`` (crossed p = 0.3 upward with Poisson) or ``lost`` (downward), summed over the
    pooled bins of :func:`aggregate` (``which="20-23"``: source r 20-23, the paper's "73 gained, 28 lost")."""
    if what not in ("gained", "lost"):
        raise ValueError(f"what must be 'gained' or 'lost', got {what!r}")
    return int(aggregate(art, BINS_20_23 if which == "20-23" else None)[what])


#: the quantities of :func:`photon_budget`
PHOTON_BUDGET = ("f_tot_nmgy", "flux_per_pixel_nmgy", "electrons_per_pixel", "poisson_sigma_e",
                 "poisson_sigma_nmgy", "snr_sky", "snr_poisson")


def photon_budget(art: D06Artefacts | None, lensed_mag: float, quantity: str, *, arc_pixels: float = 90.0,
                  sky_sigma_nmgy: float = 0.002, gain: float | None = None) -> float:
    """§4.4 'Prediction from first principles': the per-pixel photoelectron budget of an arc of total lensed
    r magnitude ``lensed_mag`` spread evenly over ``arc_pixels`` pixels (the paper's ≈ 90 for θ_E = 1.5″,
    β_frac ≈ 0.3), with a sky noise ``sky_sigma_nmgy`` per pixel (the paper's ≈ 0.002 from the annulus MAD)
    and the Poisson gain (e⁻ per nmgy; default the bright-arc / grid Poisson gain of the code, 150).

    ``quantity``: ``f_tot_nmgy`` = 10^((22.5 − m)/2.5); ``flux_per_pixel_nmgy`` = f_tot / arc_pixels;
    ``electrons_per_pixel`` = flux per pixel × gain; ``poisson_sigma_e`` = √electrons;
    ``poisson_sigma_nmgy`` = √electrons / gain; ``snr_sky`` = flux per pixel / sky σ (sky-limited);
    ``snr_poisson`` = electrons / √electrons (Poisson-dominated). Pure arithmetic (``art`` is not read): it
    checks the paper's worked numbers from its stated inputs; the inputs themselves are not in the artefacts."""
    from lenslib.experiments.compute.bright_arc import VARIANTS
    from lenslib.survey import mag_to_nmgy

    if quantity not in PHOTON_BUDGET:
        raise ValueError(f"quantity must be one of {', '.join(PHOTON_BUDGET)}, got {quantity!r}")
    g = float(VARIANTS["poisson"].gain if gain is None else gain)
    f_tot = float(mag_to_nmgy(lensed_mag))
    per_pix = f_tot / float(arc_pixels)
    electrons = per_pix * g
    values = {"f_tot_nmgy": f_tot, "flux_per_pixel_nmgy": per_pix, "electrons_per_pixel": electrons,
              "poisson_sigma_e": electrons ** 0.5, "poisson_sigma_nmgy": electrons ** 0.5 / g,
              "snr_sky": per_pix / float(sky_sigma_nmgy), "snr_poisson": electrons / electrons ** 0.5}
    return float(values[quantity])

"""The paper's figures, each drawn from the artefacts by one function returning a matplotlib Figure.

fig1_completeness   Figure 1: completeness vs θ_E and vs lensed magnitude (with/without Poisson)
fig2_completeness_maps  completeness over θ_E × PSF FWHM and θ_E × 5σ depth (not the paper's Figure 2)
fig3_scores         Figure 3: score distributions (per-lens Tier-A scores, population medians)
fig4_bright_arcs    Figure 4: bright-arc detection rate vs source magnitude for the six variants

Each figure function reads the artefacts and calls ``..._axes`` functions that draw the data on given axes.
"""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib import colors
from matplotlib.image import AxesImage

from lenslib.experiments import bright_arc, grid, tier_a
from lenslib.experiments.artefacts import BRIGHT_ARC_VARIANTS, D06Artefacts

THETA_E = r"$\theta_\mathrm{E}$"
CONDITIONS = (("no_poisson", "C0", "No Poisson"), ("poisson", "C1", "Poisson (gain 150)"))


def _yerr(t, value: str, lo: str, hi: str) -> np.ndarray:
    """Asymmetric error bars from interval columns (clipped at 0 against rounding at k = 0 or n)."""
    return np.clip([t[value] - t[lo], t[hi] - t[value]], 0, None)


# Okabe–Ito palette, as the final paper's Figure 4.
OKABE_ITO = ["#000000", "#E69F00", "#56B4E9", "#009E73", "#CC79A7", "#0072B2"]


def completeness_theta_e_axes(tables: dict[str, pd.DataFrame], ax: plt.Axes, threshold: float = 0.3,
                              colours: dict[str, str] | None = None) -> None:
    """Completeness vs θ_E (log scale, Wilson 95 % bars) of ``{label: grid.by_theta_e table}``."""
    for k, (label, t) in enumerate(tables.items()):
        yerr = _yerr(t, "completeness_pct", "wilson95_lo_pct", "wilson95_hi_pct")
        ax.errorbar(t["theta_e"], t["completeness_pct"], yerr=yerr, fmt="o-", capsize=3, label=label,
                    color=(colours or {}).get(label, f"C{k}"))
    ax.set(xlabel=f"{THETA_E} (arcsec)", ylabel="Completeness (%)", xlim=(0.3, 3.2), yscale="log", ylim=(0.1, 15),
           title=f"Completeness vs {THETA_E} (p > {threshold:g})")
    ax.legend(loc="lower right")


def completeness_mag_axes(tables: dict[str, pd.DataFrame], ax: plt.Axes,
                          colours: dict[str, str] | None = None) -> None:
    """Grouped bars of completeness per lensed-magnitude bin of ``{label: grid.by_mag_bin table}``, each bar
    with its Wilson 95 % bar and, above that, its number of injections."""
    width = 0.8 / len(tables)
    top = 0.0
    for k, (label, t) in enumerate(tables.items()):
        x = np.arange(len(t)) + (k - (len(tables) - 1) / 2) * width
        yerr = _yerr(t, "completeness_pct", "wilson95_lo_pct", "wilson95_hi_pct")
        colour = (colours or {}).get(label, f"C{k}")
        ax.bar(x, t["completeness_pct"], width, color=colour, alpha=0.8, label=label, yerr=yerr, capsize=2,
               error_kw=dict(lw=1))
        hi = t["completeness_pct"].to_numpy(float) + yerr[1]
        top = max(top, float(np.nanmax(hi)))
        for xi, yi, n in zip(x, hi, t["n_injections"], strict=True):
            ax.annotate(f"n = {n:,}", (xi, yi), xytext=(0, 3), textcoords="offset points", rotation=90,
                        ha="center", va="bottom", fontsize=8, color="0.2")
    ax.set_xticks(np.arange(len(grid.LENSED_BINS)),
                  [b.replace("lensed_", "").replace("-", "–") for b in grid.LENSED_BINS])
    # room above the highest bar for its rotated "n = ..." label (about a quarter of the axis height)
    ax.set(xlabel="Lensed r magnitude", ylabel="Completeness (%)", ylim=(0, 1.35 * top + 2),
           title="Completeness vs lensed magnitude")
    ax.legend(loc="upper right")


def fig1_completeness(art: D06Artefacts, threshold: float = 0.3) -> plt.Figure:
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.2), layout="constrained")
    colours = {label: c for _, c, label in CONDITIONS}
    completeness_theta_e_axes({label: grid.by_theta_e(art, cond, threshold) for cond, _, label in CONDITIONS},
                              ax1, threshold, colours)
    completeness_mag_axes({label: grid.by_mag_bin(art, cond, threshold) for cond, _, label in CONDITIONS},
                          ax2, colours)
    return fig


def _text_colour(cmap: colors.Colormap, norm: colors.Normalize, value: float) -> str:
    """Black on light cells, white on dark ones (relative luminance of the cell colour)."""
    r, g, b, _ = cmap(norm(value))
    return "k" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.45 else "w"


def completeness_map_axes(m: pd.DataFrame, ax: plt.Axes, ylabel: str, vmax: float | None = None,
                          fontsize: float = 8) -> AxesImage:
    """One θ_E (rows of ``m``) × condition (columns) completeness map, each cell printed; empty (NaN) cells
    grey with "–"."""
    values = m.to_numpy(float)
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="0.88")
    norm = colors.Normalize(0, np.nanmax(values) if vmax is None else vmax)
    im = ax.imshow(np.ma.masked_invalid(values.T), origin="lower", aspect="auto", cmap=cmap, norm=norm)
    ax.set_xticks(range(len(m.index)), [f"{v:g}" for v in m.index], fontsize=9)
    ax.set_yticks(range(len(m.columns)), [f"{v:g}" for v in m.columns])
    ax.set(xlabel=f"{THETA_E} (arcsec)", ylabel=ylabel)
    for (i, j), v in np.ndenumerate(values):
        empty = np.isnan(v)
        ax.text(i, j, "–" if empty else f"{v:.1f}", ha="center", va="center",
                fontsize=1.6 * fontsize if empty else fontsize, color="0.2" if empty else _text_colour(cmap, norm, v))
    return im


def fig2_completeness_maps(art: D06Artefacts, condition: str = "no_poisson", threshold: float = 0.3) -> plt.Figure:
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), layout="constrained")
    maps = [grid.completeness_map(art, "psf_fwhm", condition, threshold),
            grid.completeness_map(art, "depth_5sig", condition, threshold)]
    vmax = np.nanmax([np.nanmax(m.to_numpy()) for m in maps])
    for ax, m, label in zip(axes, maps, ("PSF FWHM (arcsec)", "5σ depth, r (mag)"), strict=True):
        im = completeness_map_axes(m, ax, label, vmax)
    fig.colorbar(im, ax=axes, label=f"Completeness at p > {threshold:g} (%)", pad=0.02)
    label = condition.replace("_", " ").replace("poisson", "Poisson")
    fig.suptitle(f"Selection function ({label}); '–' (grey) = no hosts in that bin")
    return fig


def score_hist_axes(scores: pd.Series, medians: dict[str, float], thresholds: list[float], ax: plt.Axes) -> None:
    """Histogram of the Tier-A scores (log counts), the population medians as solid lines and the thresholds as
    dashed red lines labelled on a top axis; the legend sits below the axes."""
    ax.hist(scores, bins=np.linspace(0, 1, 51), color="goldenrod", alpha=0.85,
            label=f"Real Tier-A (n = {len(scores)}, median {scores.median():.3f})")
    ax.set_yscale("log")
    styles = {"inj_low_bf": ("C0", "low-β_frac injections"), "inj_high_bf": ("c", "high-β_frac injections"),
              "negatives": ("grey", "negatives")}
    for key, (colour, label) in styles.items():
        ax.axvline(medians[key], color=colour, lw=2, label=f"median, {label}: {medians[key]:.3g}")
    for t in thresholds:
        ax.axvline(t, color="red", ls="--", lw=0.9)
    ax.set(xlabel="CNN score p", ylabel="Count", xlim=(-0.02, 1.02))
    top = ax.secondary_xaxis("top")
    top.set_xticks(thresholds, [f"p = {t:.3g}" for t in thresholds], fontsize=8, color="red")
    top.tick_params(axis="x", colors="red", length=3)
    ax.set_title("Score distributions (dashed: thresholds)")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)


def score_vs_mag_axes(lenses: pd.DataFrame, ax: plt.Axes, threshold: float = 0.3) -> None:
    """Tier-A score against total r magnitude, detected and missed at ``threshold``; legend below the axes."""
    det = lenses["score"] >= threshold
    ax.scatter(lenses.loc[det, "r_mag"], lenses.loc[det, "score"], s=16, color="goldenrod", ec="k", lw=0.3,
               label=f"detected (p ≥ {threshold:g}): {int(det.sum())}")
    ax.scatter(lenses.loc[~det, "r_mag"], lenses.loc[~det, "score"], s=20, marker="x", color="k",
               label=f"missed: {int((~det).sum())}")
    ax.axhline(threshold, color="red", ls="--", lw=0.9, label=f"p = {threshold:g}")
    ax.set(xlabel="Total r magnitude of the cutout", ylabel="CNN score p", ylim=(-0.05, 1.05),
           title="Tier-A score vs brightness")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, frameon=False)


def fig3_scores(art: D06Artefacts) -> plt.Figure:
    """Tier-A per-lens scores (the only per-object scores in the artefacts) with the population medians."""
    lenses = tier_a.tier_a_scores(art)
    thresholds = [t for t, _ in grid.thresholds(art)]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.6), layout="constrained")
    score_hist_axes(lenses["score"], art.probe_results()["median_scores"], [0.3, thresholds[3], thresholds[4]], ax1)
    score_vs_mag_axes(lenses, ax2)
    return fig


BRIGHT_ARC_STYLES = {"baseline": ("-", "s"), "poisson": ("--", "^"), "clip20": (":", "D"),
                     "poisson_clip20": ("-.", "v"), "unrestricted": ("-", "x"), "gain_1e12": ("none", "o")}


def bright_arcs_axes(rates: dict[str, pd.DataFrame], recall_pct: float, ax: plt.Axes) -> None:
    """Detection rate vs source magnitude of each variant (``{variant: bright_arc.rates table}``, Wilson 95 %
    bars; gain_1e12 as open circles without bars) and the Tier-A recall as a dashed line."""
    for colour, (v, t) in zip(OKABE_ITO, rates.items(), strict=False):
        ls, marker = BRIGHT_ARC_STYLES.get(v, ("-", "o"))
        kw = dict(mfc="none", ms=7) if v == "gain_1e12" else {}
        yerr = None if v == "gain_1e12" else _yerr(t, "rate_pct", "wilson95_lo_pct", "wilson95_hi_pct")
        ax.errorbar(t["mag_mid"], t["rate_pct"], yerr=yerr, ls=ls, marker=marker, color=colour, capsize=2,
                    lw=0.8 if v == "unrestricted" else 1.4, label=bright_arc.VARIANT_LABELS.get(v, v), **kw)
    ax.axhline(recall_pct, color="0.35", ls="--", lw=1)
    ax.annotate(f"Tier-A recall ({recall_pct:.1f}%)", (1, recall_pct), xycoords=("axes fraction", "data"),
                xytext=(-4, 3), textcoords="offset points", ha="right", va="bottom", fontsize=9, color="0.35")
    ax.set(xlabel="Source r magnitude (bin centre)", ylabel="Detection rate at p > 0.3 (%)", xlim=(17.8, 26.2),
           ylim=(-2, 100), title=f"Bright-arc injections ({THETA_E} = 1.5″, 200 hosts per bin)")
    # below the recall line, right of the data: the faint bins are all near zero
    ax.legend(fontsize=9, loc="upper right", bbox_to_anchor=(1, 0.84), framealpha=0.95)


def fig4_bright_arcs(art: D06Artefacts) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
    bright_arcs_axes({v: bright_arc.rates(art, v) for v in BRIGHT_ARC_VARIANTS}, tier_a.recall_pct(art, 0.3), ax)
    return fig


def gate_sweep_axes(sweep, reference: dict, ax_auc: plt.Axes, ax_recall: plt.Axes) -> None:
    """The realism gate over source families: probe AUC (real lenses vs injections, with its 95 % interval) and
    the injections' recall at p > 0.3 against the fraction of realistic-source light (0 = Sérsic)."""
    m = np.asarray(sweep["mix"], float)
    ax_auc.fill_between(m, sweep["auc_ci_low"], sweep["auc_ci_high"], color="C3", alpha=0.2, label="95 % interval")
    ax_auc.errorbar(m, sweep["auc"], yerr=sweep["auc_std"], fmt="o-", color="C3", capsize=3, label="fold mean ± std")
    ax_auc.axhline(0.5, color="0.5", ls=":", label="indistinguishable")
    ax_auc.set(xlabel="realistic-source fraction of the injected light", ylabel="probe AUC (real vs injected)",
               ylim=(0.4, 1.02), title="Can the finder tell injections from real lenses?")
    ax_auc.legend(fontsize=8)
    ax_recall.plot(m, 100 * np.asarray(sweep["recall_injected"]), "o-", color="C0", label="injections")
    ax_recall.axhline(100 * reference["recall_real"], color="k", ls="--", label="real lenses")
    ax_recall.set(xlabel="realistic-source fraction of the injected light", ylabel="recall at p > 0.3 (%)",
                  ylim=(0, 105), title="Recovered at matched θ_E and magnitude")
    ax_recall.legend(fontsize=8)


def gate_grids_axes(families: dict, ax: plt.Axes) -> None:
    """Completeness vs θ_E of grids made with different source families (``{label: by_theta_e table}``)."""
    for k, (label, t) in enumerate(families.items()):
        yerr = _yerr(t, "completeness_pct", "wilson95_lo_pct", "wilson95_hi_pct")
        ax.errorbar(t["theta_e"], t["completeness_pct"], yerr=yerr, fmt="o-", color=f"C{k}", capsize=3, label=label)
    ax.set(xlabel="θ_E (arcsec)", ylabel="completeness at p > 0.3 (%)", ylim=(0, None),
           title="Selection function by source family")
    ax.legend(fontsize=8)

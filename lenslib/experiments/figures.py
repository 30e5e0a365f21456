"""The paper's figures, each drawn from the artefacts by one function returning a matplotlib Figure.

fig1_completeness   Figure 1: completeness vs θ_E and vs lensed magnitude (with/without Poisson)
fig2_completeness_maps  Figure 2: completeness over θ_E × PSF FWHM and θ_E × 5σ depth
fig3_scores         Figure 3: score distributions (per-lens Tier-A scores, population medians)
fig4_bright_arcs    Figure 4: bright-arc detection rate vs source magnitude for the six variants
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from lenslib.experiments import bright_arc, grid, tier_a
from lenslib.experiments.artefacts import BRIGHT_ARC_VARIANTS, D06Artefacts


def _yerr(t, value: str, lo: str, hi: str) -> np.ndarray:
    """Asymmetric error bars from interval columns (clipped at 0 against rounding at k = 0 or n)."""
    return np.clip([t[value] - t[lo], t[hi] - t[value]], 0, None)


# Okabe–Ito palette, as the final paper's Figure 4.
OKABE_ITO = ["#000000", "#E69F00", "#56B4E9", "#009E73", "#CC79A7", "#0072B2"]


def fig1_completeness(art: D06Artefacts, threshold: float = 0.3) -> plt.Figure:
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.2))
    for cond, color, label in (("no_poisson", "C0", "No Poisson"), ("poisson", "C1", "Poisson (gain 150)")):
        t = grid.by_theta_e(art, cond, threshold)
        yerr = _yerr(t, "completeness_pct", "wilson95_lo_pct", "wilson95_hi_pct")
        ax1.errorbar(t["theta_e"], t["completeness_pct"], yerr=yerr, fmt="o-", color=color, capsize=3, label=label)
    ax1.set(xlabel="θ_E (arcsec)", ylabel="Completeness (%)", xlim=(0.3, 3.2), yscale="log", ylim=(0.1, 15),
            title=f"Completeness vs θ_E (p > {threshold:g})")
    ax1.legend()
    width = 0.35
    for i, (cond, color, label) in enumerate((("no_poisson", "C0", "No Poisson"), ("poisson", "C1", "Poisson"))):
        t = grid.by_mag_bin(art, cond, threshold)
        x = np.arange(len(t)) + (i - 0.5) * width
        yerr = _yerr(t, "completeness_pct", "wilson95_lo_pct", "wilson95_hi_pct")
        ax2.bar(x, t["completeness_pct"], width, color=color, alpha=0.8, label=label, yerr=yerr, capsize=2)
        for xi, n in zip(x, t["n_injections"], strict=True):
            ax2.text(xi, 1, f"n={n}", rotation=90, ha="center", va="bottom", fontsize=7)
    ax2.set_xticks(np.arange(len(grid.LENSED_BINS)), [b.replace("lensed_", "") for b in grid.LENSED_BINS])
    ax2.set(xlabel="Lensed r magnitude", ylabel="Completeness (%)", ylim=(0, 70),
            title="Completeness vs lensed magnitude")
    ax2.legend()
    fig.tight_layout()
    return fig


def fig2_completeness_maps(art: D06Artefacts, condition: str = "no_poisson", threshold: float = 0.3) -> plt.Figure:
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    maps = [grid.completeness_map(art, "psf_fwhm", condition, threshold),
            grid.completeness_map(art, "depth_5sig", condition, threshold)]
    vmax = np.nanmax([np.nanmax(m.to_numpy()) for m in maps])
    for ax, m, label in zip(axes, maps, ("PSF FWHM (arcsec)", "5σ depth, r (mag)"), strict=True):
        im = ax.imshow(m.to_numpy().T, origin="lower", aspect="auto", cmap="viridis", vmin=0, vmax=vmax)
        ax.set_xticks(range(len(m.index)), [f"{v:g}" for v in m.index], rotation=90)
        ax.set_yticks(range(len(m.columns)), [f"{v:g}" for v in m.columns])
        ax.set(xlabel="θ_E (arcsec)", ylabel=label)
        for (i, j), v in np.ndenumerate(m.to_numpy()):
            ax.text(i, j, "–" if np.isnan(v) else f"{v:.1f}", ha="center", va="center", fontsize=6,
                    color="w" if (np.isnan(v) or v < 0.6 * vmax) else "k")
    fig.colorbar(im, ax=axes, label=f"Completeness at p > {threshold:g} (%)")
    fig.suptitle(f"Selection function ({condition.replace('_', ' ')}); '–' = no hosts in that bin")
    return fig


def fig3_scores(art: D06Artefacts) -> plt.Figure:
    """Tier-A per-lens scores (the only per-object scores in the artefacts) with the population medians."""
    lenses = tier_a.tier_a_scores(art)
    med = art.probe_results()["median_scores"]
    thresholds = [t for t, _ in grid.thresholds(art)]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.0))
    ax1.hist(lenses["score"], bins=np.linspace(0, 1, 51), color="goldenrod", alpha=0.85,
             label=f"Real Tier-A (n={len(lenses)}, median {lenses['score'].median():.3f})")
    ax1.set_yscale("log")
    styles = {"inj_low_bf": ("C0", "low-β_frac injections"), "inj_high_bf": ("c", "high-β_frac injections"),
              "negatives": ("grey", "negatives")}
    for key, (color, label) in styles.items():
        ax1.axvline(med[key], color=color, lw=2, label=f"median, {label}: {med[key]:.3g}")
    for t in (0.3, thresholds[3], thresholds[4]):
        ax1.axvline(t, color="red", ls="--", lw=0.8)
        ax1.text(t, ax1.get_ylim()[1] * 0.7, f" p={t:.3g}", rotation=90, color="red", fontsize=7, va="top")
    ax1.set(xlabel="CNN score p", ylabel="Count", xlim=(-0.02, 1.02), title="Score distributions")
    ax1.legend(fontsize=7, loc="upper center")
    det = lenses["score"] >= 0.3
    ax2.scatter(lenses.loc[det, "r_mag"], lenses.loc[det, "score"], s=14, color="goldenrod", ec="k", lw=0.3,
                label=f"detected (p ≥ 0.3): {int(det.sum())}")
    ax2.scatter(lenses.loc[~det, "r_mag"], lenses.loc[~det, "score"], s=18, marker="x", color="k",
                label=f"missed: {int((~det).sum())}")
    ax2.axhline(0.3, color="red", ls="--", lw=0.8)
    ax2.set(xlabel="Total r magnitude of the cutout", ylabel="CNN score p", title="Tier-A score vs brightness")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    return fig


def fig4_bright_arcs(art: D06Artefacts) -> plt.Figure:
    styles = {"baseline": ("-", "s"), "poisson": ("--", "^"), "clip20": (":", "D"), "poisson_clip20": ("-.", "v"),
              "unrestricted": ("-", "x"), "gain_1e12": ("none", "o")}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for color, v in zip(OKABE_ITO, BRIGHT_ARC_VARIANTS, strict=True):
        t = bright_arc.rates(art, v)
        ls, marker = styles[v]
        kw = dict(mfc="none") if v == "gain_1e12" else {}
        yerr = None if v == "gain_1e12" else _yerr(t, "rate_pct", "wilson95_lo_pct", "wilson95_hi_pct")
        ax.errorbar(t["mag_mid"], t["rate_pct"], yerr=yerr, ls=ls, marker=marker, color=color, capsize=2,
                    lw=0.8 if v == "unrestricted" else 1.4, label=bright_arc.VARIANT_LABELS[v], **kw)
    recall = tier_a.recall_pct(art, 0.3)
    ax.axhline(recall, color="0.35", ls="--", lw=1)
    ax.text(25.9, recall - 2, f"Tier-A recall ({recall:.1f}%)", ha="right", va="top", fontsize=8, color="0.35")
    ax.set(xlabel="Source r magnitude (bin centre)", ylabel="Detection rate at p > 0.3 (%)", xlim=(17.8, 26.2),
           ylim=(-2, 100), title="Bright-arc injections (θ_E = 1.5″, 200 hosts per bin)")
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
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

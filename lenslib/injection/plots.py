"""Figures of the injection section: sampled priors, example injections, the lenstronomy residuals."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from scipy import stats

from lenslib.injection.examples import CrossCheck, ExampleInjections
from lenslib.injection.priors import InjectionParams, InjectionPriors
from lenslib.survey import rgb


def _prior_pdfs(priors: InjectionPriors) -> dict[str, tuple[str, object]]:
    lo, hi = priors.beta_frac_range
    return {
        "beta_frac": ("β/θ_E", lambda x: np.where((x >= lo) & (x <= hi), 2 * x / (hi**2 - lo**2), 0.0)),
        "re_arcsec": ("R_e (″)", stats.uniform(priors.re_arcsec_range[0], np.ptp(priors.re_arcsec_range)).pdf),
        "n_sersic": ("Sérsic n", stats.uniform(priors.n_range[0], np.ptp(priors.n_range)).pdf),
        "q_source": ("source q", stats.uniform(priors.q_range[0], np.ptp(priors.q_range)).pdf),
        "r_mag": ("source r mag", stats.uniform(priors.r_mag_range[0], np.ptp(priors.r_mag_range)).pdf),
        "g_minus_r": ("g − r", stats.norm(*priors.g_minus_r_mu_sigma).pdf),
        "r_minus_z": ("r − z", stats.norm(*priors.r_minus_z_mu_sigma).pdf),
        "q_lens": ("lens q", stats.uniform(priors.q_lens_range[0], np.ptp(priors.q_lens_range)).pdf),
        "shear_g1": ("γ1", stats.norm(0, priors.shear_sigma).pdf),
    }


def priors_axes(params: InjectionParams, priors: InjectionPriors, axes) -> None:
    """On each of ``axes`` (at least nine, in order) the histogram of one drawn parameter (as a probability
    density) with the prior's density in red; the left column of a 2-D ``axes`` array carries the y label."""
    axes = np.asarray(axes, dtype=object)
    flat = axes.ravel()
    for ax, (name, (label, pdf)) in zip(flat, _prior_pdfs(priors).items(), strict=False):
        v = getattr(params, name)
        ax.hist(v, bins=30, density=True, color="0.75", edgecolor="0.5")
        x = np.linspace(v.min() - 0.05 * np.ptp(v), v.max() + 0.05 * np.ptp(v), 300)
        ax.plot(x, pdf(x), color="C3", lw=1.5)
        ax.set_xlabel(label)
        ax.set_ylim(0, None)
        ax.tick_params(labelsize=9)
    left = axes[:, 0] if axes.ndim == 2 else flat[:1]
    for ax in left:
        ax.set_ylabel("probability density")


def priors_figure(params: InjectionParams, priors: InjectionPriors) -> plt.Figure:
    """Histogram of each drawn parameter with the density the priors file asks for."""
    fig, axes = plt.subplots(3, 3, figsize=(10, 7.5), layout="constrained")
    priors_axes(params, priors, axes)
    fig.suptitle(f"{len(params)} draws (histograms) against the priors (red)")
    return fig


def examples_figure(ex: ExampleInjections, stretch: float = 0.08) -> plt.Figure:
    """Per host: the host, then host + arc at each θ_E, without (top) and with (bottom) Poisson noise."""
    n_cols = 1 + len(ex.theta_es)
    fig, axes = plt.subplots(2 * len(ex.hosts), n_cols, figsize=(2.3 * n_cols, 4.6 * len(ex.hosts)), squeeze=False)
    for h, (host, clean, noisy) in enumerate(zip(ex.hosts, ex.clean, ex.noisy, strict=True)):
        for row, (res, tag) in enumerate(((clean, "no Poisson"), (noisy, "Poisson"))):
            ax_row = axes[2 * h + row]
            ax_row[0].imshow(rgb(host.image, stretch), origin="lower")
            ax_row[0].set_title(f"{host.meta.get('galaxy_id', '')}\nhost", fontsize=8)
            for k, te in enumerate(ex.theta_es):
                ax_row[k + 1].imshow(rgb(res.injected[k].cpu().numpy(), stretch), origin="lower")
                ax_row[k + 1].set_title(f"θ_E = {te:g}″, {tag}\nlensed r = {res.lensed_r_mag[k]:.1f}", fontsize=8)
            for ax in ax_row:
                ax.set_axis_off()
    fig.tight_layout()
    return fig


def crosscheck_figure(cc: CrossCheck) -> plt.Figure:
    """lenslib, lenstronomy and their difference (in units of the arc's peak) for each injection."""
    n = len(cc.params)
    fig, axes = plt.subplots(n, 3, figsize=(8, 2.6 * n), squeeze=False)
    for k in range(n):
        peak = np.abs(cc.lenstronomy[k]).max()
        for ax, img, title, kw in ((axes[k, 0], cc.ours[k], "lenslib", dict(cmap="magma")),
                                   (axes[k, 1], cc.lenstronomy[k], "lenstronomy", dict(cmap="magma")),
                                   (axes[k, 2], (cc.ours[k] - cc.lenstronomy[k]) / peak, "difference / peak",
                                    dict(cmap="RdBu_r", vmin=-1e-5, vmax=1e-5))):
            im = ax.imshow(img, origin="lower", **kw)
            ax.set_title(f"{title} (θ_E = {cc.params.theta_e[k]:g}″)", fontsize=8)
            ax.set_axis_off()
        fig.colorbar(im, ax=axes[k, 2], fraction=0.046)
    fig.tight_layout()
    return fig

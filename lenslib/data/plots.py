"""Figures of the data section: the positives on the sky by split, and cutouts as colour images."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from lenslib.data.cutouts import Cutout
from lenslib.survey import rgb


def sky_split_figure(df: pd.DataFrame) -> plt.Figure:
    """Positives (columns ra, dec, split, tier) on a Mollweide map, coloured by split; Tier A larger."""
    fig = plt.figure(figsize=(9, 5.2), layout="constrained")
    ax = fig.add_subplot(111, projection="mollweide")
    splits = [s for s in ("train", "val", "test") if (df["split"] == s).any()]
    for split, color in (("train", "C0"), ("val", "C1"), ("test", "C2")):
        for tier, size in (("B", 1), ("A", 6)):
            d = df[(df["split"] == split) & (df["tier"] == tier)]
            if len(d):
                ra = np.radians(np.where(d["ra"] > 180, d["ra"] - 360, d["ra"]))
                ax.scatter(ra, np.radians(d["dec"]), s=size, color=color, alpha=0.6, lw=0,
                           label=f"{split}, tier {tier} ({len(d)})")
    ax.tick_params(labelsize=8)
    ax.set_xlabel("RA (wrapped at 180°)", fontsize=9)
    ax.set_ylabel("Dec", fontsize=9)
    ax.grid(alpha=0.3)
    # one legend column per split, below the map (the map has no free corner)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.06), fontsize=8, markerscale=3, ncol=max(len(splits), 1),
              frameon=False)
    ax.set_title("Positives by HEALPix (nside 128, nested) split", fontsize=11, pad=16)
    return fig


def cutouts_figure(cutouts: list[Cutout], stretch: float = 0.08) -> plt.Figure:
    """Each cutout as a Lupton RGB image (z, r, g) and its three bands."""
    fig, axes = plt.subplots(len(cutouts), 4, figsize=(10, 2.7 * len(cutouts)), squeeze=False)
    for row, c in zip(axes, cutouts, strict=True):
        row[0].imshow(rgb(c.image, stretch), origin="lower")
        row[0].set_title(f"{c.meta.get('galaxy_id', '')} (g, r, z)", fontsize=8)
        for ax, band, img in zip(row[1:], "grz", c.image, strict=True):
            lo, hi = np.nanpercentile(img, [1, 99.5])
            ax.imshow(img, origin="lower", cmap="gray", vmin=lo, vmax=hi)
            ax.set_title(f"{band} band (nmgy)", fontsize=8)
        for ax in row:
            ax.set_axis_off()
    fig.tight_layout()
    return fig

"""Tables and figures of the lens-finder section: architecture summary, training curves, ROC, scores."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator
from sklearn.metrics import roc_auc_score, roc_curve
from torch import nn

from lenslib.finder.models import n_parameters


def architecture_table(model: nn.Module) -> pd.DataFrame:
    """Parameters per top-level block (weights and biases; BN running statistics are buffers, not counted)."""
    rows = [{"block": name, "type": type(m).__name__, "parameters": n_parameters(m)}
            for name, m in model.named_children()]
    rows.append({"block": "total", "type": type(model).__name__, "parameters": n_parameters(model)})
    return pd.DataFrame(rows)


def training_curves_figure(history: pd.DataFrame) -> plt.Figure:
    """Loss (train, val), validation AUC and learning rate against epoch, from ``metrics.jsonl``."""
    fig, ax = plt.subplots(1, 3, figsize=(11, 3.2))
    ax[0].plot(history["epoch"], history["train_loss"], "o-", label="train")
    ax[0].plot(history["epoch"], history["val_loss"], "s-", label="validation")
    ax[0].set(xlabel="epoch", ylabel="BCE loss")
    ax[0].legend()
    ax[1].plot(history["epoch"], history["val_auc"], "o-", color="C2")
    best = history.loc[history["val_auc"].idxmax()]
    ax[1].axvline(best["epoch"], ls=":", color="k", label=f"best.pt (epoch {int(best['epoch'])})")
    ax[1].set(xlabel="epoch", ylabel="validation AUC")
    ax[1].legend(loc="lower right", framealpha=1)
    ax[2].plot(history["epoch"], history["lr"], "o-", color="C3")
    ax[2].set(xlabel="epoch", ylabel="learning rate", yscale="log")
    for a in ax:
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    return fig


def roc_figure(labels: np.ndarray, scores: np.ndarray, thresholds: dict[float, float] | None = None) -> plt.Figure:
    """Validation ROC with its AUC; optional FPR-derived thresholds marked on the curve."""
    fpr, tpr, thr = roc_curve(labels, scores)
    fig, ax = plt.subplots(figsize=(4.2, 4))
    ax.plot(fpr, tpr, label=f"AUC = {roc_auc_score(labels, scores):.4f}")
    ax.plot([0, 1], [0, 1], ":", color="0.6")
    for f, tau in (thresholds or {}).items():
        k = np.searchsorted(-thr, -tau, side="right") - 1
        ax.plot(fpr[max(k, 0)], tpr[max(k, 0)], "o", label=f"τ(FPR {f:g}) = {tau:.3f}")
    ax.set(xlabel="false-positive rate", ylabel="true-positive rate (recall)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def score_distributions_figure(scores: np.ndarray, labels: np.ndarray) -> plt.Figure:
    """Histograms of p for lenses and non-lenses (log counts)."""
    fig, ax = plt.subplots(figsize=(5, 3.4))
    bins = np.linspace(0, 1, 41)
    ax.hist(scores[labels == 0], bins, alpha=0.6, label=f"non-lenses ({int((labels == 0).sum())})")
    ax.hist(scores[labels == 1], bins, alpha=0.6, label=f"lenses ({int((labels == 1).sum())})")
    ax.set(xlabel="score p = sigmoid(logit)", ylabel="cutouts", yscale="log")
    ax.legend()
    fig.tight_layout()
    return fig

"""The realism gate: can a lens finder's own features tell injected lenses from real ones?

:func:`realism_gate` takes a finder, real lens cutouts and injected cutouts (from any injection code) and
returns the linear probe's AUC (E.4: logistic regression on the penultimate features, 5 unshuffled folds)
with its fold spread and a bootstrap interval, the Fréchet distances (penultimate and per block), and both
populations' scores. An AUC near 0.5 means the injections look like real lenses to the finder; near 1 they
do not, and a selection function measured with them does not describe real lenses (the paper's finding:
0.997 for Sérsic injections in DR10).

:func:`matched_completeness` compares a grid with real lenses at the same brightness: the injections'
detection fraction reweighted to the real lenses' lensed-magnitude histogram.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from lenslib import LenslibError
from lenslib.experiments.compute.probe import frechet_blocks, frechet_penultimate, probe_fold_aucs
from lenslib.finder.scoring import embed
from lenslib.stats import jeffreys_interval

THRESHOLD = 0.3
MIN_PER_CLASS = 5


class GateError(LenslibError):
    """The gate's inputs cannot give an AUC (too few cutouts, mismatched features)."""


@dataclass
class GateResult:
    """What :func:`realism_gate` measures (AUC: real = positive class)."""

    auc: float  # mean of the fold AUCs
    auc_std: float  # population std of the fold AUCs
    auc_ci: tuple[float, float]  # 95 % bootstrap interval of the out-of-fold AUC
    fold_aucs: list[float]
    frechet_penultimate: float
    frechet_blocks: dict[str, float]
    n_real: int
    n_injected: int
    median_score_real: float
    median_score_injected: float
    recall_real: float  # fraction with p > threshold
    recall_injected: float
    threshold: float = THRESHOLD
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["auc_ci"] = list(self.auc_ci)
        return d


def _features(x: Any, where: str) -> dict[str, np.ndarray]:
    if isinstance(x, dict):
        if "penultimate" not in x or "scores" not in x:
            raise GateError(f"{where}: embeddings need 'penultimate' and 'scores', got {sorted(x)}")
        return {k: np.asarray(v, dtype=float) for k, v in x.items()}
    raise GateError(f"{where}: expected cutouts or an embeddings dict, got {type(x).__name__}")


def embeddings_of(finder: Any, cutouts: Any, batch_size: int = 256) -> dict[str, np.ndarray]:
    """Penultimate and per-block features and scores of raw cutouts (N, 3, H, W) nmgy.
    ``finder``: a :class:`~lenslib.finder.checkpoints.LoadedFinder` or anything with ``model`` and ``spec``."""
    e = embed(finder.model, cutouts, finder.spec, blocks=True, batch_size=batch_size)
    return {"penultimate": e.penultimate, "scores": e.scores, **e.blocks}


def _oof_auc_ci(x: np.ndarray, y: np.ndarray, n_bootstrap: int, seed: int) -> tuple[float, float]:
    clf = LogisticRegression(C=1.0, solver="lbfgs", max_iter=1000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        p = cross_val_predict(clf, x, y, cv=StratifiedKFold(5), method="predict_proba")[:, 1]
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    truth = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    aucs = [roc_auc_score(truth, np.r_[p[rng.choice(pos, len(pos))], p[rng.choice(neg, len(neg))]])
            for _ in range(n_bootstrap)]
    lo, hi = np.percentile(aucs, [2.5, 97.5]) if aucs else (np.nan, np.nan)
    return float(lo), float(hi)


def gate_from_embeddings(real: dict[str, np.ndarray], injected: dict[str, np.ndarray], *,
                         threshold: float = THRESHOLD, n_bootstrap: int = 500, seed: int = 42) -> GateResult:
    """:func:`realism_gate` on features already computed (dicts with ``penultimate``, ``scores`` and blocks)."""
    r, i = _features(real, "real"), _features(injected, "injected")
    if len(r["penultimate"]) < MIN_PER_CLASS or len(i["penultimate"]) < MIN_PER_CLASS:
        raise GateError(f"the gate needs at least {MIN_PER_CLASS} real and {MIN_PER_CLASS} injected cutouts, "
                        f"got {len(r['penultimate'])} and {len(i['penultimate'])}")
    if r["penultimate"].shape[1:] != i["penultimate"].shape[1:]:
        raise GateError(f"real and injected features differ in shape: {r['penultimate'].shape[1:]} vs "
                        f"{i['penultimate'].shape[1:]} (the same finder must embed both)")
    folds = probe_fold_aucs(r["penultimate"], i["penultimate"])
    x = np.concatenate([r["penultimate"], i["penultimate"]])
    y = np.r_[np.ones(len(r["penultimate"])), np.zeros(len(i["penultimate"]))]
    blocks = {k: v for k, v in r.items() if k not in ("penultimate", "scores")}
    return GateResult(
        auc=float(np.mean(folds)), auc_std=float(np.std(folds)), auc_ci=_oof_auc_ci(x, y, n_bootstrap, seed),
        fold_aucs=[float(a) for a in folds],
        frechet_penultimate=frechet_penultimate(r["penultimate"], i["penultimate"]),
        frechet_blocks=frechet_blocks(blocks, {k: v for k, v in i.items() if k not in ("penultimate", "scores")}),
        n_real=len(r["scores"]), n_injected=len(i["scores"]), median_score_real=float(np.median(r["scores"])),
        median_score_injected=float(np.median(i["scores"])), recall_real=float(np.mean(r["scores"] > threshold)),
        recall_injected=float(np.mean(i["scores"] > threshold)), threshold=threshold)


def realism_gate(finder: Any, real: Any, injected: Any, *, threshold: float = THRESHOLD, n_bootstrap: int = 500,
                 seed: int = 42, batch_size: int = 256) -> GateResult:
    """Probe AUC (with fold std and 95 % interval), Fréchet distances and scores of real vs injected lenses.

    Parameters
    ----------
    finder : LoadedFinder or object with ``model`` and ``spec``
        The lens finder whose features are probed (and whose preprocessing is applied).
    real, injected : array (N, 3, H, W) or dict
        Raw cutouts in nmgy (g, r, z), or embeddings from :func:`embeddings_of`.
    threshold : float
        Score above which a cutout counts as found (for the recall fields).
    """
    feats = [x if isinstance(x, dict) else embeddings_of(finder, x, batch_size) for x in (real, injected)]
    return gate_from_embeddings(feats[0], feats[1], threshold=threshold, n_bootstrap=n_bootstrap, seed=seed)


def matched_completeness(injections: pd.DataFrame, real_mags: Any, *, threshold: float = THRESHOLD,
                         bin_width: float = 0.5) -> dict[str, float]:
    """Detection fraction (score > ``threshold``) of grid injections weighted to the real lenses' lensed r
    magnitudes: per ``bin_width`` bin of lensed_r_mag, the injections' fraction, averaged with the real
    lenses' counts as weights (bins without injections are left out and reported). Jeffreys interval from the
    effective counts."""
    m = np.asarray(real_mags, dtype=float)
    m = m[np.isfinite(m)]
    if not len(m):
        raise GateError("matched_completeness needs the real lenses' lensed magnitudes; none are finite")
    lo, hi = np.floor(m.min() / bin_width) * bin_width, np.ceil(m.max() / bin_width) * bin_width + 1e-9
    edges = np.arange(lo, hi + bin_width, bin_width)
    inj = injections[np.isfinite(injections["lensed_r_mag"])]
    w_real, _ = np.histogram(m, edges)
    k_inj = np.digitize(inj["lensed_r_mag"].to_numpy(), edges) - 1
    det = inj["score"].to_numpy() > threshold
    frac, weight, n_eff = [], [], 0.0
    for b in range(len(edges) - 1):
        sel = k_inj == b
        if w_real[b] and sel.any():
            frac.append(det[sel].mean())
            weight.append(w_real[b])
            n_eff += sel.sum()
    covered = float(np.sum(weight) / len(m)) if weight else 0.0
    if not weight:
        return {"completeness": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "n_injections": 0,
                "real_covered": 0.0}
    c = float(np.average(frac, weights=weight))
    lo_ci, hi_ci = jeffreys_interval(c * n_eff, n_eff)
    return {"completeness": c, "ci_low": float(lo_ci), "ci_high": float(hi_ci), "n_injections": int(n_eff),
            "real_covered": covered}

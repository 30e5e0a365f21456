"""Linear probe (paper Table 5): AUCs recomputed from ``linear_probe/checkpoint.npz``.

The checkpoint holds the 612 out-of-fold probabilities (112 Tier-A, then 500 low-β_frac injections),
the 1 000 permutation AUCs and the legacy NumPy RNG state after the permutations, so the
pooled AUC, the fold AUCs, the permutation p-value and the bootstrap interval can all be
recomputed (the bootstrap is replayed from that RNG state, as the original script drew it).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from lenslib.experiments.artefacts import D06Artefacts

N_REAL = 112


def labels(n_total: int, n_real: int = N_REAL) -> np.ndarray:
    return np.r_[np.ones(n_real, int), np.zeros(n_total - n_real, int)]


def auc_rows(y: np.ndarray, score: np.ndarray) -> np.ndarray:
    """ROC AUC of each row (Mann–Whitney with mid-ranks: ties count one half, as roc_auc_score)."""
    ranks = rankdata(score, axis=1)
    n_pos = y.sum(axis=1)
    n_neg = y.shape[1] - n_pos
    return ((ranks * y).sum(axis=1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def pooled_auc(art: D06Artefacts) -> float:
    p = art.probe_checkpoint()["y_prob"]
    return float(roc_auc_score(labels(len(p)), p))


def fold_aucs(art: D06Artefacts, n_splits: int = 5, seed: int = 42) -> np.ndarray:
    """AUC of each test fold of StratifiedKFold(5, shuffle, random_state=42) on the out-of-fold probabilities."""
    p = art.probe_checkpoint()["y_prob"]
    y = labels(len(p))
    folds = StratifiedKFold(n_splits, shuffle=True, random_state=seed).split(np.zeros((len(y), 1)), y)
    return np.array([roc_auc_score(y[te], p[te]) for _, te in folds])


def fold_auc_mean(art: D06Artefacts) -> float:
    return float(fold_aucs(art).mean())


def fold_auc_std(art: D06Artefacts) -> float:
    return float(fold_aucs(art).std())  # population std, as the paper's scripts


def permutation_p(art: D06Artefacts) -> float:
    """(#permutation AUCs ≥ observed single-split AUC + 1) / (N + 1)."""
    c = art.probe_checkpoint()
    perm, obs = np.asarray(c["perm_aucs"]), float(c["single_auc"])
    return float(((perm >= obs).sum() + 1) / (len(perm) + 1))


def permutation_exceeding(art: D06Artefacts) -> int:
    c = art.probe_checkpoint()
    return int((np.asarray(c["perm_aucs"]) >= float(c["single_auc"])).sum())


def bootstrap(art: D06Artefacts, n_boot: int = 5000) -> dict:
    """Bootstrap of the pooled AUC replayed from the stored legacy RNG state (resamples of the 612 pairs).

    Cached on the artefact reader: the replay is deterministic and costs a few seconds."""
    key = f"bootstrap:{n_boot}"
    if key not in art._cache:
        art._cache[key] = _bootstrap(art, n_boot)
    return art._cache[key]


def _bootstrap(art: D06Artefacts, n_boot: int) -> dict:
    c = art.probe_checkpoint()
    p = np.asarray(c["y_prob"])
    y = labels(len(p))
    state = tuple(c["rng_state"])
    rs = np.random.RandomState()
    rs.set_state((str(state[0]), np.asarray(state[1], dtype=np.uint32), int(state[2]), int(state[3]), float(state[4])))
    idx = np.stack([rs.choice(len(p), len(p), replace=True) for _ in range(n_boot)])  # the original draw order
    yb = y[idx]
    keep = (yb.min(axis=1) == 0) & (yb.max(axis=1) == 1)  # resamples with one class have no AUC
    a = auc_rows(yb[keep], p[idx][keep])
    lo, hi = np.percentile(a, [2.5, 97.5])
    return {"n_valid": len(a), "ci95_lo": float(lo), "ci95_hi": float(hi), "mean": float(a.mean()),
            "std": float(a.std())}


def bootstrap_bound(art: D06Artefacts, bound: str = "lo") -> float:
    return bootstrap(art)["ci95_lo" if bound == "lo" else "ci95_hi"]


def reported(art: D06Artefacts, path: str) -> float:
    """A value read from ``feature_space_results.json`` by a dotted path (``linear_probe.cv_auc_mean``)."""
    node = art.probe_results()
    for part in path.split("."):
        node = node[part]
    return float(node)


def frechet_ratio(art: D06Artefacts, num: str = "features_3", den: str = "features_0") -> float:
    fd = art.probe_results()["frechet_distance_per_layer"]
    return float(fd[num]) / float(fd[den])


def summary_table(art: D06Artefacts) -> pd.DataFrame:
    """Table 5 as quantity, value, std, source."""
    r = art.probe_results()
    fa = fold_aucs(art)
    boot = bootstrap(art)
    rows = [
        ("probe AUC, Tier-A vs low-β_frac (5-fold CV, reported)", r["linear_probe"]["cv_auc_mean"],
         r["linear_probe"]["cv_auc_std"], "feature_space_results.json"),
        ("probe AUC, shuffled 5-fold, mean of folds (recomputed)", fa.mean(), fa.std(), "checkpoint.npz"),
        ("probe AUC, pooled out-of-fold (recomputed)", pooled_auc(art), np.nan, "checkpoint.npz"),
        ("bootstrap 95% CI lower (recomputed)", boot["ci95_lo"], np.nan, "checkpoint.npz"),
        ("bootstrap 95% CI upper (recomputed)", boot["ci95_hi"], np.nan, "checkpoint.npz"),
        ("permutation p-value (recomputed)", permutation_p(art), np.nan, "checkpoint.npz"),
        ("permutations with AUC >= observed", permutation_exceeding(art), np.nan, "checkpoint.npz"),
    ]
    for k, v in r["frechet_distance_per_layer"].items():
        rows.append((f"Fréchet distance {k}", v, np.nan, "feature_space_results.json"))
    for k, v in r["frechet_distance"].items():
        if k != "interpretation":
            rows.append((f"Fréchet distance penultimate {k}", v, np.nan, "feature_space_results.json"))
    for k, v in r["median_scores"].items():
        rows.append((f"median score {k}", v, np.nan, "feature_space_results.json"))
    return pd.DataFrame(rows, columns=["quantity", "value", "std", "source"])

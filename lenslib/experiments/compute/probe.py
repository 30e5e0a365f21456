"""§E.4: the linear probe, the Fréchet distances and the UMAP of the CNN's embeddings → ``linear_probe/``.

The input is the embeddings of four populations (real Tier-A lenses, low- and high-β_frac bright injections,
negatives), as the scorer extracts them: the 1280-d penultimate vector (``model.avgpool``), the CNN score and
the spatially pooled output of each feature block (``features_0`` … ``features_7``). From them
:func:`write_probe_artefacts` writes, in the D06 layout (``shared/spec/PAPER_SPEC.md`` §F.5–F.7):

``feature_space_results.json``
    E.4 items 8–10: the unshuffled 5-fold probe AUC (raw features), the Fréchet distances (penultimate and per
    block) and the median scores; the keys of the authors' file (``frechet_distance_per_layer`` always holds
    ``features_0`` … ``features_7``, NaN for a block not given; another architecture's blocks, if any, go to
    ``frechet_other_blocks.json`` so the authors' schema holds).
``permutation_bootstrap_results.json``
    E.4 item 11: shuffled 5-fold AUCs of a scaled probe, the permutation test on a fixed 80/20 split and the
    bootstrap interval of the pooled out-of-fold AUC; the keys of the stored D06 file (§F.6).
``checkpoint.npz``
    §F.7: the resume state of the permutation loop (written atomically every ``checkpoint_every`` permutations;
    a killed run resumes from it) and, once complete, everything the book needs to recompute the pooled AUC,
    the fold AUCs, the permutation p-value and the bootstrap interval (:mod:`lenslib.experiments.probe`).
``embeddings.npz``
    E.4 item 7: ``emb_<population>`` and ``scores_<population>``; lenslib adds ``blocks_<population>_features_<k>``
    (the per-block vectors, so that the book can recompute the per-block Fréchet distances) and, with a Tier-B
    control, ``emb_tier_b``, ``scores_tier_b`` and ``groups_tier_a`` / ``groups_tier_b`` (when groups are given).
``tier_ab_probe_results.json``
    E.4 item 12, only with ``tier_b``: the Tier-A vs Tier-B control probe (see :func:`tier_ab_probe`).
``umap_coordinates.npz``
    E.4 item 13, with ``umap=True``: see :func:`umap_coordinates`.

Every ``.npz`` is written with fixed zip timestamps, so the same inputs give byte-identical files; the JSON files
are byte-identical too when ``SOURCE_DATE_EPOCH`` fixes their ``timestamp_utc``.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.linalg import sqrtm
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import (
    GroupKFold,
    StratifiedKFold,
    StratifiedShuffleSplit,
    cross_val_predict,
    cross_val_score,
)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from lenslib import LenslibError
from lenslib._tqdm import tqdm
from lenslib._util import utc_now, write_json, write_npz
from lenslib.parallel import Executor

POPULATIONS = ("real_tier_a", "inj_low_bf", "inj_high_bf", "negatives")
BLOCKS = tuple(f"features_{k}" for k in range(8))
N_SPLITS = 5
MIN_FD_SAMPLES = 10  # the authors' script computes a penultimate Fréchet distance only for n > 10 per side
UMAP_PARAMS = {"n_neighbors": 30, "min_dist": 0.3, "metric": "cosine", "random_state": 42}

FILES = {
    "feature_space": "feature_space_results.json",
    "permutation": "permutation_bootstrap_results.json",
    "checkpoint": "checkpoint.npz",
    "embeddings": "embeddings.npz",
    "tier_ab": "tier_ab_probe_results.json",
    "umap": "umap_coordinates.npz",
    "other_blocks": "frechet_other_blocks.json",
}


class ProbeInputError(LenslibError, ValueError):
    """The embeddings handed to the probe are missing, malformed or too few (naming population and key)."""


class ProbeCheckpointMismatch(LenslibError, ValueError):
    """A ``checkpoint.npz`` found in the output folder was written for other inputs or another seed."""


# ---------------------------------------------------------------------------------------------------------
# inputs


def _array(value: Any, where: str, ndim: int, n: int | None = None) -> np.ndarray:
    try:
        a = np.asarray(value)
    except Exception as exc:  # ragged lists and the like
        raise ProbeInputError(f"{where}: not an array ({exc})") from None
    if a.dtype.kind not in "fiu" or a.dtype.kind == "b":
        raise ProbeInputError(f"{where}: must hold real numbers, got dtype {a.dtype}")
    if a.dtype.kind in "iu":
        a = a.astype(np.float64)
    if a.ndim != ndim:
        shape = "(n, d)" if ndim == 2 else "(n,)"
        raise ProbeInputError(f"{where}: must have shape {shape}, got shape {a.shape}")
    if n is not None and a.shape[0] != n:
        raise ProbeInputError(f"{where}: has {a.shape[0]} rows, but the population's 'penultimate' has {n}")
    if ndim == 2 and a.shape[1] == 0:
        raise ProbeInputError(f"{where}: has no columns")
    bad = ~np.isfinite(a)
    if bad.any():
        raise ProbeInputError(f"{where}: {int(bad.sum())} non-finite value(s) (NaN or inf)")
    return a


def block_names(*pops: Mapping[str, Any]) -> list[str]:
    """The feature blocks of the populations, in order: ``features_0`` … ``features_7`` (always, as the D06
    files), then any other block (ResNet finders: ``stem``, ``layer1`` …) in the order first met."""
    extra = [k for pop in pops for k in pop if k not in ("penultimate", "scores") and k not in BLOCKS]
    return list(BLOCKS) + list(dict.fromkeys(extra))


def validate_population(pop: Any, name: str, *, blocks: bool = True) -> dict[str, np.ndarray]:
    """One population's arrays, checked: ``penultimate`` (n, d), ``scores`` (n,) and, with ``blocks``, every
    other key as a feature block (n, d_k) (``features_0`` … ``features_7`` for the paper's EfficientNet; a key
    that is ``None`` is left out). Without ``blocks`` other keys are ignored (the Tier-B control).

    Integer arrays are converted to float64; float arrays are kept as they are (float32 embeddings stay float32,
    as the authors' arrays). Raises :class:`ProbeInputError` naming the population and the key."""
    if not isinstance(pop, Mapping):
        raise ProbeInputError(f"population {name!r}: must be a mapping of array name → array, got {type(pop).__name__}")
    for key in ("penultimate", "scores"):
        if key not in pop:
            raise ProbeInputError(f"population {name!r}: missing key {key!r}")
    emb = _array(pop["penultimate"], f"population {name!r} key 'penultimate'", 2)
    n = emb.shape[0]
    if n == 0:
        raise ProbeInputError(f"population {name!r}: has no rows")
    out = {"penultimate": emb, "scores": _array(pop["scores"], f"population {name!r} key 'scores'", 1, n)}
    if blocks:
        for b, value in pop.items():
            if b in out or value is None:
                continue
            if not isinstance(b, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", b):
                raise ProbeInputError(f"population {name!r}: block name {b!r} must be letters, digits and '_'")
            out[b] = _array(value, f"population {name!r} key {b!r}", 2, n)
    return out


def validate_populations(populations: Any) -> dict[str, dict[str, np.ndarray]]:
    """All four populations checked (see :func:`validate_population`), plus what holds across them:
    one penultimate dimension, one dimension per block, and at least 5 real and 5 low-β_frac rows
    (5-fold cross-validation)."""
    if not isinstance(populations, Mapping):
        raise ProbeInputError(f"populations: must be a mapping with keys {list(POPULATIONS)}, "
                              f"got {type(populations).__name__}")
    missing = [p for p in POPULATIONS if p not in populations]
    if missing:
        raise ProbeInputError(f"populations: missing population(s) {missing}; expected {list(POPULATIONS)}")
    unknown = sorted(set(populations) - set(POPULATIONS))
    if unknown:
        raise ProbeInputError(f"populations: unknown population(s) {unknown}; expected {list(POPULATIONS)}")
    pops = {p: validate_population(populations[p], p) for p in POPULATIONS}
    d = pops["real_tier_a"]["penultimate"].shape[1]
    for p in POPULATIONS:
        if pops[p]["penultimate"].shape[1] != d:
            raise ProbeInputError(f"population {p!r} key 'penultimate': dimension {pops[p]['penultimate'].shape[1]}"
                                  f" differs from real_tier_a's {d}")
        for b in block_names(*pops.values()):
            ref = next((pops[q][b].shape[1] for q in POPULATIONS if b in pops[q]), None)
            if b in pops[p] and pops[p][b].shape[1] != ref:
                raise ProbeInputError(f"population {p!r} key {b!r}: dimension {pops[p][b].shape[1]} differs from "
                                      f"{ref} in the other populations")
    for p in ("real_tier_a", "inj_low_bf"):
        n = len(pops[p]["scores"])
        if n < N_SPLITS:
            raise ProbeInputError(f"population {p!r}: {n} row(s); the {N_SPLITS}-fold probe needs at least {N_SPLITS}")
    return pops


# ---------------------------------------------------------------------------------------------------------
# the numbers


def _probe_xy(x_pos: np.ndarray, x_neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """X = [positives; negatives], y = 1 then 0 (float, as the authors' scripts)."""
    return np.concatenate([x_pos, x_neg], axis=0), np.concatenate([np.ones(len(x_pos)), np.zeros(len(x_neg))])


def probe_fold_aucs(x_real: np.ndarray, x_inj: np.ndarray, n_splits: int = N_SPLITS) -> np.ndarray:
    """E.4 item 8: fold ROC AUCs of ``LogisticRegression(C=1, lbfgs, max_iter=1000)`` on the raw features,
    ``cross_val_score(cv=5, scoring="roc_auc")`` (unshuffled StratifiedKFold); real = 1, injections = 0."""
    x, y = _probe_xy(x_real, x_inj)
    clf = LogisticRegression(C=1.0, solver="lbfgs", max_iter=1000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return cross_val_score(clf, x, y, cv=StratifiedKFold(n_splits), scoring="roc_auc")


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """FD = ‖μ1 − μ2‖² + Tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^{1/2}) with ``scipy.linalg.sqrtm`` (real part if complex)."""
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    diff = mu1 - mu2
    covmean = sqrtm(sigma1 @ sigma2)
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1 + sigma2 - 2.0 * covmean))


def frechet_between(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance of the Gaussians fitted to two samples: mean and ``np.cov(rowvar=False)`` (ddof 1)."""
    return frechet_distance(np.mean(a, axis=0), np.cov(a, rowvar=False), np.mean(b, axis=0), np.cov(b, rowvar=False))


def frechet_penultimate(a: np.ndarray, b: np.ndarray) -> float:
    """E.4 item 9, penultimate: computed when both samples have more than 10 rows (even if n < d), else NaN."""
    if a.shape[0] > MIN_FD_SAMPLES and b.shape[0] > MIN_FD_SAMPLES:
        return frechet_between(a, b)
    return float("nan")


def frechet_block(a: np.ndarray | None, b: np.ndarray | None) -> float:
    """E.4 item 9, one feature block: computed only when both sample counts exceed the dimension, else NaN
    (NaN too when either population lacks the block)."""
    if a is None or b is None:
        return float("nan")
    if a.shape[0] > a.shape[1] and b.shape[0] > b.shape[1]:
        return frechet_between(a, b)
    return float("nan")


def frechet_blocks(real: Mapping[str, np.ndarray], inj: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Per-block Fréchet distances real vs injections for ``features_0`` … ``features_7`` (always) and any other
    block either population has (:func:`block_names`); NaN where undefined or where a population lacks it."""
    return {b: frechet_block(real.get(b), inj.get(b)) for b in block_names(real, inj)}


def feature_space_results(pops: Mapping[str, Mapping[str, np.ndarray]], *, checkpoint: str = "",
                          theta_e: float = 1.5, target_mag: float = 19.0, add_sky_noise: bool = False,
                          add_poisson_noise: bool = False, gain_e_per_nmgy: float = 150.0) -> dict:
    """The content of ``feature_space_results.json`` (§F.5) from validated populations."""
    real, low, high = pops["real_tier_a"], pops["inj_low_bf"], pops["inj_high_bf"]
    aucs = probe_fold_aucs(real["penultimate"], low["penultimate"])
    return {
        "timestamp_utc": utc_now(),
        "checkpoint": str(checkpoint),
        "n_real_tier_a": int(len(real["scores"])),
        "n_inj_low_bf": int(len(low["scores"])),
        "n_inj_high_bf": int(len(high["scores"])),
        "n_negatives": int(len(pops["negatives"]["scores"])),
        "target_mag": float(target_mag),
        "theta_e": float(theta_e),
        "add_sky_noise": bool(add_sky_noise),
        "add_poisson_noise": bool(add_poisson_noise),
        "gain_e_per_nmgy": float(gain_e_per_nmgy) if add_poisson_noise else None,
        "linear_probe": {
            "task": "real_tier_a vs inj_low_bf",
            "cv_auc_mean": float(np.mean(aucs)),
            "cv_auc_std": float(np.std(aucs)),
            "interpretation": "AUC near 1.0 means CNN encodes injection-ness direction",
        },
        "frechet_distance_per_layer": {b: v for b, v in frechet_blocks(real, low).items() if b in BLOCKS},
        "frechet_distance": {
            "real_vs_low_bf": frechet_penultimate(real["penultimate"], low["penultimate"]),
            "real_vs_high_bf": frechet_penultimate(real["penultimate"], high["penultimate"]),
            "interpretation": "Higher FD = more different in feature space",
        },
        "median_scores": {p: float(np.median(pops[p]["scores"])) for p in POPULATIONS},
    }


# ---------------------------------------------------------------------------------------------------------
# permutation test and bootstrap (E.4 item 11), resumable


def _object_state(state: tuple) -> np.ndarray:
    out = np.empty(len(state), dtype=object)  # element by element: the 624-word key stays one array
    for i, v in enumerate(state):
        out[i] = v
    return out


def _state_tuple(obj: np.ndarray) -> tuple:
    s = tuple(obj)
    return str(s[0]), np.asarray(s[1], dtype=np.uint32), int(s[2]), int(s[3]), float(s[4])


def _replayed_state(seed: int, y: np.ndarray, n_done: int) -> tuple:
    """The legacy RNG state after ``np.random.seed(seed)`` and ``n_done`` calls of ``np.random.permutation(y)``."""
    rs = np.random.RandomState(seed)
    for _ in range(n_done):
        rs.permutation(y)
    return rs.get_state()


def _same_state(a: tuple, b: tuple) -> bool:
    return a[0] == b[0] and np.array_equal(a[1], b[1]) and tuple(a[2:]) == tuple(b[2:])


def _single_split(x: np.ndarray, y: np.ndarray, seed: int):
    tr, te = next(StratifiedShuffleSplit(n_splits=1, test_size=0.2, random_state=seed).split(x, y))
    sc = StandardScaler().fit(x[tr])
    return tr, te, sc.transform(x[tr]), sc.transform(x[te])


def _single_split_auc(x: np.ndarray, y: np.ndarray, seed: int) -> float:
    tr, te, x_tr, x_te = _single_split(x, y, seed)
    lr = LogisticRegression(max_iter=500, solver="lbfgs").fit(x_tr, y[tr])
    return float(roc_auc_score(y[te], lr.predict_proba(x_te)[:, 1]))


def _observed(x: np.ndarray, y: np.ndarray, seed: int) -> dict[str, Any]:
    """Shuffled 5-fold out-of-fold probabilities of StandardScaler + LR(max_iter=500), their pooled and
    per-fold AUCs, and the single-split AUC."""
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500, solver="lbfgs"))
    cv = StratifiedKFold(n_splits=N_SPLITS, shuffle=True, random_state=seed)
    y_prob = cross_val_predict(clf, x, y, cv=cv, method="predict_proba")[:, 1]
    folds = np.array([roc_auc_score(y[te], y_prob[te]) for _, te in cv.split(x, y)])
    return {"observed_auc": float(roc_auc_score(y, y_prob)), "observed_std": float(np.std(folds)),
            "fold_aucs": folds, "single_auc": _single_split_auc(x, y, seed), "y_prob": y_prob}


def _save_checkpoint(path: Path, completed: int, perm_aucs: np.ndarray, obs: Mapping[str, Any],
                     state: tuple) -> None:
    write_npz(path, {
        "completed_perm": np.array(completed, dtype=np.int64),
        "perm_aucs": np.asarray(perm_aucs, dtype=np.float64),
        "observed_auc": np.array(obs["observed_auc"], dtype=np.float64),
        "observed_std": np.array(obs["observed_std"], dtype=np.float64),
        "fold_aucs": np.asarray(obs["fold_aucs"], dtype=np.float64),
        "single_auc": np.array(obs["single_auc"], dtype=np.float64),
        "y_prob": np.asarray(obs["y_prob"], dtype=np.float64),
        "rng_state": _object_state(state),
    }, allow_pickle=True)


def _load_checkpoint(path: Path, x: np.ndarray, y: np.ndarray, seed: int) -> dict[str, Any]:
    """A checkpoint left in the output folder, checked against these inputs: the number of probabilities, the
    RNG state replayed from ``seed`` over the completed permutations, and the single-split AUC refitted now."""
    try:
        with np.load(path, allow_pickle=True) as z:
            c = {k: z[k] for k in z.files}
        completed = int(c["completed_perm"])
        obs = {"observed_auc": float(c["observed_auc"]), "observed_std": float(c["observed_std"]),
               "fold_aucs": np.asarray(c["fold_aucs"], dtype=np.float64), "single_auc": float(c["single_auc"]),
               "y_prob": np.asarray(c["y_prob"], dtype=np.float64)}
        perm = np.asarray(c["perm_aucs"], dtype=np.float64)
        state = _state_tuple(c["rng_state"])
    except Exception as exc:
        raise ProbeCheckpointMismatch(f"{path}: not a readable probe checkpoint ({exc}); delete it or pass "
                                      f"resume=False") from None
    why = None
    if len(obs["y_prob"]) != len(y):
        why = f"it holds {len(obs['y_prob'])} probabilities, these inputs have {len(y)} rows"
    elif not 0 <= completed <= len(perm):
        why = f"completed_perm {completed} is outside 0..{len(perm)}"
    elif not _same_state(state, _replayed_state(seed, y, completed)):
        why = f"its RNG state is not that of seed {seed} after {completed} permutations"
    elif obs["single_auc"] != _single_split_auc(x, y, seed):
        why = "its single-split AUC differs from the one refitted on these inputs"
    if why:
        raise ProbeCheckpointMismatch(f"{path}: written for other inputs ({why}); delete it or pass resume=False")
    return {"completed": completed, "perm_aucs": perm, "obs": obs, "state": state}


PERMUTATIONS_PER_TASK = 25  # the smallest Dask task of the permutation test


def _permutation_auc(y_perm: np.ndarray, tr: np.ndarray, te: np.ndarray, x_tr: np.ndarray,
                     x_te: np.ndarray) -> float:
    """AUC of LogisticRegression(max_iter=200) fitted to permuted labels on the fixed split (0.5 when a part
    of the split has one class)."""
    y_tr, y_te = y_perm[tr], y_perm[te]
    if len(np.unique(y_tr)) < 2 or len(np.unique(y_te)) < 2:
        return 0.5
    lr = LogisticRegression(max_iter=200, solver="lbfgs").fit(x_tr, y_tr)
    return float(roc_auc_score(y_te, lr.predict_proba(x_te)[:, 1]))


@dataclass(frozen=True)
class _PermutationContext:
    """What every permutation task needs: the fixed split (scaled features, indices), the labels, the seed."""

    x_tr: np.ndarray
    x_te: np.ndarray
    tr: np.ndarray
    te: np.ndarray
    y: np.ndarray
    seed: int


def permutation_chunk(ctx: _PermutationContext, span: tuple[int, int]) -> np.ndarray:
    """AUCs of permutations ``a .. b-1`` (0-based) of the sequential test: the RNG replayed to permutation a."""
    a, b = span
    rs = np.random.RandomState(ctx.seed)
    rs.set_state(_replayed_state(ctx.seed, ctx.y, a))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return np.array([_permutation_auc(rs.permutation(ctx.y), ctx.tr, ctx.te, ctx.x_tr, ctx.x_te)
                         for _ in range(a, b)])


def permutation_bootstrap(x_real: np.ndarray, x_inj: np.ndarray, checkpoint_path: Path, *, seed: int = 42,
                          n_permutations: int = 1000, n_bootstrap: int = 5000, checkpoint_every: int = 10,
                          resume: bool = True, progress: bool = True,
                          on_permutation: Callable[[int], None] | None = None,
                          executor: Executor | None = None) -> dict:
    """E.4 item 11: the content of ``permutation_bootstrap_results.json`` (§F.6), with ``checkpoint.npz`` (§F.7).

    As ``scripts/permutation_bootstrap_auc.py``: ``np.random.seed(seed)`` (here a private legacy
    ``RandomState(seed)``, the same stream without touching NumPy's global state); StandardScaler +
    LogisticRegression(max_iter=500) out-of-fold probabilities over StratifiedKFold(5, shuffle, seed)
    (``cross_val_predict``); one StratifiedShuffleSplit(test_size=0.2, seed) with the scaler fit on its train
    part; ``n_permutations`` fits of LogisticRegression(max_iter=200) to ``np.random.permutation(y)`` on that
    split, p = (#AUC ≥ single-split AUC + 1)/(N + 1); then ``n_bootstrap`` resamples
    ``np.random.choice(n, n, replace=True)`` of the out-of-fold (y, p) pairs from the RNG state after the
    permutations (resamples with one class are dropped: ``n_valid``).

    The checkpoint is written before the first permutation, every ``checkpoint_every`` permutations and after
    the last; with ``resume`` an existing checkpoint (checked against the inputs, else
    :class:`ProbeCheckpointMismatch`) is continued, so a killed run and an uninterrupted one write the same
    files. A checkpoint with fewer permutations than ``n_permutations`` is extended, one with more is cut back
    (the RNG state is replayed). ``on_permutation(k)`` is called after permutation k (1-based) and its
    checkpoint write.

    With a Dask ``executor`` the permutations still to do run as tasks of ``checkpoint_every`` (at least
    :data:`PERMUTATIONS_PER_TASK`) permutations each; a task replays the RNG to its first permutation, so the
    AUCs, the checkpoint and the results are those of the sequential loop (``on_permutation`` is then called
    once, with ``n_permutations``)."""
    if n_permutations < 1 or n_bootstrap < 1 or checkpoint_every < 1:
        raise ProbeInputError(f"n_permutations ({n_permutations}), n_bootstrap ({n_bootstrap}) and "
                              f"checkpoint_every ({checkpoint_every}) must be >= 1")
    checkpoint_path = Path(checkpoint_path)
    x, y = _probe_xy(x_real, x_inj)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ck = _load_checkpoint(checkpoint_path, x, y, seed) if resume and checkpoint_path.exists() else None
        rs = np.random.RandomState(seed)
        if ck is None:
            obs = _observed(x, y, seed)
            perm_aucs, start = np.zeros(n_permutations), 0
            _save_checkpoint(checkpoint_path, 0, perm_aucs, obs, rs.get_state())
        else:
            obs, start = ck["obs"], min(ck["completed"], n_permutations)
            perm_aucs = np.zeros(n_permutations)
            perm_aucs[:start] = ck["perm_aucs"][:start]
            rs.set_state(ck["state"] if start == ck["completed"] else _replayed_state(seed, y, start))
            if start < ck["completed"] or len(ck["perm_aucs"]) != n_permutations:
                _save_checkpoint(checkpoint_path, start, perm_aucs, obs, rs.get_state())
        tr, te, x_tr, x_te = _single_split(x, y, seed)
        if executor is not None and executor.kind != "local" and start < n_permutations:
            size = max(checkpoint_every, PERMUTATIONS_PER_TASK)
            chunks = [(a, min(a + size, n_permutations)) for a in range(start, n_permutations, size)]
            ctx = _PermutationContext(x_tr, x_te, tr, te, y, seed)
            for (a, b), aucs in zip(chunks, executor.map(permutation_chunk, ctx, chunks, desc="probe permutations",
                                                         progress=progress), strict=True):
                perm_aucs[a:b] = aucs
            rs.set_state(_replayed_state(seed, y, n_permutations))
            _save_checkpoint(checkpoint_path, n_permutations, perm_aucs, obs, rs.get_state())
            if on_permutation is not None:
                on_permutation(n_permutations)
            start = n_permutations
        bar = tqdm(total=n_permutations, initial=start, desc="probe permutations", disable=not progress,
                   leave=False)
        with bar:
            for i in range(start, n_permutations):
                perm_aucs[i] = _permutation_auc(rs.permutation(y), tr, te, x_tr, x_te)
                done = i + 1
                if done % checkpoint_every == 0 or done == n_permutations:
                    _save_checkpoint(checkpoint_path, done, perm_aucs, obs, rs.get_state())
                bar.update(1)
                if on_permutation is not None:
                    on_permutation(done)
    single = obs["single_auc"]
    n_exceeding = int(np.sum(perm_aucs >= single))
    y_prob, n = obs["y_prob"], len(y)
    boot = np.full(n_bootstrap, np.nan)
    for i in range(n_bootstrap):
        idx = rs.choice(n, size=n, replace=True)
        if len(np.unique(y[idx])) == 2:
            boot[i] = roc_auc_score(y[idx], y_prob[idx])
    valid = boot[~np.isnan(boot)]
    lo, hi = (float(v) for v in np.percentile(valid, [2.5, 97.5])) if len(valid) else (float("nan"),) * 2
    folds = np.asarray(obs["fold_aucs"], dtype=np.float64)
    return {
        "observed_auc_mean": float(folds.mean()),
        "observed_auc_std": float(folds.std()),
        "observed_auc_folds": [float(a) for a in folds],
        "permutation_test": {
            "n_permutations": int(n_permutations),
            "p_value": float((n_exceeding + 1) / (n_permutations + 1)),
            "n_exceeding": n_exceeding,
            "max_perm_auc": float(perm_aucs.max()),
            "mean_perm_auc": float(perm_aucs.mean()),
        },
        "bootstrap_ci": {
            "n_bootstrap": int(n_bootstrap),
            "n_valid": int(len(valid)),
            "ci_95_lower": lo,
            "ci_95_upper": hi,
            "mean": float(valid.mean()) if len(valid) else float("nan"),
            "std": float(valid.std()) if len(valid) else float("nan"),
        },
    }


# ---------------------------------------------------------------------------------------------------------
# Tier-A vs Tier-B control (E.4 item 12)


def _score_stats(s: np.ndarray) -> dict[str, float]:
    return {"median": float(np.median(s)), "mean": float(np.mean(s)), "p5": float(np.percentile(s, 5)),
            "p95": float(np.percentile(s, 95))}


def _groups(groups: Sequence | np.ndarray | None, n: int, where: str) -> np.ndarray | None:
    if groups is None:
        return None
    g = np.asarray(groups)
    if g.ndim != 1 or len(g) != n:
        raise ProbeInputError(f"{where}: must have one entry per row ({n}), got shape {g.shape}")
    return g.astype(str)  # as the authors' script: galaxy_id as strings


def tier_ab_fold_aucs(x_a: np.ndarray, x_b: np.ndarray, groups: np.ndarray | None = None) -> tuple[np.ndarray, str]:
    """Fold ROC AUCs of ``LogisticRegression(C=1, lbfgs, max_iter=1000)``, Tier-A = 1 vs Tier-B = 0, raw features;
    ``GroupKFold(min(5, #groups))`` with ``groups`` (one per row of [A; B]), else StratifiedKFold(5).
    Returns the AUCs and the name of the splitter."""
    x, y = _probe_xy(x_a, x_b)
    clf = LogisticRegression(C=1.0, solver="lbfgs", max_iter=1000)
    if groups is not None:
        cv, method = GroupKFold(n_splits=min(N_SPLITS, len(set(groups.tolist())))), "GroupKFold"
    else:
        cv, method = StratifiedKFold(N_SPLITS), "StratifiedKFold"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return cross_val_score(clf, x, y, cv=cv, groups=groups, scoring="roc_auc"), method


def tier_ab_probe(real: Mapping[str, np.ndarray], tier_b: Mapping[str, np.ndarray], *, groups_a=None,
                  groups_b=None, checkpoint: str = "", seed: int = 42) -> dict:
    """The content of ``tier_ab_probe_results.json`` (E.4 item 12; the authors' ``tier_ab_probe_control.py``
    layout, which the D06 artefacts lack):

    - ``timestamp_utc``, ``checkpoint``, ``n_tier_a``, ``n_tier_b``, ``seed`` (recorded; the sampling is upstream)
    - ``cv_method`` (``"GroupKFold"`` with groups, else ``"StratifiedKFold"``), ``n_folds``, ``n_unique_groups``
      (null without groups)
    - ``linear_probe_tier_ab``: ``task``, ``cv_auc_mean``, ``cv_auc_std`` (np.std, ddof 0), ``cv_fold_aucs``,
      ``interpretation``
    - ``score_stats``: ``tier_a`` / ``tier_b`` → ``median``, ``mean``, ``p5``, ``p95`` of the CNN scores
      (``score_stats.tier_b.median`` is the paper's Tier-B median score)

    The Tier-A side is the ``real_tier_a`` population (its rows in the order given)."""
    n_a, n_b = len(real["scores"]), len(tier_b["scores"])
    if (groups_a is None) != (groups_b is None):
        raise ProbeInputError("tier_a_groups and tier_b_groups: give both or neither")
    ga = _groups(groups_a, n_a, "tier_a_groups")
    gb = _groups(groups_b, n_b, "tier_b_groups")
    groups = None if ga is None else np.concatenate([ga, gb])
    if groups is not None and len(set(groups.tolist())) < 2:
        raise ProbeInputError("tier_a_groups/tier_b_groups: GroupKFold needs at least 2 distinct groups")
    aucs, method = tier_ab_fold_aucs(real["penultimate"], tier_b["penultimate"], groups)
    mean, std = float(np.mean(aucs)), float(np.std(aucs))
    return {
        "timestamp_utc": utc_now(),
        "checkpoint": str(checkpoint),
        "n_tier_a": int(n_a),
        "n_tier_b": int(n_b),
        "seed": int(seed),
        "cv_method": method,
        "n_folds": int(len(aucs)),
        "n_unique_groups": None if groups is None else int(len(set(groups.tolist()))),
        "linear_probe_tier_ab": {
            "task": "tier_a vs tier_b",
            "cv_auc_mean": mean,
            "cv_auc_std": std,
            "cv_fold_aucs": [float(a) for a in aucs],
            "interpretation": f"AUC = {mean:.3f} +/- {std:.3f} ({method}, {len(aucs)} folds); "
                              "0.5 = Tier-A and Tier-B indistinguishable to a linear probe",
        },
        "score_stats": {"tier_a": _score_stats(real["scores"]), "tier_b": _score_stats(tier_b["scores"])},
    }


# ---------------------------------------------------------------------------------------------------------
# UMAP (E.4 item 13)


def umap_coordinates(embeddings: Mapping[str, np.ndarray], *, n_neighbors: int = 30, min_dist: float = 0.3,
                     metric: str = "cosine", random_state: int = 42,
                     use_umap: bool = True) -> dict[str, Any]:
    """2-d map of the penultimate embeddings concatenated in the order of ``embeddings`` (the paper: real Tier-A,
    low-β_frac, high-β_frac, negatives): ``umap.UMAP(n_neighbors, min_dist, metric, random_state)``, or
    ``PCA(2)`` when umap-learn cannot be imported (or ``use_umap=False``).

    Returns ``coords`` (N, 2), ``labels`` (N,) the population of each row, ``method`` (``"umap"`` or ``"pca"``)
    and ``params`` (the settings used)."""
    names = list(embeddings)
    if not names:
        raise ProbeInputError("umap_coordinates: no embeddings given")
    x = np.concatenate([np.asarray(embeddings[k]) for k in names], axis=0)
    labels = np.concatenate([np.full(len(embeddings[k]), k) for k in names]).astype(str)
    reducer, method = None, "pca"
    if use_umap:
        try:
            import umap  # umap-learn; imported here, it takes a few seconds (numba)
        except ImportError:
            pass
        else:
            reducer, method = umap.UMAP(n_components=2, n_neighbors=n_neighbors, min_dist=min_dist, metric=metric,
                                        random_state=random_state), "umap"
            params = {"n_neighbors": n_neighbors, "min_dist": min_dist, "metric": metric,
                      "random_state": random_state, "umap_version": getattr(umap, "__version__", "unknown")}
    if reducer is None:
        from sklearn.decomposition import PCA

        reducer = PCA(n_components=2, random_state=random_state)
        params = {"n_components": 2, "random_state": random_state}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # umap: "n_jobs overridden to 1 by setting random_state"
        coords = reducer.fit_transform(x)
    return {"coords": np.asarray(coords), "labels": labels, "method": method, "params": params}


# ---------------------------------------------------------------------------------------------------------
# writing




def embeddings_arrays(pops: Mapping[str, Mapping[str, np.ndarray]], tier_b: Mapping[str, np.ndarray] | None = None,
                      groups_a: np.ndarray | None = None, groups_b: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The arrays of ``embeddings.npz`` (see the module docstring for the keys)."""
    out: dict[str, np.ndarray] = {}
    for p in POPULATIONS:
        out[f"emb_{p}"] = pops[p]["penultimate"]
        out[f"scores_{p}"] = pops[p]["scores"]
    for p in POPULATIONS:
        for b in block_names(pops[p]):
            if b in pops[p]:
                out[f"blocks_{p}_{b}"] = pops[p][b]
    if tier_b is not None:
        out["emb_tier_b"], out["scores_tier_b"] = tier_b["penultimate"], tier_b["scores"]
        if groups_a is not None:
            out["groups_tier_a"], out["groups_tier_b"] = groups_a, groups_b
    return out


def write_probe_artefacts(out_dir: Path, populations: dict[str, dict[str, np.ndarray]], *, checkpoint: str = "",
                          theta_e: float = 1.5, target_mag: float = 19.0, seed: int = 42,
                          n_permutations: int = 1000, n_bootstrap: int = 5000,
                          tier_b: dict[str, np.ndarray] | None = None, tier_a_groups=None, tier_b_groups=None,
                          umap: bool = True, progress: bool = True, checkpoint_every: int = 10,
                          resume: bool = True, add_sky_noise: bool = False, add_poisson_noise: bool = False,
                          gain_e_per_nmgy: float = 150.0,
                          on_permutation: Callable[[int], None] | None = None,
                          executor: Executor | None = None) -> dict:
    """Write the linear-probe artefacts of §E.4 under ``out_dir / "linear_probe"`` (see the module docstring).

    Parameters
    ----------
    out_dir
        The results folder (the D06 layout); ``linear_probe/`` is created in it.
    populations
        ``real_tier_a``, ``inj_low_bf``, ``inj_high_bf``, ``negatives`` → {``penultimate``: (n, d), ``scores``:
        (n,), optional ``features_0`` … ``features_7``: (n, d_k)}; any other key is a feature block too (a
        ResNet's ``stem``, ``layer1`` …: Fréchet distances for them follow the eight D06 keys). Rows in the order
        the artefacts keep them.
    checkpoint
        The finder checkpoint the embeddings came from (recorded only).
    theta_e, target_mag, add_sky_noise, add_poisson_noise, gain_e_per_nmgy
        The injection settings of the injected populations (recorded only; the gain only with Poisson noise).
    seed
        The seed of the permutation test, its folds and split (42 in the paper; the book's recomputation from
        ``checkpoint.npz`` regenerates the folds with 42).
    n_permutations, n_bootstrap
        Permutations of the labels and bootstrap resamples (1000 and 5000 in the paper).
    tier_b, tier_a_groups, tier_b_groups
        The Tier-B control population ({``penultimate``, ``scores``}) and optional group ids (``galaxy_id``)
        of the Tier-A and Tier-B rows for GroupKFold (both or neither); writes ``tier_ab_probe_results.json``.
        Without ``tier_b`` the groups are ignored.
    umap
        Also write ``umap_coordinates.npz`` (:func:`write_umap_artefact`; about 20 s for the paper's 1612 rows on
        two cores, most of it numba compiling). Without it, and without ``tier_b``, a ``umap_coordinates.npz`` /
        ``tier_ab_probe_results.json`` left by an earlier run is removed (it would not match these inputs).
    progress
        Show a tqdm bar over the permutations.
    checkpoint_every, resume, on_permutation
        See :func:`permutation_bootstrap`.

    Returns
    -------
    dict
        ``feature_space``, ``permutation_bootstrap``, ``tier_ab`` (or None), ``umap`` ({method, params, n} or
        None) and ``paths`` (name → written file).

    Raises
    ------
    ProbeInputError
        A population or key is missing, has the wrong shape, holds NaN/inf, or has fewer than 5 rows where the
        5-fold probe needs them.
    ProbeCheckpointMismatch
        ``linear_probe/checkpoint.npz`` exists but was written for other inputs (with ``resume``).
    """
    pops = validate_populations(populations)
    tb = ga = gb = None
    if tier_b is not None:
        tb = validate_population(tier_b, "tier_b", blocks=False)
        d = pops["real_tier_a"]["penultimate"].shape[1]
        if tb["penultimate"].shape[1] != d:
            raise ProbeInputError(f"population 'tier_b' key 'penultimate': dimension {tb['penultimate'].shape[1]} "
                                  f"differs from real_tier_a's {d}")
        if len(tb["scores"]) < N_SPLITS:
            raise ProbeInputError(f"population 'tier_b': {len(tb['scores'])} row(s); the {N_SPLITS}-fold probe "
                                  f"needs at least {N_SPLITS}")
        if (tier_a_groups is None) != (tier_b_groups is None):
            raise ProbeInputError("tier_a_groups and tier_b_groups: give both or neither")
        ga = _groups(tier_a_groups, len(pops["real_tier_a"]["scores"]), "tier_a_groups")
        gb = _groups(tier_b_groups, len(tb["scores"]), "tier_b_groups")

    base = Path(out_dir) / "linear_probe"
    base.mkdir(parents=True, exist_ok=True)
    paths = {k: base / v for k, v in FILES.items()}
    write_npz(paths["embeddings"], embeddings_arrays(pops, tb, ga, gb), compress=True)
    fs = feature_space_results(pops, checkpoint=checkpoint, theta_e=theta_e, target_mag=target_mag,
                               add_sky_noise=add_sky_noise, add_poisson_noise=add_poisson_noise,
                               gain_e_per_nmgy=gain_e_per_nmgy)
    write_json(paths["feature_space"], fs)
    other = {b: v for b, v in frechet_blocks(pops["real_tier_a"], pops["inj_low_bf"]).items() if b not in BLOCKS}
    if other:  # another architecture's blocks (stem, layer1 ...): beside the authors' file, not inside it
        write_json(paths["other_blocks"], {"frechet_distance_per_layer": other})
    else:
        paths["other_blocks"].unlink(missing_ok=True)
    pb = permutation_bootstrap(pops["real_tier_a"]["penultimate"], pops["inj_low_bf"]["penultimate"],
                               paths["checkpoint"], seed=seed, n_permutations=n_permutations,
                               n_bootstrap=n_bootstrap, checkpoint_every=checkpoint_every, resume=resume,
                               progress=progress, on_permutation=on_permutation, executor=executor)
    write_json(paths["permutation"], pb)
    written = {k: paths[k] for k in ("embeddings", "feature_space", "checkpoint", "permutation")}
    tab = None
    if tb is not None:
        tab = tier_ab_probe(pops["real_tier_a"], tb, groups_a=ga, groups_b=gb, checkpoint=checkpoint, seed=seed)
        written["tier_ab"] = write_json(paths["tier_ab"], tab)
    else:
        paths["tier_ab"].unlink(missing_ok=True)  # an earlier run's control would not match these embeddings
    um = None
    if umap:
        um = write_umap_artefact(out_dir, pops, validated=True)
        written["umap"] = paths["umap"]
    else:
        paths["umap"].unlink(missing_ok=True)
    return {"feature_space": fs, "permutation_bootstrap": pb, "tier_ab": tab, "umap": um, "paths": written}


def write_umap_artefact(out_dir: Path, populations: dict[str, dict[str, np.ndarray]], *,
                        validated: bool = False, **umap_params: Any) -> dict:
    """Write ``linear_probe/umap_coordinates.npz``: the map of :func:`umap_coordinates` over the four populations'
    penultimate embeddings (order real, low-β_frac, high-β_frac, negatives; the paper's UMAP settings unless
    ``umap_params`` say otherwise).

    The file holds ``coords`` (N, 2), ``labels`` (N,) population names, ``scores`` (N,) CNN scores, ``method``
    (0-d string, ``"umap"`` or ``"pca"`` for the fallback) and ``params`` (0-d string, JSON of the settings).
    Returns {method, params, n}."""
    pops = populations if validated else validate_populations(populations)
    res = umap_coordinates({p: pops[p]["penultimate"] for p in POPULATIONS}, **{**UMAP_PARAMS, **umap_params})
    scores = np.concatenate([pops[p]["scores"] for p in POPULATIONS])
    write_npz(Path(out_dir) / "linear_probe" / FILES["umap"], {
        "coords": res["coords"], "labels": res["labels"], "scores": scores,
        "method": np.array(res["method"]), "params": np.array(json.dumps(res["params"], sort_keys=True))})
    return {"method": res["method"], "params": res["params"], "n": int(len(res["labels"]))}

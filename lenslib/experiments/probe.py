"""Linear probe (paper Table 5, Figures 2–3): AUCs recomputed from ``linear_probe/checkpoint.npz``, and
everything else recomputed from ``linear_probe/embeddings.npz`` where a results folder has it.

The checkpoint holds the 612 out-of-fold probabilities (112 Tier-A, then 500 low-β_frac injections),
the 1 000 permutation AUCs and the legacy NumPy RNG state after the permutations, so the
pooled AUC, the fold AUCs, the permutation p-value and the bootstrap interval can all be
recomputed (the bootstrap is replayed from that RNG state, as the original script drew it).
The number of Tier-A rows is ``n_real_tier_a`` of ``feature_space_results.json`` (112 when that file is absent),
so a recompute with other sample sizes reads the same way.

The published D06 artefacts do not include ``embeddings.npz`` (it is on the authors' bucket only); a recompute
(:mod:`lenslib.experiments.compute.probe`) writes it. From it the ``recomputed_*`` functions refit the
unshuffled-CV probe, the Fréchet distances (penultimate and per block), the median scores, the Tier-A vs
Tier-B control (when the file holds Tier-B embeddings) and the UMAP of Figure 2; on a folder without it they
raise :class:`~lenslib.data.storage.ArtefactMissing` naming the file. :func:`fig2_umap` draws Figure 2 on
axes it is given.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from lenslib.data.storage import ArtefactMissing
from lenslib.experiments.artefacts import PATHS, ArtefactFormatError, D06Artefacts
from lenslib.experiments.compute import probe as compute

N_REAL = 112
EMBEDDINGS = "linear_probe/embeddings.npz"
TIER_AB = "linear_probe/tier_ab_probe_results.json"
UMAP_COORDS = "linear_probe/umap_coordinates.npz"
POPULATIONS = compute.POPULATIONS
BLOCKS = compute.BLOCKS


def labels(n_total: int, n_real: int = N_REAL) -> np.ndarray:
    return np.r_[np.ones(n_real, int), np.zeros(n_total - n_real, int)]


def auc_rows(y: np.ndarray, score: np.ndarray) -> np.ndarray:
    """ROC AUC of each row (Mann–Whitney with mid-ranks: ties count one half, as roc_auc_score)."""
    ranks = rankdata(score, axis=1)
    n_pos = y.sum(axis=1)
    n_neg = y.shape[1] - n_pos
    return ((ranks * y).sum(axis=1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def n_real(art: D06Artefacts) -> int:
    """Tier-A rows of the probe: ``n_real_tier_a`` of ``feature_space_results.json``, else 112 (D06)."""
    if not art.store.exists(PATHS["probe_results"]):
        return N_REAL
    return int(art.probe_results().get("n_real_tier_a", N_REAL))


def pooled_auc(art: D06Artefacts) -> float:
    p = art.probe_checkpoint()["y_prob"]
    return float(roc_auc_score(labels(len(p), n_real(art)), p))


def fold_aucs(art: D06Artefacts, n_splits: int = 5, seed: int = 42) -> np.ndarray:
    """AUC of each test fold of StratifiedKFold(5, shuffle, random_state=42) on the out-of-fold probabilities."""
    p = art.probe_checkpoint()["y_prob"]
    y = labels(len(p), n_real(art))
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
    y = labels(len(p), n_real(art))
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


def single_split_auc(art: D06Artefacts) -> float:
    """The observed AUC of the permutation test's single 80/20 stratified split (checkpoint ``single_auc``)."""
    return float(art.probe_checkpoint()["single_auc"])


def permutation_auc_stat(art: D06Artefacts, stat: str = "max") -> float:
    """``max`` or ``mean`` of the 1 000 permuted-label AUCs (checkpoint ``perm_aucs``; paper 0.690 / 0.499)."""
    perm = np.asarray(art.probe_checkpoint()["perm_aucs"], dtype=float)
    if stat not in ("max", "mean"):
        raise ValueError(f"stat must be 'max' or 'mean', got {stat!r}")
    return float(perm.max() if stat == "max" else perm.mean())


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


# --- recomputed from linear_probe/embeddings.npz (a recompute's folder; not among the D06 artefacts) -------

NO_EMBEDDINGS = ("The published artefacts do not include linear_probe/embeddings.npz (the authors keep it on their "
                 "bucket only), so the unshuffled-CV probe, the Fréchet distances, the Tier-A vs Tier-B control and "
                 "the UMAP of Figure 2 cannot be recomputed here; the values above are as reported.")


def has_embeddings(art: D06Artefacts) -> bool:
    """Whether the results folder holds ``linear_probe/embeddings.npz``."""
    return art.store.exists(EMBEDDINGS)


def embeddings(art: D06Artefacts) -> dict[str, np.ndarray]:
    """The arrays of ``linear_probe/embeddings.npz`` (``emb_<population>``, ``scores_<population>``,
    ``blocks_<population>_features_<k>``, optionally ``emb_tier_b``, ``scores_tier_b``, ``groups_tier_a/b``)."""
    if "embeddings" not in art._cache:
        try:
            raw = art.store.read_bytes(EMBEDDINGS)
        except ArtefactMissing as exc:
            raise ArtefactMissing(f"{exc}; needed for the linear probe recomputed from the embeddings "
                                  f"({EMBEDDINGS} is not among the published D06 artefacts)") from None
        try:
            with np.load(io.BytesIO(raw)) as z:
                out = {k: z[k] for k in z.files}
        except Exception as exc:
            raise ArtefactFormatError(f"{art.store.url(EMBEDDINGS)}: not a readable .npz ({exc})") from None
        missing = [f"{kind}_{p}" for p in POPULATIONS for kind in ("emb", "scores") if f"{kind}_{p}" not in out]
        if missing:
            raise ArtefactFormatError(f"{art.store.url(EMBEDDINGS)}: missing array(s) {missing}")
        art._cache["embeddings"] = out
    return art._cache["embeddings"]


def population(art: D06Artefacts, name: str) -> dict[str, np.ndarray]:
    """One population of ``embeddings.npz`` as {penultimate, scores, one array per stored block}."""
    if name not in POPULATIONS:
        raise ValueError(f"population must be one of {POPULATIONS}, got {name!r}")
    e = embeddings(art)
    out = {"penultimate": e[f"emb_{name}"], "scores": e[f"scores_{name}"]}
    prefix = f"blocks_{name}_"
    for k, v in e.items():
        if k.startswith(prefix):
            out[k[len(prefix):]] = v
    return out


def _cached(art: D06Artefacts, key: str, fn):
    if key not in art._cache:
        art._cache[key] = fn()
    return art._cache[key]


def recomputed_probe_fold_aucs(art: D06Artefacts) -> np.ndarray:
    """Fold AUCs of the paper's probe refitted on the embeddings (raw features, unshuffled StratifiedKFold(5))."""
    return _cached(art, "recomputed:probe", lambda: compute.probe_fold_aucs(
        population(art, "real_tier_a")["penultimate"], population(art, "inj_low_bf")["penultimate"]))


def recomputed_probe_auc(art: D06Artefacts, stat: str = "mean") -> float:
    """Mean (``stat="mean"``) or population std (``"std"``) of :func:`recomputed_probe_fold_aucs`
    (``feature_space_results.json`` → ``linear_probe.cv_auc_mean`` / ``cv_auc_std``)."""
    a = recomputed_probe_fold_aucs(art)
    if stat not in ("mean", "std"):
        raise ValueError(f"stat must be 'mean' or 'std', got {stat!r}")
    return float(a.mean() if stat == "mean" else a.std())


def recomputed_frechet(art: D06Artefacts, pair: str = "real_vs_low_bf") -> float:
    """Penultimate Fréchet distance ``real_vs_low_bf`` or ``real_vs_high_bf`` from the embeddings."""
    other = {"real_vs_low_bf": "inj_low_bf", "real_vs_high_bf": "inj_high_bf"}
    if pair not in other:
        raise ValueError(f"pair must be one of {list(other)}, got {pair!r}")
    return _cached(art, f"recomputed:fd:{pair}", lambda: compute.frechet_penultimate(
        population(art, "real_tier_a")["penultimate"], population(art, other[pair])["penultimate"]))


def recomputed_frechet_blocks(art: D06Artefacts) -> dict[str, float]:
    """Per-block Fréchet distances real vs low-β_frac (NaN where a block has more dimensions than rows or is
    not stored)."""
    return _cached(art, "recomputed:fd_blocks", lambda: compute.frechet_blocks(
        population(art, "real_tier_a"), population(art, "inj_low_bf")))


def recomputed_frechet_block(art: D06Artefacts, block: str = "features_0") -> float:
    fd = recomputed_frechet_blocks(art)
    if block not in fd:
        raise ValueError(f"block must be one of {list(fd)}, got {block!r}")
    return float(fd[block])


def recomputed_frechet_ratio(art: D06Artefacts, num: str = "features_3", den: str = "features_0") -> float:
    return recomputed_frechet_block(art, num) / recomputed_frechet_block(art, den)


def recomputed_median(art: D06Artefacts, population_name: str = "inj_low_bf") -> float:
    """Median CNN score of one population from the embeddings file."""
    return float(np.median(population(art, population_name)["scores"]))


def _tier_b(art: D06Artefacts) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    e = embeddings(art)
    if "emb_tier_b" not in e:
        raise ArtefactMissing(f"{art.store.url(EMBEDDINGS)} holds no Tier-B embeddings (emb_tier_b); needed for "
                              "the Tier-A vs Tier-B control probe")
    groups = None
    if "groups_tier_a" in e and "groups_tier_b" in e:
        groups = np.concatenate([e["groups_tier_a"], e["groups_tier_b"]]).astype(str)
    return e["emb_tier_b"], e["scores_tier_b"], groups


def recomputed_tier_ab_fold_aucs(art: D06Artefacts) -> np.ndarray:
    """Fold AUCs of the Tier-A vs Tier-B control refitted on the embeddings (GroupKFold with the stored
    groups, else StratifiedKFold(5)); the Tier-A side is ``emb_real_tier_a``."""
    def fit():
        emb_b, _, groups = _tier_b(art)
        return compute.tier_ab_fold_aucs(population(art, "real_tier_a")["penultimate"], emb_b, groups)[0]
    return _cached(art, "recomputed:tier_ab", fit)


def recomputed_tier_ab_auc(art: D06Artefacts, stat: str = "mean") -> float:
    """Mean or population std of :func:`recomputed_tier_ab_fold_aucs` (paper: 0.778 ± 0.062)."""
    a = recomputed_tier_ab_fold_aucs(art)
    if stat not in ("mean", "std"):
        raise ValueError(f"stat must be 'mean' or 'std', got {stat!r}")
    return float(a.mean() if stat == "mean" else a.std())


def recomputed_tier_b_median(art: D06Artefacts) -> float:
    """Median CNN score of the Tier-B control lenses from the embeddings file (paper: 0.879)."""
    return float(np.median(_tier_b(art)[1]))


def tier_ab_results(art: D06Artefacts) -> dict:
    """``linear_probe/tier_ab_probe_results.json`` as written by the compute side (not among the D06 artefacts)."""
    d = art.json(TIER_AB, "the Tier-A vs Tier-B control probe")
    art._require(d, ["linear_probe_tier_ab", "score_stats"], art.store.url(TIER_AB))
    return d


def tier_ab_reported(art: D06Artefacts, path: str = "linear_probe_tier_ab.cv_auc_mean") -> float:
    """A value of ``tier_ab_probe_results.json`` by dotted path (``score_stats.tier_b.median``)."""
    node: Any = tier_ab_results(art)
    for part in path.split("."):
        node = node[part]
    return float(node)


def umap_from_embeddings(art: D06Artefacts, *, use_umap: bool = True) -> dict[str, Any]:
    """Figure 2's map recomputed from the embeddings: the penultimate vectors of real, low-β_frac, high-β_frac
    and negatives concatenated, UMAP(n_neighbors=30, min_dist=0.3, cosine, random_state=42) (PCA(2) without
    umap-learn). Returns ``coords``, ``labels``, ``scores``, ``method``, ``params``. Cached; 10–20 s at 1612 rows."""
    def run():
        res = compute.umap_coordinates({p: population(art, p)["penultimate"] for p in POPULATIONS},
                                       use_umap=use_umap, **compute.UMAP_PARAMS)
        res["scores"] = np.concatenate([population(art, p)["scores"] for p in POPULATIONS])
        return res
    return _cached(art, f"recomputed:umap:{use_umap}", run)


def stored_umap(art: D06Artefacts) -> dict[str, Any]:
    """``linear_probe/umap_coordinates.npz`` as the compute side wrote it (coords, labels, scores, method, params)."""
    try:
        raw = art.store.read_bytes(UMAP_COORDS)
    except ArtefactMissing as exc:
        raise ArtefactMissing(f"{exc}; needed for the stored UMAP coordinates") from None
    with np.load(io.BytesIO(raw)) as z:
        out: dict[str, Any] = {k: z[k] for k in z.files}
    out["method"] = str(out["method"])
    out["params"] = json.loads(str(out["params"]))
    return out


def umap_n_points(art: D06Artefacts) -> int:
    """Rows in Figure 2's map (the paper: 1612 = 112 + 500 + 500 + 500), from the embeddings file."""
    return int(sum(len(population(art, p)["scores"]) for p in POPULATIONS))


def recomputed_table(art: D06Artefacts) -> pd.DataFrame:
    """The embeddings-based Table 5 rows: quantity, recomputed value, value in the written JSON, source."""
    r = art.probe_results()
    rows = [("probe AUC, Tier-A vs low-β_frac, unshuffled 5-fold CV, mean", recomputed_probe_auc(art, "mean"),
             r["linear_probe"]["cv_auc_mean"]),
            ("probe AUC, Tier-A vs low-β_frac, unshuffled 5-fold CV, std", recomputed_probe_auc(art, "std"),
             r["linear_probe"]["cv_auc_std"])]
    for k, v in recomputed_frechet_blocks(art).items():
        rows.append((f"Fréchet distance {k}", v, r["frechet_distance_per_layer"].get(k, np.nan)))
    for pair in ("real_vs_low_bf", "real_vs_high_bf"):
        rows.append((f"Fréchet distance penultimate {pair}", recomputed_frechet(art, pair),
                     r["frechet_distance"][pair]))
    for p in POPULATIONS:
        rows.append((f"median score {p}", recomputed_median(art, p), r["median_scores"][p]))
    if "emb_tier_b" in embeddings(art):
        tab = tier_ab_results(art) if art.store.exists(TIER_AB) else None
        rep = (lambda path: tier_ab_reported(art, path)) if tab is not None else (lambda path: np.nan)
        rows += [("probe AUC, Tier-A vs Tier-B, mean", recomputed_tier_ab_auc(art, "mean"),
                  rep("linear_probe_tier_ab.cv_auc_mean")),
                 ("probe AUC, Tier-A vs Tier-B, std", recomputed_tier_ab_auc(art, "std"),
                  rep("linear_probe_tier_ab.cv_auc_std")),
                 ("median score tier_b", recomputed_tier_b_median(art), rep("score_stats.tier_b.median"))]
    df = pd.DataFrame(rows, columns=["quantity", "recomputed", "written"])
    df["source"] = "embeddings.npz"
    return df


# --- Figure 2 ------------------------------------------------------------------------------------------------

# population → (label, colour, size, alpha), drawn in this order (real lenses on top), as the paper's make_fig2
FIG2_STYLE = {
    "negatives": ("Negatives", "grey", 8, 0.3),
    "inj_high_bf": ("Injections, high β_frac", "c", 12, 0.5),
    "inj_low_bf": ("Injections, low β_frac", "C0", 12, 0.5),
    "real_tier_a": ("Real Tier-A", "goldenrod", 30, 0.9),
}


def fig2_categories(ax, coords: np.ndarray, labels: np.ndarray, axis_name: str = "UMAP") -> Any:
    """Figure 2, left panel: the map coloured by population (legend with counts). Draws on ``ax``; returns it."""
    coords, labels = np.asarray(coords), np.asarray(labels).astype(str)
    for name, (text, color, size, alpha) in FIG2_STYLE.items():
        sel = labels == name
        if not sel.any():
            continue
        edge = dict(edgecolors="k", linewidths=0.5) if name == "real_tier_a" else {}
        ax.scatter(coords[sel, 0], coords[sel, 1], s=size, c=color, alpha=alpha,
                   label=f"{text} (n={int(sel.sum())})", zorder=3 if name == "real_tier_a" else 2, **edge)
    ax.set(xlabel=f"{axis_name}-1", ylabel=f"{axis_name}-2", title="Category")
    ax.legend(fontsize=8, markerscale=1.5)
    return ax


def fig2_scores(ax, coords: np.ndarray, labels: np.ndarray, scores: np.ndarray, axis_name: str = "UMAP") -> Any:
    """Figure 2, right panel: every point coloured by its CNN score (viridis, 0–1), real lenses redrawn on top
    with black edges, colour bar "Score p". Draws on ``ax``; returns it."""
    coords, labels, scores = np.asarray(coords), np.asarray(labels).astype(str), np.asarray(scores)
    sc = ax.scatter(coords[:, 0], coords[:, 1], c=scores, cmap="viridis", vmin=0, vmax=1, s=10, alpha=0.6)
    real = labels == "real_tier_a"
    ax.scatter(coords[real, 0], coords[real, 1], c=scores[real], cmap="viridis", vmin=0, vmax=1, s=30,
               edgecolors="k", linewidths=0.5, zorder=3)
    ax.figure.colorbar(sc, ax=ax, label="Score p")
    ax.set(xlabel=f"{axis_name}-1", ylabel=f"{axis_name}-2", title="CNN Score")
    return ax


def fig2_umap(coords: np.ndarray, labels: np.ndarray, scores: np.ndarray | None, axes: Sequence,
              axis_name: str = "UMAP") -> Sequence:
    """Figure 2 on the given axes: ``axes[0]`` by category, ``axes[1]`` by score (skipped when ``scores`` is None
    or only one axes is given); ``axis_name`` labels the axes (``"PCA"`` for the fallback map). Chooses no
    backend and creates no figure."""
    fig2_categories(axes[0], coords, labels, axis_name)
    if scores is not None and len(axes) > 1:
        fig2_scores(axes[1], coords, labels, scores, axis_name)
    return axes

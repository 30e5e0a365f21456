"""§E.1 and §E.2 step 1: FPR-derived thresholds from the validation negatives, and the Tier-A recall.

Scores are computed with :func:`lenslib.finder.scoring.score_manifest`, which writes them chunk by chunk
and resumes after a kill; they are kept under ``<work>/scores/`` and reused by later experiments.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from lenslib._util import atomic_write, utc_now, write_json
from lenslib.experiments.compute.inputs import Inputs, RecomputeError
from lenslib.finder.scoring import fpr_thresholds, score_manifest
from lenslib.stats import jeffreys_interval

FIXED_THRESHOLDS = (0.3, 0.5)


def sample_rows(rows: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """``DataFrame.sample(n, random_state=seed)`` when there are more than ``n`` rows, else all (as the paper)."""
    return rows.sample(n=n, random_state=seed) if len(rows) > n else rows


def scored(inputs: Inputs, rows: pd.DataFrame, out: Path, *, batch_size: int = 256, progress: bool = True,
           clip_range: float | None = None) -> pd.DataFrame:
    """Scores of manifest ``rows`` (cached in ``out``; resumes a killed run). Adds ``score`` and ``error``."""
    if out.exists():
        return pd.read_parquet(out)
    sc = inputs.scorer(clip_range, batch_size)
    return score_manifest(sc.model, rows, out, spec=sc.spec, store=inputs.store, path_col="cutout_key",
                          batch_size=batch_size, workers=inputs.workers, progress=progress)


def negative_fpr_thresholds(inputs: Inputs, work: Path, *, n_negatives: int = 50_000, seed: int = 1337,
                            fprs: tuple[float, ...] = (1e-3, 1e-4), batch_size: int = 256,
                            progress: bool = True) -> dict[float, float]:
    """τ per target FPR from (a sample of) the validation negatives (E.2 step 1); also written to
    ``<work>/fpr_thresholds.json``."""
    if n_negatives <= 0:
        raise RecomputeError(f"parameter 'fpr_negatives' must be > 0, got {n_negatives}")
    neg = sample_rows(inputs.rows("val", label=0), n_negatives, seed)
    s = scored(inputs, neg, work / "scores" / "fpr_negatives.parquet", batch_size=batch_size, progress=progress)
    tau = fpr_thresholds(s["score"].to_numpy(), list(fprs))
    write_json(work / "fpr_thresholds.json", {"n_negatives": int(s["score"].notna().sum()),
                                              "thresholds": {str(f): t for f, t in tau.items()}})
    return tau


def threshold_labels(tau: dict[float, float]) -> dict[str, float]:
    """The JSON labels of E.1 step 4: 'p>0.3', 'p>0.5' and the FPR-derived thresholds rounded to 3 decimals."""
    out = {f"p>{t:g}": float(t) for t in FIXED_THRESHOLDS}
    for f, t in tau.items():
        r = round(float(t), 3)
        label = f"p>{r:.3f} (FPR-derived)"
        out[label if label not in out else f"p>{r:.3f} (FPR-derived, FPR={f:g})"] = r  # two targets, one τ
    return out


def score_stats(s: np.ndarray) -> dict[str, float]:
    p5, p25, med, p75, p95 = np.percentile(s, [5, 25, 50, 75, 95]) if len(s) else [math.nan] * 5
    return {"p5": float(p5), "p25": float(p25), "median": float(med), "p75": float(p75), "p95": float(p95),
            "mean": float(np.mean(s)) if len(s) else math.nan,
            "frac_above_0.9": float(np.mean(s > 0.9)) if len(s) else math.nan,
            "frac_below_0.1": float(np.mean(s < 0.1)) if len(s) else math.nan}


def rate(s: np.ndarray, t: float) -> float:
    return float(np.mean(s >= t)) if len(s) else math.nan


def write_tier_a(inputs: Inputs, results: Path, work: Path, tau: dict[float, float], *, n_negatives: int = 3000,
                 seed: int = 42, batch_size: int = 256, progress: bool = True, meta: dict | None = None) -> dict:
    """``tier_a_scoring/real_lens_scoring_results.json`` (F.10), and the per-lens scores of Tier A and B
    (``tier_a_scoring/real_lens_scores.parquet``: galaxy_id, tier, score, error)."""
    lenses = inputs.rows("val", label=1)
    lenses = lenses[lenses["tier"].isin(["A", "B"])]
    ls = scored(inputs, lenses, work / "scores" / "val_lenses.parquet", batch_size=batch_size, progress=progress)
    neg = sample_rows(inputs.rows("val", label=0), n_negatives, seed)
    ns = scored(inputs, neg, work / "scores" / "tier_a_negatives.parquet", batch_size=batch_size, progress=progress)
    labels = threshold_labels(tau)
    a = ls[ls["tier"] == "A"]
    sa = a["score"].dropna().to_numpy()
    sn = ns["score"].dropna().to_numpy()
    tier = {"n_total": len(a), "n_valid": len(sa)}
    for lab, t in labels.items():
        k = int((sa >= t).sum())
        tier[lab] = {"recall": rate(sa, t), "n_detected": k, "ci_95": list(jeffreys_interval(k, len(sa)))}
    out = {
        **(meta or {}), "host_split": "val", "seed": seed,
        "real_lens": {"n_total": len(a), "n_valid": len(sa), "n_errors": len(a) - len(sa),
                      "recall_at_thresholds": {lab: rate(sa, t) for lab, t in labels.items()},
                      "score_stats": score_stats(sa)},
        "negatives": {"n_total": len(ns), "n_valid": len(sn), "n_errors": len(ns) - len(sn),
                      "fpr_at_thresholds": {lab: rate(sn, t) for lab, t in labels.items()},
                      "score_stats": score_stats(sn)},
        "recall_by_tier": {"tier_A": tier},
    }
    order = ["timestamp_utc", "checkpoint", "manifest", "host_split", "arch", "epoch", "device", "seed"]
    out = {**{k: out[k] for k in order if k in out}, **{k: v for k, v in out.items() if k not in order}}
    write_json(results / "tier_a_scoring" / "real_lens_scoring_results.json", out)
    keep = [c for c in ("galaxy_id", "tier", "ra", "dec", "cutout_path", "score", "error") if c in ls.columns]
    with atomic_write(results / "tier_a_scoring" / "real_lens_scores.parquet") as tmp:
        ls[keep].to_parquet(tmp, index=False)
    return out


def run_meta(inputs: Inputs, params_checkpoint: str, params_manifest: str) -> dict:
    """The header fields the authors' result files start with."""
    return {"timestamp_utc": utc_now(), "checkpoint": params_checkpoint,
            "manifest": params_manifest, "arch": inputs.finder.arch, "epoch": int(inputs.finder.epoch or 0),
            "device": inputs.device.type}

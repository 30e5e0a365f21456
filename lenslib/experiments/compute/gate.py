"""The realism gate, recomputed: the grid again with realistic sources, and the probe for a sweep of source families.

``run_gate`` writes, under ``results/``:

- ``grid_realistic_no_poisson/`` — the selection-function grid with every source from the realistic family
  (:mod:`lenslib.injection.realistic`) instead of Sérsic (same plan, hosts, lens parameters and seeds as the
  Sérsic grid; the F.1/F.2 files and ``injections.parquet``);
- ``realism_gate/gate_sweep.csv`` — for each mix m (the fraction of each arc's light from the realistic source;
  0 = the paper's Sérsic injections), the probe AUC of real lenses vs injections (fold mean ± std, 95 %
  bootstrap interval), the Fréchet distance and the injections' scores. The injections of every mix share
  their hosts, lens parameters, magnitudes and realistic galaxies (paired): only the source family changes;
- ``realism_gate/gate_results.json`` — the sweep, the grids' completeness matched to the Tier-A lenses'
  brightness (when their lensed magnitudes are known: a synthetic survey's truth table), and the checks of
  :func:`known_truth_checks`.
"""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from lenslib._util import atomic_write, write_json
from lenslib.experiments.compute import grid
from lenslib.experiments.compute.inputs import Inputs, RecomputeError
from lenslib.experiments.compute.tier_a import sample_rows
from lenslib.experiments.gate import THRESHOLD, gate_from_embeddings, matched_completeness
from lenslib.injection import InjectionEngine, draw
from lenslib.parallel import Executor

TRUTH_KEY = "manifests/synthetic_truth.parquet"


def _embed(inputs: Inputs, images) -> dict[str, np.ndarray]:
    e = inputs.scorer().embeddings(images)
    return {"penultimate": e.penultimate, "scores": e.scores, **e.blocks}


def _hosts(inputs: Inputs, n: int, seed: int) -> pd.DataFrame:
    """Validation negatives like the lenses' hosts: pool N1 where the manifest has pools, finite PSF and depth."""
    negs = inputs.rows("val", label=0, finite_psf=True)
    if "pool" in negs and (negs["pool"] == "N1").any():
        negs = negs[negs["pool"] == "N1"]
    if negs.empty:
        raise RecomputeError("the realism gate needs validation negatives with finite psfsize_r and psfdepth_r")
    return sample_rows(negs, n, seed).reset_index(drop=True)


def gate_sweep(inputs: Inputs, *, mixes: list[float], n_samples: int, seed: int, theta_e: tuple[float, float],
               source_r_mag: tuple[float, float], min_arc_snr: float | None = None, sampling: str = "adaptive",
               n_bootstrap: int = 300, pool_factor: int = 2) -> tuple[pd.DataFrame, dict]:
    """Probe AUC of real lenses vs injections of each mix; the rows of ``gate_sweep.csv``.

    Injections are drawn with θ_E and source magnitude from the real lenses' ranges into N1-like validation
    negatives; every mix renders the same ``pool_factor × n_samples`` draws (hosts, lens parameters, magnitudes,
    realistic galaxies: only the source family changes). With ``min_arc_snr`` the real side is the validation
    Tier-A lenses and the injections are those whose arc SNR (the engine's 4–16 px annulus) passes the same
    cut, first ``n_samples`` of them: like with like, clear arcs against clear arcs. Without it the real side
    is every validation lens and the injections are the first ``n_samples`` draws."""
    real_rows = inputs.rows("val", label=1, tier="A" if min_arc_snr is not None else None)
    real_rows = sample_rows(real_rows, n_samples, seed)
    if len(real_rows) < 5:
        raise RecomputeError(f"the realism gate needs at least 5 validation lenses, the manifest has {len(real_rows)}")
    img, _ = inputs.load_images(real_rows)
    real = _embed(inputs, img)
    hosts = _hosts(inputs, n_samples, seed + 1)
    images, errors = inputs.load_images(hosts)
    rng = np.random.default_rng(seed)
    n_pool = n_samples * (pool_factor if min_arc_snr is not None else 1)
    h = rng.choice([k for k in range(len(hosts)) if k not in errors], n_pool)
    params = draw(rng, rng.uniform(*theta_e, n_pool), inputs.priors).with_r_mag(rng.uniform(*source_r_mag, n_pool))
    seeds = seed * 10_007 + np.arange(n_pool)
    rows = []
    for m in mixes:
        engine = InjectionEngine(sampling=sampling, device=inputs.device, source_mix=float(m),
                                 batch_size=512 if inputs.device.type == "cuda" else 128)
        res = engine.inject(images[h], params, hosts["psfsize_r"].to_numpy()[h], hosts["psfdepth_r"].to_numpy()[h],
                            sources=grid.realistic_family(seeds) if m > 0 else None)
        keep = np.arange(n_pool) if min_arc_snr is None else np.flatnonzero(res.arc_snr >= min_arc_snr)[:n_samples]
        if len(keep) < 5:
            raise RecomputeError(f"mix {m}: only {len(keep)} of {n_pool} injections have arc SNR ≥ {min_arc_snr}; "
                                 "raise gate_samples or lower gate_min_arc_snr")
        g = gate_from_embeddings(real, _embed(inputs, res.injected[torch.as_tensor(keep)]), n_bootstrap=n_bootstrap,
                                 seed=seed)
        rows.append({"mix": float(m), "auc": g.auc, "auc_std": g.auc_std, "auc_ci_low": g.auc_ci[0],
                     "auc_ci_high": g.auc_ci[1], "frechet_penultimate": g.frechet_penultimate,
                     "median_score_injected": g.median_score_injected, "recall_injected": g.recall_injected,
                     "median_lensed_r_mag": float(np.nanmedian(res.lensed_r_mag[keep])), "n_real": g.n_real,
                     "n_injected": g.n_injected})
    ref = {"n_real": len(real_rows), "real": "val Tier-A" if min_arc_snr is not None else "val Tier A and B",
           "min_arc_snr": min_arc_snr, "median_score_real": float(np.median(real["scores"])),
           "recall_real": float(np.mean(real["scores"] > THRESHOLD)), "theta_e_range": list(theta_e),
           "source_r_mag_range": list(source_r_mag), "n_samples": n_samples, "seed": seed}
    return pd.DataFrame(rows), ref


def known_truth_checks(tier_a_recall: float, sersic: dict, realistic: dict, sweep: pd.DataFrame) -> list[dict]:
    """The demo's checks (issue: the morphological barrier is real and known in the synthetic world)."""
    auc = dict(zip(sweep["mix"], sweep["auc"], strict=True))
    a0, a1 = auc.get(0.0, np.nan), auc.get(1.0, np.nan)
    ratio = tier_a_recall / sersic["completeness"] if sersic["completeness"] > 0 else float("inf")
    return [
        {"check": "Tier-A recall ≥ 2 × Sérsic grid completeness at matched brightness", "value": ratio,
         "target": "≥ 2", "holds": bool(ratio >= 2)},
        {"check": "probe AUC, Sérsic injections vs real lenses", "value": a0, "target": "≥ 0.9",
         "holds": bool(a0 >= 0.9)},
        {"check": "realistic-source grid completeness − Sérsic (matched brightness)",
         "value": realistic["completeness"] - sersic["completeness"], "target": "≥ 0.2 (markedly more)",
         "holds": bool(realistic["completeness"] - sersic["completeness"] >= 0.2)},
        {"check": "probe AUC, Sérsic − realistic", "value": a0 - a1, "target": "≥ 0.15 (markedly lower)",
         "holds": bool(a0 - a1 >= 0.15)},
    ]


def _truth_mags(inputs: Inputs) -> np.ndarray | None:
    """Lensed r magnitudes of the validation Tier-A lenses, from a synthetic survey's truth table (else None)."""
    if not inputs.store.exists(TRUTH_KEY):
        return None
    truth = pd.read_parquet(io.BytesIO(inputs.store.read_bytes(TRUTH_KEY)))
    ids = inputs.rows("val", label=1, tier="A")["galaxy_id"]
    return truth.set_index("galaxy_id").reindex(ids)["lensed_r_mag"].to_numpy()


def run_gate(inputs: Inputs, results: Path, work: Path, tau: dict[float, float], base: grid.GridSpec, *,
             mixes: list[float], n_samples: int, injections_per_cell: int, seed: int,
             theta_e: tuple[float, float], source_r_mag: tuple[float, float], min_arc_snr: float | None = None,
             meta: dict | None = None,
             progress: bool = True, log=print, executor: Executor | None = None) -> dict[str, Any]:
    """Run the gate (see the module docstring) after the Sérsic grid; returns the content of gate_results.json.
    The realistic-source grid's shards run on ``executor`` (default: this process)."""
    spec = replace(base, injections_per_cell=injections_per_cell, source_mix=1.0, conditions=("no_poisson",),
                   prefix="grid_realistic_")
    grid.run_grid(inputs, results, work, tau, spec, meta=meta, progress=progress, log=log, executor=executor)
    sweep, ref = gate_sweep(inputs, mixes=mixes, n_samples=n_samples, seed=seed, theta_e=theta_e,
                            source_r_mag=source_r_mag, min_arc_snr=min_arc_snr, sampling=base.sampling)
    out_dir = results / "realism_gate"
    with atomic_write(out_dir / "gate_sweep.csv") as tmp:
        sweep.to_csv(tmp, index=False)
    doc: dict[str, Any] = {"sweep": sweep.to_dict(orient="records"), "reference": ref, "threshold": THRESHOLD}
    mags = _truth_mags(inputs)
    tier_a = json.loads((results / "tier_a_scoring" / "real_lens_scoring_results.json").read_text())
    recall = float(tier_a["real_lens"]["recall_at_thresholds"]["p>0.3"])
    doc["tier_a_recall_p0.3"] = recall
    if mags is not None:
        grids = {name: pd.read_parquet(results / f"{prefix}no_poisson" / "injections.parquet")
                 for name, prefix in (("sersic", "grid_"), ("realistic", "grid_realistic_"))}
        doc["matched"] = {k: matched_completeness(g, mags) for k, g in grids.items()}
        doc["checks"] = known_truth_checks(recall, doc["matched"]["sersic"], doc["matched"]["realistic"], sweep)
    write_json(out_dir / "gate_results.json", doc)
    return doc

"""§E.4 steps 1–7: the four populations of the feature-space analysis and their embeddings.

(a) the validation Tier-A lenses; (d) validation negatives with finite PSF and depth; (b) low-β_frac
(0.1–0.3) and (c) high-β_frac (0.7–1.0) injections at θ_E = 1.5″ rescaled to r = 19 exactly, into hosts drawn
with replacement from 2 000 of those negatives (``random_state`` seed + 1), all from one
``default_rng(seed)`` (host indices, then each injection's lens and source), engine seeds ``seed + i`` and
``seed + 10 000 + i``. Each image is embedded (penultimate vector and the pooled output of every block) and
scored; :func:`lenslib.experiments.compute.probe.write_probe_artefacts` does the statistics.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lenslib.experiments.compute.inputs import Inputs, RecomputeError
from lenslib.experiments.compute.probe import write_probe_artefacts
from lenslib.experiments.compute.tier_a import sample_rows
from lenslib.injection import InjectionEngine, InjectionParams, draw
from lenslib.parallel import Executor

LOW_BF, HIGH_BF = (0.1, 0.3), (0.7, 1.0)


def _embed(inputs: Inputs, images) -> dict[str, np.ndarray]:
    e = inputs.scorer().embeddings(images)
    return {"penultimate": e.penultimate, "scores": e.scores, **e.blocks}


def _injections(inputs: Inputs, rng: np.random.Generator, hosts: pd.DataFrame, images: np.ndarray, n: int,
                beta: tuple[float, float], seed0: int, theta_e: float, target_mag: float, sampling: str):
    idx = rng.choice(len(hosts), size=n, replace=True)
    pri = inputs.priors.override(beta_frac_range=beta)
    params = InjectionParams.concat([draw(rng, theta_e, pri, 1) for _ in range(n)]).with_r_mag(np.full(n, target_mag))
    engine = InjectionEngine(sampling=sampling, device=inputs.device,
                             batch_size=512 if inputs.device.type == "cuda" else 128)
    res = engine.inject(images[idx], params, hosts["psfsize_r"].to_numpy()[idx], hosts["psfdepth_r"].to_numpy()[idx],
                        seeds=seed0 + np.arange(n))
    return res.injected


def populations(inputs: Inputs, *, n_samples: int = 500, theta_e: float = 1.5, target_mag: float = 19.0,
                seed: int = 42, n_pool: int = 2000, sampling: str = "full",
                progress: bool = True) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, np.ndarray] | None, dict]:
    """The four populations' embeddings (and Tier-B's, for the control probe), and their galaxy ids."""
    if n_samples <= 1:
        raise RecomputeError(f"parameter 'probe_samples' must be > 1, got {n_samples}")
    rng = np.random.default_rng(seed)
    tier_a = sample_rows(inputs.rows("val", label=1, tier="A"), n_samples, seed)
    negs = inputs.rows("val", label=0, finite_psf=True)
    if negs.empty:
        raise RecomputeError("no validation negatives with finite psfsize_r and psfdepth_r for the probe")
    neg = sample_rows(negs, n_samples, seed)
    pool = sample_rows(negs, n_pool, seed + 1).reset_index(drop=True)
    pool_images, errors = inputs.load_images(pool, progress=progress)
    if errors:  # a host that cannot be read is left out of the pool (the authors' run had none)
        keep = np.array([k not in errors for k in range(len(pool))])
        pool, pool_images = pool[keep].reset_index(drop=True), pool_images[keep]
    out = {}
    img, _ = inputs.load_images(tier_a, progress=progress)
    out["real_tier_a"] = _embed(inputs, img)
    out["inj_low_bf"] = _embed(inputs, _injections(inputs, rng, pool, pool_images, n_samples, LOW_BF, seed, theta_e,
                                                   target_mag, sampling))
    out["inj_high_bf"] = _embed(inputs, _injections(inputs, rng, pool, pool_images, n_samples, HIGH_BF,
                                                    seed + 10_000, theta_e, target_mag, sampling))
    img, _ = inputs.load_images(neg, progress=progress)
    out["negatives"] = _embed(inputs, img)
    tier_b_rows = sample_rows(inputs.rows("val", label=1, tier="B"), n_samples, seed)
    tier_b = None
    if len(tier_b_rows) >= 5 and len(tier_a) >= 5:
        img, _ = inputs.load_images(tier_b_rows, progress=progress)
        tier_b = _embed(inputs, img)
    groups = {"tier_a": tier_a["galaxy_id"].to_numpy(), "tier_b": tier_b_rows["galaxy_id"].to_numpy()}
    return out, tier_b, groups


def run_probe(inputs: Inputs, results: Path, *, n_samples: int = 500, n_permutations: int = 1000,
              n_bootstrap: int = 5000, seed: int = 42, checkpoint: str = "", sampling: str = "full",
              umap: bool = True, progress: bool = True, executor: Executor | None = None) -> dict:
    """Embed the populations and write ``linear_probe/`` (F.5–F.7, embeddings.npz, the Tier-A vs B control);
    the permutation test's fits run on ``executor`` (default: this process)."""
    pops, tier_b, groups = populations(inputs, n_samples=n_samples, seed=seed, sampling=sampling, progress=progress)
    return write_probe_artefacts(results, pops, checkpoint=checkpoint, seed=seed, n_permutations=n_permutations,
                                 n_bootstrap=n_bootstrap, tier_b=tier_b, tier_a_groups=groups["tier_a"],
                                 tier_b_groups=groups["tier_b"] if tier_b is not None else None, umap=umap,
                                 progress=progress, executor=executor)

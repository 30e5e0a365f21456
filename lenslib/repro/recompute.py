"""Recompute the paper: run every experiment from the engines and write the D06 artefacts.

``recompute(params)`` reads the manifest, its cutouts, the finder checkpoint and the priors under
``data_uri`` (a local folder or an ``s3://`` prefix with the bucket's layout) and writes, under
``<output_dir>/results/``, exactly the files the published D06 folder holds (plus per-injection tables);
``<output_dir>/work/`` keeps the scores and shards it resumes from. The book's notebooks then read
``results/`` through the same readers as the published artefacts. Steps already done are not redone.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from lenslib._util import resolve_path
from lenslib.data.catalogues import read_catalogue
from lenslib.data.storage import ArtefactMissing
from lenslib.experiments.compute import (
    bright_arc,
    feature_space,
    gallery_inputs,
    gate,
    grid,
    poisson,
    provenance,
    tier_a,
)
from lenslib.experiments.compute.inputs import MissingInput, RecomputeError, open_inputs
from lenslib.repro.params import open_param_store

TRAIN_HINT = ("no finder checkpoint at {where}. Train one with the paper's protocol first (PAPER_SPEC C.4–C.5: "
              "EfficientNetV2-S, 160 epochs in two phases, about a day on one GPU; or the bottlenecked ResNet of "
              "params/finder_bottlenecked_resnet.yaml, a few hours), e.g. "
              "`python -m lenslib train --config params/finder_bottlenecked_resnet.yaml "
              "--set dataset.manifest_path=<manifest> --set train.out_dir=runs/finder`, then "
              "`--set finder_checkpoint=runs/finder/best.pt`")


def _check(params: dict[str, Any]) -> None:
    for key in ("manifest", "finder_checkpoint"):
        if not params.get(key):
            raise RecomputeError(f"parameter {key!r} is needed to recompute (recompute: true); "
                                 + (TRAIN_HINT.format(where="'finder_checkpoint'") if key == "finder_checkpoint"
                                    else "give the training manifest, a key under data_uri or a local file"))


def recompute(params: dict[str, Any], *, progress: bool = True, log=print, timings: dict | None = None) -> Path:
    """Run the six experiments (and provenance) of a profile; returns the results folder. ``timings``, if
    given, receives each step's wall time (s)."""
    _check(params)
    out = resolve_path(params["output_dir"])
    results, work = out / "results", out / "work"
    store = open_param_store(params, "data_uri")
    try:
        inputs = open_inputs(store, manifest=params["manifest"], checkpoint=params["finder_checkpoint"],
                             priors=params["injection_priors"], cache_dir=work / "cache", device=params["device"])
    except MissingInput as exc:
        if exc.param == "finder_checkpoint":
            raise RecomputeError(TRAIN_HINT.format(where=params["finder_checkpoint"]) + f" ({exc})") from None
        raise
    meta = tier_a.run_meta(inputs, params["finder_checkpoint"], params["manifest"])
    sampling, t_all = params["injection_sampling"], time.perf_counter()
    log(f"recompute on {inputs.device}: {len(inputs.manifest)} manifest rows, finder {inputs.finder.arch}")

    def step(name: str, fn, *args, **kw):
        t0 = time.perf_counter()
        res = fn(*args, **kw)
        dt = time.perf_counter() - t0
        log(f"  {name}: {dt:.1f} s")
        if timings is not None:
            timings[name] = dt
        return res

    tau = step("FPR thresholds", tier_a.negative_fpr_thresholds, inputs, work, n_negatives=params["fpr_negatives"],
               seed=params["grid_seed"], fprs=tuple(params["fpr_targets"]), progress=progress)
    step("Tier-A scoring", tier_a.write_tier_a, inputs, results, work, tau, n_negatives=params["tier_a_negatives"],
         progress=progress, meta=meta)
    spec = grid.GridSpec(injections_per_cell=params["grid_injections_per_cell"], host_max=params["grid_host_max"],
                         seed=params["grid_seed"], max_retries=params["grid_max_retries"],
                         gain=params["injection_gain"], sampling=sampling,
                         shard_injections=params["grid_shard_injections"])
    step("selection-function grid", grid.run_grid, inputs, results, work, tau, spec, meta=meta, progress=progress,
         log=log)
    step("bright arcs", bright_arc.run_bright_arcs, inputs, results, n_hosts=params["bright_arc_hosts"],
         seed=params["bright_arc_seed"], meta=meta, sampling=sampling, progress=progress)
    step("Poisson diagnostics", poisson.write_poisson_diagnostics, results)
    step("linear probe", feature_space.run_probe, inputs, results, n_samples=params["probe_samples"],
         n_permutations=params["probe_permutations"], n_bootstrap=params["probe_bootstraps"],
         seed=params["probe_seed"], checkpoint=params["finder_checkpoint"], sampling=sampling,
         umap=params["probe_umap"], progress=progress)
    if params["gate"]:
        step("realism gate", gate.run_gate, inputs, results, work, tau, spec, mixes=params["gate_mixes"],
             n_samples=params["gate_samples"], injections_per_cell=params["gate_injections_per_cell"],
             seed=params["gate_seed"], theta_e=tuple(params["gate_theta_e"]),
             source_r_mag=tuple(params["gate_source_r_mag"]), min_arc_snr=params["gate_min_arc_snr"],
             meta=meta, progress=progress, log=log)
    catalogue = None
    if params.get("catalogue_desi") and resolve_path(params["catalogue_desi"]).exists():
        catalogue = read_catalogue(resolve_path(params["catalogue_desi"]), "desi")
    step("gallery", gallery_inputs.run_gallery, inputs, results, catalogue=catalogue, sampling=sampling)
    provenance.write_provenance(results, inputs.files, device=inputs.device.type, params=_recorded(params))
    log(f"recompute: {time.perf_counter() - t_all:.1f} s; artefacts in {results}")
    return results


def _recorded(params: dict[str, Any]) -> dict[str, Any]:
    """The parameters a finished recompute records in ``results/provenance.json``."""
    return {k: params[k] for k in sorted(params) if not k.startswith("s3_")}


def completed_results(params: dict[str, Any]) -> Path | None:
    """The results folder of a recompute that finished with exactly these parameters, or ``None``."""
    results = resolve_path(params["output_dir"]) / "results"
    try:
        recorded = json.loads((results / "provenance.json").read_text())["parameters"]
    except (OSError, ValueError, KeyError):
        return None
    return results if recorded == json.loads(json.dumps(_recorded(params), default=str)) else None


def ensure_results(params: dict[str, Any], **kw) -> dict[str, Any]:
    """The parameters the notebooks see: with ``recompute: true`` the experiments are run (or resumed) first
    and ``results_uri`` points at their artefacts."""
    if not params["recompute"]:
        return params
    try:
        results = recompute(params, **kw)
    except ArtefactMissing as exc:
        raise RecomputeError(str(exc)) from None
    return {**params, "results_uri": str(results)}

"""Recompute the paper: run every experiment from the engines and write the D06 artefacts.

``recompute(params)`` reads the manifest, its cutouts, the finder checkpoint and the priors under
``data_uri`` (a local folder or an ``s3://`` prefix with the bucket's layout) and writes, under
``<output_dir>/results/``, exactly the files the published D06 folder holds (plus per-injection tables);
``<output_dir>/work/`` keeps the scores and shards it resumes from. The book's notebooks then read
``results/`` through the same readers as the published artefacts. Steps already done are not redone.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

from lenslib import LenslibError
from lenslib._lock import output_lock
from lenslib._util import resolve_path, write_json
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
from lenslib.experiments.compute.inputs import MissingInput, RecomputeError, cached_checkpoint, open_inputs
from lenslib.parallel import make_executor
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


#: the parameters that determine the recompute's artefacts (the run's fingerprint; the rest shape only the book)
COMPUTE_KEYS = ("data_uri", "manifest", "finder_checkpoint", "injection_priors", "injection_sampling",
                "injection_gain", "catalogue_desi", "device", "fpr_negatives", "fpr_targets", "tier_a_negatives",
                "grid_injections_per_cell", "grid_host_max", "grid_seed", "grid_max_retries", "grid_shard_injections",
                "bright_arc_hosts", "bright_arc_seed", "probe_samples", "probe_permutations", "probe_bootstraps",
                "probe_seed", "probe_umap", "gate", "gate_mixes", "gate_samples", "gate_injections_per_cell",
                "gate_seed", "gate_min_arc_snr", "gate_theta_e", "gate_source_r_mag")
FINGERPRINT = "fingerprint.json"


def run_fingerprint(params: dict[str, Any], inputs_files: dict[str, dict]) -> dict[str, Any]:
    """What determines a recompute's artefacts: the compute parameters, the SHA-256 of every input (manifest,
    checkpoint, priors) and lenslib's version."""
    from lenslib import __version__

    return json.loads(json.dumps({"lenslib": __version__, "parameters": {k: params.get(k) for k in COMPUTE_KEYS},
                                  "inputs": {k: v["sha256"] for k, v in sorted(inputs_files.items())}}, default=str))


def _keyed_resume(out: Path, fingerprint: dict[str, Any], log) -> None:
    """Keep what an earlier run left in ``results/`` and ``work/`` only if it was made from the same inputs and
    parameters; otherwise say what changed, remove it and start clean. Then drop any artefact whose bytes
    drifted from what the finished run recorded, so that it is recomputed rather than trusted."""
    mark = out / "work" / FINGERPRINT
    try:
        old = json.loads(mark.read_text()) if mark.exists() else None
    except ValueError:
        old = {}
    leftovers = [p for sub in ("results", "work") if (out / sub).is_dir() for p in (out / sub).iterdir()
                 if not (sub == "work" and p.name in ("cache", FINGERPRINT))]  # the inputs' cache is keyed by them
    if leftovers and old != fingerprint:
        if old:
            changed = sorted({f"{part}.{k}" for part in ("parameters", "inputs")
                              for k in set(old.get(part, {})) | set(fingerprint[part])
                              if old.get(part, {}).get(k) != fingerprint[part].get(k)}
                             | ({"lenslib"} if old.get("lenslib") != fingerprint["lenslib"] else set()))
            why = f"were made with other inputs or parameters ({', '.join(changed[:8])})"
        else:
            why = "have no record of the inputs they were made from"
        log(f"recompute: the results and work in {out} {why}; they are removed and the recompute starts clean")
        for p in leftovers:
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    from lenslib.experiments.verify import recorded_checksums

    results = out / "results"
    if (results / "provenance.json").exists():
        from lenslib.data.storage import open_store

        recorded = recorded_checksums(open_store(str(results)))
        drifted = [k for k, want in recorded.items() if (results / k).is_file()
                   and hashlib.sha256((results / k).read_bytes()).hexdigest() != want]
        for k in drifted:
            (results / k).unlink()
        if drifted:
            log(f"recompute: {len(drifted)} artefact(s) differ from what the run recorded ({', '.join(drifted[:4])}"
                f"{', …' if len(drifted) > 4 else ''}); they are computed again")
        (results / "provenance.json").unlink()
    write_json(mark, fingerprint)


def recompute(params: dict[str, Any], *, progress: bool = True, log=print, timings: dict | None = None) -> Path:
    """Run the six experiments (and provenance) of a profile; returns the results folder. ``timings``, if
    given, receives each step's wall time (s).

    The recompute holds the lock of ``output_dir`` (a second run into it stops at once) and resumes only what
    was made from the same inputs and parameters (:func:`run_fingerprint`); anything else is removed first."""
    _check(params)
    out = resolve_path(params["output_dir"])
    with output_lock(out, "recompute"):
        return _recompute(params, out, progress=progress, log=log, timings=timings)


def _recompute(params: dict[str, Any], out: Path, *, progress: bool, log, timings: dict | None) -> Path:
    results, work = out / "results", out / "work"
    store = open_param_store(params, "data_uri")
    try:
        inputs = open_inputs(store, manifest=params["manifest"], checkpoint=params["finder_checkpoint"],
                             priors=params["injection_priors"], cache_dir=work / "cache", device=params["device"])
    except MissingInput as exc:
        if exc.param == "finder_checkpoint":
            raise RecomputeError(TRAIN_HINT.format(where=params["finder_checkpoint"]) + f" ({exc})") from None
        raise
    _keyed_resume(out, run_fingerprint(params, inputs.files), log)
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
    with make_executor(params["executor"], params["dask_scheduler"], n_workers=params["dask_workers"],
                       log=log) as executor:
        step("selection-function grid", grid.run_grid, inputs, results, work, tau, spec, meta=meta,
             progress=progress, log=log, executor=executor, timings=timings)
        step("bright arcs", bright_arc.run_bright_arcs, inputs, results, n_hosts=params["bright_arc_hosts"],
             seed=params["bright_arc_seed"], meta=meta, sampling=sampling, progress=progress, executor=executor)
        step("Poisson diagnostics", poisson.write_poisson_diagnostics, results)
        step("linear probe", feature_space.run_probe, inputs, results, n_samples=params["probe_samples"],
             n_permutations=params["probe_permutations"], n_bootstrap=params["probe_bootstraps"],
             seed=params["probe_seed"], checkpoint=params["finder_checkpoint"], sampling=sampling,
             umap=params["probe_umap"], progress=progress, executor=executor)
        if params["gate"]:
            step("realism gate", gate.run_gate, inputs, results, work, tau, spec, mixes=params["gate_mixes"],
                 n_samples=params["gate_samples"], injections_per_cell=params["gate_injections_per_cell"],
                 seed=params["gate_seed"], theta_e=tuple(params["gate_theta_e"]),
                 source_r_mag=tuple(params["gate_source_r_mag"]), min_arc_snr=params["gate_min_arc_snr"],
                 meta=meta, progress=progress, log=log, executor=executor)
    catalogue = None
    if params.get("catalogue_desi") and resolve_path(params["catalogue_desi"]).exists():
        catalogue = read_catalogue(resolve_path(params["catalogue_desi"]), "desi")
    step("gallery", gallery_inputs.run_gallery, inputs, results, catalogue=catalogue, sampling=sampling)
    provenance.write_provenance(results, inputs.files, device=inputs.device.type, params=_recorded(params))
    log(f"recompute: {time.perf_counter() - t_all:.1f} s; artefacts in {results}")
    return results


def _recorded(params: dict[str, Any]) -> dict[str, Any]:
    """The parameters a finished recompute records in ``results/provenance.json``."""
    return {k: params[k] for k in sorted(params) if not k.startswith("s3_") and k not in NOT_RECORDED}


#: parameters that say where the work runs, not what it computes (the artefacts are the same either way)
NOT_RECORDED = ("profile_file", "executor", "dask_scheduler", "dask_workers")


def recomputed_checkpoint(params: dict[str, Any]) -> Path | None:
    """The local copy of the finder checkpoint that the recompute into ``output_dir`` read, when that recompute
    read the file ``finder_checkpoint`` names (its provenance says so) and its cache still holds the same bytes;
    else None. The book's finder chapter then describes the very checkpoint the results came from, with no
    second download."""
    out = resolve_path(params["output_dir"])
    try:
        doc = json.loads((out / "results" / "provenance.json").read_text())
        source, sha = doc["sources"]["checkpoint"], doc["files"]["inputs/checkpoint"]["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        if source != open_param_store(params, "data_uri").url(params["finder_checkpoint"]):
            return None
    except LenslibError:  # no data root to compare with: the notebook reports that when it reads
        return None
    path = cached_checkpoint(out / "work" / "cache", sha)
    try:
        return path if hashlib.sha256(path.read_bytes()).hexdigest() == sha else None
    except OSError:
        return None


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

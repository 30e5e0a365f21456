"""§E.2: the selection-function grid, injected and scored in memory, with and without Poisson noise.

The run has two halves. The *plan* follows the paper's draws exactly and is cheap: hosts are the validation
negatives (at most ``host_max``, ``DataFrame.sample(random_state=seed)``) snapped to the PSF × depth bins;
one ``numpy.random.default_rng(seed)`` chooses, cell after cell in the order θ_E → PSF → depth, a host for
each attempt and then draws its lens and source (a host that fails to load is a failed attempt that draws
nothing, a host without a usable PSF fails after its draws, as in the authors' loop), until the cell has
``injections_per_cell`` successes or ``(1 + max_retries)`` times that many attempts. Attempt ``a`` of cell
``c`` (1-based) seeds its Poisson noise with ``seed + c·attempts_per_cell + a``.

The *execution* renders and scores the plan in shards of whole cells on the device (hosts read once, both
conditions from one gather), each shard written atomically to ``grid_<condition>/shards/``; a rerun redoes
the plan (deterministic) and only the shards that are missing. The shards are then joined into the
per-injection table ``grid_<condition>/injections.parquet`` and the D06 artefacts ``selection_function.csv``
(F.1) and ``selection_function_meta.json`` (F.2) are derived from it.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lenslib._tqdm import tqdm
from lenslib._util import atomic_write, write_json
from lenslib.experiments.compute.inputs import Inputs, RecomputeError, Scorer
from lenslib.experiments.compute.tier_a import sample_rows
from lenslib.injection import InjectionEngine, InjectionParams, PixelatedStamps
from lenslib.injection.priors import draw_row, params_from_rows
from lenslib.injection.realistic import RealisticSourceSpec, realistic_sources
from lenslib.parallel import Executor, LocalExecutor, on_worker_device
from lenslib.stats import jeffreys_intervals
from lenslib.survey import PIXSCALE, depth_mag

THETA_E = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.25, 2.5, 2.75, 3.0)
PSF_FWHM = (0.9, 1.05, 1.2, 1.35, 1.5, 1.65, 1.8)
DEPTH_5SIG = (22.5, 23.0, 23.5, 24.0, 24.5)
SOURCE_BINS = (("23-24", 23.0, 24.0), ("24-25", 24.0, 25.0), ("25-26", 25.0, 26.0))
LENSED_BINS = (("lensed_18-20", 18.0, 20.0), ("lensed_20-22", 20.0, 22.0), ("lensed_22-24", 22.0, 24.0),
               ("lensed_24-27", 24.0, 27.0))
CONDITIONS = {"no_poisson": False, "poisson": True}
SUB_BIN_MIN = 10  # a source- or lensed-magnitude row is "sufficient" from this many injections


@dataclass(frozen=True)
class GridSpec:
    """The grid's axes, sizes and seeds (the paper's values by default)."""

    theta_e: tuple[float, ...] = THETA_E
    psf_fwhm: tuple[float, ...] = PSF_FWHM
    depth_5sig: tuple[float, ...] = DEPTH_5SIG
    injections_per_cell: int = 500
    host_max: int = 20_000
    seed: int = 1337
    max_retries: int = 5
    fixed_thresholds: tuple[float, ...] = (0.3, 0.5, 0.7)
    gain: float = 150.0
    sampling: str = "full"
    shard_injections: int = 4096
    batch_size: int = 0  # injections per engine batch; 0: 512 on a GPU, 128 on a CPU
    source_mix: float = 0.0  # fraction of each arc's light from a realistic source (lenslib.injection.realistic)
    conditions: tuple[str, ...] = tuple(CONDITIONS)
    prefix: str = "grid_"  # results/<prefix><condition>/

    def __post_init__(self) -> None:
        for name in ("injections_per_cell", "host_max", "shard_injections"):
            if getattr(self, name) <= 0:
                raise RecomputeError(f"parameter 'grid_{name}' must be > 0, got {getattr(self, name)}")
        unknown = [c for c in self.conditions if c not in CONDITIONS]
        if unknown or not self.conditions:
            raise RecomputeError(f"grid conditions must be among {list(CONDITIONS)}, got {list(self.conditions)}")
        if not 0 <= self.source_mix <= 1:
            raise RecomputeError(f"grid source_mix must be in [0, 1], got {self.source_mix}")
        if self.max_retries < 0:
            raise RecomputeError(f"parameter 'grid_max_retries' must be ≥ 0, got {self.max_retries}")

    @property
    def attempts_per_cell(self) -> int:
        return self.injections_per_cell * (1 + self.max_retries)

    def cells(self) -> pd.DataFrame:
        """All cells in loop order: cell_idx (1-based), theta_e, psf_fwhm, depth_5sig and the bin indices."""
        rows = [(ti, pi, di) for ti in range(len(self.theta_e)) for pi in range(len(self.psf_fwhm))
                for di in range(len(self.depth_5sig))]
        return pd.DataFrame({"cell_idx": np.arange(1, len(rows) + 1),
                             "theta_e": [self.theta_e[t] for t, _, _ in rows],
                             "psf_fwhm": [self.psf_fwhm[p] for _, p, _ in rows],
                             "depth_5sig": [self.depth_5sig[d] for _, _, d in rows],
                             "psf_i": [p for _, p, _ in rows], "depth_i": [d for _, _, d in rows]})


def snap(values: np.ndarray, centres: tuple[float, ...]) -> np.ndarray:
    """Index of the nearest bin centre (ties → the lower bin; out of range → the edge bin; NaN → bin 0, as
    numpy's argmin of an all-NaN row)."""
    v = np.asarray(values, dtype=float)
    idx = np.argmin(np.abs(np.nan_to_num(v, nan=0.0)[:, None] - np.asarray(centres)[None, :]), axis=1)
    idx[np.isnan(v)] = 0
    return idx


@dataclass
class Plan:
    """The planned successful injections (one row each) and the failed attempts."""

    table: pd.DataFrame  # cell_idx, inj_idx, attempt, host, inj_seed
    params: InjectionParams
    failures: list[dict]
    n_failed: dict[int, int]  # cell_idx → failed attempts
    cells_with_hosts: set[int]  # cells whose PSF × depth bin has at least one host


def make_plan(pool: pd.DataFrame, host_errors: dict[int, str], spec: GridSpec, priors,
              progress: bool = True) -> Plan:
    """The paper's draws (see the module docstring); ``host_errors`` are the pool positions that failed to load."""
    psf_i = snap(pool["psfsize_r"].to_numpy(), spec.psf_fwhm)
    depth_i = snap(depth_mag(pool["psfdepth_r"].to_numpy()), spec.depth_5sig)
    fwhm = pool["psfsize_r"].to_numpy(dtype=float)
    groups = {}
    for k, key in enumerate(zip(psf_i.tolist(), depth_i.tolist(), strict=True)):
        groups.setdefault(key, []).append(k)
    rng = np.random.default_rng(spec.seed)
    rows, parts, failures, n_failed, with_hosts = [], [], [], {}, set()
    cells = spec.cells()
    n_target = spec.injections_per_cell
    for cell in tqdm(cells.itertuples(), total=len(cells), desc="grid plan", unit="cell", disable=not progress):
        group = groups.get((cell.psf_i, cell.depth_i))
        if not group:
            continue
        with_hosts.add(int(cell.cell_idx))
        k = attempt = 0
        while k < n_target and attempt < spec.attempts_per_cell:
            attempt += 1
            h = group[int(rng.choice(len(group)))]
            if h in host_errors:
                error = host_errors[h]
            else:
                p = draw_row(rng, cell.theta_e, priors)
                if math.isfinite(fwhm[h]) and fwhm[h] > 0:
                    rows.append((cell.cell_idx, k, attempt, h, spec.seed + cell.cell_idx * spec.attempts_per_cell
                                 + attempt))
                    parts.append(p)
                    k += 1
                    continue
                error = f"psfsize_r is {fwhm[h]!r}: no PSF to inject with"
            n_failed[cell.cell_idx] = n_failed.get(cell.cell_idx, 0) + 1
            if len(failures) < 20:
                failures.append({"cell_idx": int(cell.cell_idx), "theta_e": cell.theta_e,
                                 "psf_bin": cell.psf_fwhm, "depth_bin": cell.depth_5sig, "attempt": attempt,
                                 "error": error, "cutout_path": str(pool["cutout_path"].iloc[h])})
    table = pd.DataFrame(rows, columns=["cell_idx", "inj_idx", "attempt", "host", "inj_seed"])
    params = params_from_rows(parts, priors)
    return Plan(table, params, failures, n_failed, with_hosts)


def shards(plan: Plan, spec: GridSpec) -> list[np.ndarray]:
    """Plan rows cut into shards of whole cells of about ``shard_injections`` injections each."""
    out, cur, size = [], [], 0
    for _, idx in plan.table.groupby("cell_idx", sort=True).indices.items():
        cur.append(idx)
        size += len(idx)
        if size >= spec.shard_injections:
            out.append(np.concatenate(cur))
            cur, size = [], 0
    if cur:
        out.append(np.concatenate(cur))
    return out


def gather_hosts(images: np.ndarray, plan: Plan, rows: np.ndarray) -> np.ndarray:
    """The host image of every injection of a shard, (N, 3, H, W) float32."""
    return images[plan.table["host"].to_numpy()[rows]]


def realistic_family(seeds: np.ndarray, spec: RealisticSourceSpec | None = None) -> PixelatedStamps:
    """Realistic sources for injections with these seeds (each its own galaxy, made when its batch is rendered)."""
    seeds, spec = np.asarray(seeds), spec or RealisticSourceSpec()
    return PixelatedStamps(lambda k: realistic_sources(seeds[k], spec), spec.pixscale)


def run_shard(pool: pd.DataFrame, images: np.ndarray, plan: Plan, rows: np.ndarray,
              engines: dict[str, InjectionEngine], scorer) -> dict[str, pd.DataFrame]:
    """Inject and score one shard under every condition; per-injection frames by condition."""
    t = plan.table.iloc[rows]
    host = t["host"].to_numpy()
    hosts = gather_hosts(images, plan, rows)
    params = plan.params.select(rows)
    fwhm = pool["psfsize_r"].to_numpy(dtype=float)[host]
    depth = pool["psfdepth_r"].to_numpy(dtype=float)[host]
    base = t.reset_index(drop=True).copy()
    base.insert(0, "inj_id", [f"cell{c:05d}_inj{k:05d}" for c, k in zip(base["cell_idx"], base["inj_idx"],
                                                                         strict=True)])
    base["host_galaxy_id"] = pool["galaxy_id"].to_numpy()[host]
    base["cutout_path"] = pool["cutout_path"].to_numpy()[host]
    base["host_psfsize_r"], base["host_psfdepth_r"] = fwhm, depth
    out = {}
    for cond, engine in engines.items():
        sources = realistic_family(t["inj_seed"].to_numpy()) if engine.source_mix else None
        res = engine.inject(hosts, params, fwhm, depth, seeds=t["inj_seed"].to_numpy(), sources=sources)
        df = pd.concat([base, res.to_frame().drop(columns=["seed", "psf_fwhm_r"])], axis=1)
        df["src_r_mag"] = params.r_mag
        df["score"] = scorer.scores(res.injected)
        out[cond] = df
        del res
    return out


def selection_function(inj: pd.DataFrame, spec: GridSpec, thresholds: list[tuple[float, str, float]],
                       n_failed: dict[int, int], cells_with_hosts: set[int]) -> pd.DataFrame:
    """The F.1 table from the per-injection table (columns cell_idx, score, src_r_mag, lensed_r_mag, arc_snr).

    Rows run cell → threshold → magnitude bin ("all", the source bins, the lensed bins); a cell with no host
    has its "all" rows only. Every count is one ``bincount`` over the injections, every interval one scipy call."""
    cells = spec.cells()
    n_cells, n_inj = len(cells), len(inj)
    pos = inj["cell_idx"].to_numpy() - 1  # cell_idx runs 1 … n_cells in loop order
    score, snr = inj["score"].to_numpy(dtype=float), inj["arc_snr"].to_numpy(dtype=float)
    labels = ["all"] + [label for label, _, _ in SOURCE_BINS] + [label for label, _, _ in LENSED_BINS]
    member = [np.ones(n_inj, bool)]
    for col, bins in (("src_r_mag", SOURCE_BINS), ("lensed_r_mag", LENSED_BINS)):
        v = inj[col].to_numpy(dtype=float)
        member += [(v >= lo) & (v < hi) for _, lo, hi in bins]

    def count(sel: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        return np.bincount(pos[sel], weights=None if weights is None else weights[sel], minlength=n_cells)

    finite = np.isfinite(snr)
    n = np.stack([count(m) for m in member], axis=1)  # (cell, bin)
    score_sum = np.stack([count(m, score) for m in member], axis=1)
    snr_n = np.stack([count(m & finite) for m in member], axis=1)
    snr_sum = np.stack([count(m & finite, np.where(finite, snr, 0.0)) for m in member], axis=1)
    k = np.stack([np.stack([count(m & (score >= t)) for m in member], axis=1) for t, _, _ in thresholds],
                 axis=1)  # (cell, threshold, bin)
    shape = k.shape
    n3 = np.broadcast_to(n[:, None, :], shape)
    has_hosts = np.isin(cells["cell_idx"].to_numpy(), sorted(cells_with_hosts))
    keep = np.broadcast_to(has_hosts[:, None, None] | (np.arange(shape[2]) == 0)[None, None, :], shape)
    n3 = np.where(has_hosts[:, None, None], n3, 0)
    k = np.where(has_hosts[:, None, None], k, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        completeness = np.where(n3 > 0, k / np.maximum(n3, 1), np.nan)
        mean_score = np.broadcast_to(np.where(n > 0, score_sum / np.maximum(n, 1), np.nan)[:, None, :], shape)
        mean_snr = np.broadcast_to(np.where(snr_n > 0, snr_sum / np.maximum(snr_n, 1), np.nan)[:, None, :], shape)
    lo68, hi68 = jeffreys_intervals(k, n3, 0.68)
    lo95, hi95 = jeffreys_intervals(k, n3, 0.95)
    failed = np.array([n_failed.get(int(c), 0) for c in cells["cell_idx"]])
    n_failed3 = np.broadcast_to(np.where((np.arange(shape[2]) == 0)[None, None, :] & has_hosts[:, None, None],
                                         failed[:, None, None], 0), shape)
    minimum = np.where(np.arange(shape[2]) == 0, spec.injections_per_cell, SUB_BIN_MIN)[None, None, :]
    sufficient = has_hosts[:, None, None] & (n3 >= minimum)
    ci, ti, bi = np.nonzero(keep)  # C order: cell → threshold → bin, the loop order of the F.1 table
    thr = np.array(thresholds, dtype=object)
    df = pd.DataFrame({
        "theta_e": cells["theta_e"].to_numpy()[ci], "psf_fwhm": cells["psf_fwhm"].to_numpy()[ci],
        "depth_5sig": cells["depth_5sig"].to_numpy()[ci], "threshold": thr[ti, 0].astype(float),
        "threshold_type": thr[ti, 1].astype(str), "fpr_target": thr[ti, 2].astype(float),
        "source_mag_bin": np.array(labels)[bi], "n_injections": n3[ci, ti, bi], "n_detected": k[ci, ti, bi],
        "n_failed": n_failed3[ci, ti, bi], "completeness": completeness[ci, ti, bi],
        "ci68_lo": lo68[ci, ti, bi], "ci68_hi": hi68[ci, ti, bi], "ci95_lo": lo95[ci, ti, bi],
        "ci95_hi": hi95[ci, ti, bi], "mean_score": mean_score[ci, ti, bi],
        "mean_arc_snr": np.where(n3 > 0, mean_snr, np.nan)[ci, ti, bi], "sufficient": sufficient[ci, ti, bi]})
    return df.astype({"n_injections": int, "n_detected": int, "n_failed": int, "fpr_target": float,
                      "sufficient": bool})


def threshold_rows(spec: GridSpec, tau: dict[float, float]) -> list[tuple[float, str, float]]:
    """(τ, threshold_type, fpr_target) in the meta order: the fixed ones, then the FPR-derived ones."""
    return ([(float(t), "fixed", math.nan) for t in spec.fixed_thresholds]
            + [(float(v), f"FPR={f:.1e}", float(f)) for f, v in tau.items()])


@dataclass
class GridContext:
    """What every grid task needs, sent once to each worker: the host pool's columns and images, the plan,
    the spec, the scorer, and the shard folders. ``device`` None: the worker's own (its GPU, else the CPU)."""

    pool: pd.DataFrame
    images: np.ndarray
    plan: Plan
    spec: GridSpec
    scorer: Scorer
    dirs: dict[str, Path]
    device: torch.device | None = None

    def engines(self) -> dict[str, InjectionEngine]:
        """The injection engine of each condition, made once per process (and the scorer moved to the device)."""
        if getattr(self, "_engines", None) is None:
            device = on_worker_device(self.scorer.model, self.device)
            batch = self.spec.batch_size or (512 if device.type == "cuda" else 128)
            self._engines = {c: InjectionEngine(poisson=CONDITIONS[c], gain=self.spec.gain,
                                                sampling=self.spec.sampling, device=device, batch_size=batch,
                                                source_mix=self.spec.source_mix) for c in self.spec.conditions}
        return self._engines


def grid_task(ctx: GridContext, shard: tuple[str, np.ndarray]) -> str:
    """Inject, score and write one shard (``(file name, plan rows)``) under every condition, unless its
    files exist already; each file is written atomically, so a task killed midway leaves nothing."""
    name, rows = shard
    if not all((ctx.dirs[c] / name).exists() for c in ctx.spec.conditions):
        frames = run_shard(ctx.pool, ctx.images, ctx.plan, rows, ctx.engines(), ctx.scorer)
        for c, df in frames.items():
            with atomic_write(ctx.dirs[c] / name) as tmp:
                df.to_parquet(tmp, index=False)
    return name


def run_grid(inputs: Inputs, results: Path, work: Path, tau: dict[float, float], spec: GridSpec = GridSpec(), *,
             meta: dict | None = None, progress: bool = True, log=print,
             executor: Executor | None = None, timings: dict[str, float] | None = None) -> dict[str, Path]:
    """Plan, inject, score and write both grid conditions; returns the CSV path per condition.

    The shards run on ``executor`` (default: this process); only the missing ones are computed. ``timings``,
    if given, receives the wall time (s) of each part: ``grid hosts`` (reading the host cutouts), ``grid plan``,
    ``grid shards`` (injection and scoring) and ``grid tables`` (the parquet, CSV and meta files)."""
    t0 = time.perf_counter()
    clock = _Clock(timings, log)
    executor = executor or LocalExecutor()
    pool = sample_rows(inputs.rows("val", label=0), spec.host_max, spec.seed).reset_index(drop=True)
    images, errors = inputs.load_images(pool, progress=progress)
    clock("grid hosts", f"{len(pool)} host cutouts read", len(pool), "files")
    plan = make_plan(pool, errors, spec, inputs.priors, progress=progress)
    clock("grid plan", f"plan of {len(plan.table)} injections", len(plan.table), "injections")
    if plan.table.empty:
        raise RecomputeError(f"the grid has no injection to make: no usable host among {len(pool)} validation "
                             f"negatives ({len(errors)} failed to load)")
    parts = shards(plan, spec)
    names = [f"cells_{int(plan.table['cell_idx'].iloc[r[0]]):05d}.parquet" for r in parts]
    dirs = {c: results / f"{spec.prefix}{c}" / "shards" for c in spec.conditions}
    todo = [(n, r) for n, r in zip(names, parts, strict=True)
            if not all((dirs[c] / n).exists() for c in spec.conditions)]
    if todo:
        local = executor.kind == "local"
        scorer = inputs.scorer(batch_size=256)
        if not local:  # the workers put the model on their own device
            scorer = replace(scorer, model=copy.deepcopy(scorer.model).cpu())
        columns = ["psfsize_r", "psfdepth_r", "galaxy_id", "cutout_path"]
        ctx = GridContext(pool[columns], images, plan, spec, scorer, dirs, inputs.device if local else None)
        log(f"grid: {len(todo)} of {len(parts)} shards to compute ({executor.kind} executor)")
        executor.map(grid_task, ctx, todo, desc=f"grid ({len(spec.conditions)} conditions)", progress=progress)
    clock("grid shards", f"{len(todo)} shards injected and scored",
          sum(len(r) for _, r in todo) * len(spec.conditions), "injections+scores")
    rate = len(plan.table) * len(spec.conditions) / max(time.perf_counter() - t0, 1e-9)
    log(f"grid: {len(plan.table)} injections × {len(spec.conditions)} conditions, {rate:.0f} injections+scores/s")
    thresholds = threshold_rows(spec, tau)
    out = {}
    for c in spec.conditions:
        poisson = CONDITIONS[c]
        inj = pd.concat([pd.read_parquet(dirs[c] / n) for n in names], ignore_index=True)
        folder = results / f"{spec.prefix}{c}"
        with atomic_write(folder / "injections.parquet") as tmp:
            inj.to_parquet(tmp, index=False)
        csv = selection_function(inj, spec, thresholds, plan.n_failed, plan.cells_with_hosts)
        with atomic_write(folder / "selection_function.csv") as tmp:
            csv.to_csv(tmp, index=False)
        write_json(folder / "selection_function_meta.json",
                   grid_meta(spec, tau, csv, plan, poisson, meta or {}, len(inj)))
        out[c] = folder / "selection_function.csv"
    clock("grid tables", "per-injection tables, CSVs and meta written")
    return out


class _Clock:
    """Times the parts of a run one after another: each call logs the time since the previous one (with a rate
    when given a count) and records it under its name in ``timings``."""

    def __init__(self, timings: dict[str, float] | None, log):
        self.timings, self.log, self.t = timings, log, time.perf_counter()

    def __call__(self, name: str, what: str, count: int = 0, unit: str = "") -> None:
        now = time.perf_counter()
        dt, self.t = now - self.t, now
        if self.timings is not None:
            self.timings[name] = dt
        rate = f" ({count / dt:,.0f} {unit}/s)" if count and dt > 0 else ""
        self.log(f"{name}: {what} in {dt:.1f} s{rate}")


def grid_meta(spec: GridSpec, tau: dict[float, float], csv: pd.DataFrame, plan: Plan, poisson: bool, meta: dict,
              n_ok: int) -> dict:
    """``selection_function_meta.json`` (F.2)."""
    first = csv[(csv["threshold"] == csv["threshold"].iloc[0]) & (csv["source_mag_bin"] == "all")]
    n_failed = sum(plan.n_failed.values())
    return {
        "timestamp_utc": meta.get("timestamp_utc"), "checkpoint": meta.get("checkpoint"),
        "manifest": meta.get("manifest"), "arch": meta.get("arch"), "epoch": meta.get("epoch"),
        "host_split": "val", "host_max": spec.host_max,
        "thresholds": [t for t, _, _ in threshold_rows(spec, tau)],
        "injections_per_cell": spec.injections_per_cell,
        "grid": {"theta_e": list(spec.theta_e), "psf_fwhm": list(spec.psf_fwhm), "depth_5sig": list(spec.depth_5sig)},
        "preprocessing": "raw_robust", "crop": False, "pixscale": PIXSCALE, "seed": spec.seed,
        "n_cells": len(spec.cells()), "n_sufficient_cells": int(first["sufficient"].sum()),
        "n_empty_cells": int((first["n_injections"] == 0).sum()),
        "total_injections_ok": int(n_ok), "total_injections_failed": int(n_failed),
        "failure_rate_pct": 100.0 * n_failed / max(n_ok + n_failed, 1),
        "max_retries_per_injection": spec.max_retries, "failure_log_sample": plan.failures,
        "fpr_targets": [float(f) for f in tau], "fpr_derived_thresholds": {str(f): v for f, v in tau.items()},
        "add_poisson_noise": poisson, "gain_e_per_nmgy": spec.gain if poisson else None, "add_sky_noise": False,
        "save_cutouts": False, "save_cutouts_dir": "",
        "injection_engine": f"SIE+shear (lenslib.injection, sampling={spec.sampling})",
        # the D06 keys only: a realistic-source grid (lenslib.injection.realistic) says so in these two
        "source_model": "Sersic (clumps as the priors say)" if not spec.source_mix else
        f"{1 - spec.source_mix:g} Sersic + {spec.source_mix:g} realistic pixelated (lenslib.injection.realistic)",
        "injection_overrides": {"source_mix": spec.source_mix} if spec.source_mix else {},
        "notes": ["Injections and scores computed in memory by lenslib (no cutout round trip).",
                  "Per-injection rows (parameters, magnitudes, SNR, seed, host, score): injections.parquet.",
                  "CIs are Jeffreys Beta(0.5,0.5) equal-tailed intervals."],
    }

"""§E.3: the bright-arc test, 200 hosts drawn once × 8 source-magnitude bins × six variants, paired.

Injection ``(b, i)`` (bin b, host i) draws its lens and source from ``default_rng(seed + 10 000·b + i)``, then
its target r magnitude uniformly in the bin (colours kept), and seeds its Poisson noise with the same number.
Variants that differ only in the scoring (``clip20``) score the same images; ``unrestricted`` maps the same
uniform draw to β_frac ∈ (0.1, 1.0). Every variant therefore sees the same hosts, and the default-β variants
the same geometry, in every bin.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import torch

from lenslib._util import atomic_write, write_json
from lenslib.experiments.compute.inputs import Inputs, RecomputeError, Scorer
from lenslib.experiments.compute.tier_a import sample_rows
from lenslib.injection import UNRESTRICTED_BETA_FRAC, InjectionEngine, InjectionParams, draw
from lenslib.parallel import Executor, LocalExecutor, on_worker_device

MAG_BINS = tuple((f"{m}-{m + 1}", float(m), float(m + 1)) for m in range(18, 26))


@dataclass(frozen=True)
class Variant:
    poisson: bool = False
    gain: float = 150.0
    clip_range: float | None = None
    unrestricted: bool = False

    @property
    def images_key(self) -> tuple:
        """Variants with the same key score the same injected images."""
        return (self.poisson, self.gain if self.poisson else None, self.unrestricted)


VARIANTS = {
    "baseline": Variant(),
    "poisson": Variant(poisson=True),
    "clip20": Variant(clip_range=20.0),
    "poisson_clip20": Variant(poisson=True, clip_range=20.0),
    "unrestricted": Variant(unrestricted=True),
    "gain_1e12": Variant(poisson=True, gain=1e12),
}


def draws(priors, n_hosts: int, theta_e: float, seed: int, unrestricted: bool) -> tuple[InjectionParams, np.ndarray,
                                                                                         pd.DataFrame]:
    """Parameters, engine seeds and (mag_bin, host_idx, target_mag) of every injection, bin-major."""
    pri = priors.override(beta_frac_range=UNRESTRICTED_BETA_FRAC) if unrestricted else priors
    parts, seeds, rows = [], [], []
    for b, (label, lo, hi) in enumerate(MAG_BINS):
        for i in range(n_hosts):
            s = seed + 10_000 * b + i
            rng = np.random.default_rng(s)
            p = draw(rng, theta_e, pri, 1)
            m = rng.uniform(lo, hi)
            parts.append(p.with_r_mag([m]))
            seeds.append(s)
            rows.append((label, i, m))
    return (InjectionParams.concat(parts), np.asarray(seeds, dtype=np.int64),
            pd.DataFrame(rows, columns=["mag_bin", "host_idx", "target_mag"]))


def groups(variants: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """The requested variants by the images they score: ``{group name: variants of VARIANTS}``; the group is
    named by its first variant, and holds every variant of :data:`VARIANTS` with the same images."""
    out: dict[str, tuple[str, ...]] = {}
    for name in variants:
        key = VARIANTS[name].images_key
        first = next(n for n, v in VARIANTS.items() if v.images_key == key)
        out.setdefault(first, tuple(n for n, v in VARIANTS.items() if v.images_key == key))
    return out


@dataclass
class BrightArcContext:
    """What every bright-arc task needs, sent once to each worker: the hosts' PSF and depth columns and
    images, the draws of every group, the scorer, the sampling and the shard folder of each group.
    ``device`` None: the worker's own (its GPU, else the CPU)."""

    hosts: pd.DataFrame
    images: np.ndarray
    draws: dict[str, tuple[InjectionParams, np.ndarray, pd.DataFrame, np.ndarray]]  # group → params, seeds, index, ok
    scorer: Scorer
    sampling: str
    dirs: dict[str, Path]
    device: torch.device | None = None

    def engine(self, group: str) -> InjectionEngine:
        """The injection engine of a group, made once per process (and the scorer moved to the device)."""
        cache = self.__dict__.setdefault("_engines", {})
        if group not in cache:
            device = on_worker_device(self.scorer.model, self.device)
            v = VARIANTS[group]
            cache[group] = InjectionEngine(poisson=v.poisson, gain=v.gain, sampling=self.sampling, device=device,
                                           batch_size=512 if device.type == "cuda" else 128)
        return cache[group]


def bright_arc_task(ctx: BrightArcContext, item: tuple[str, str]) -> Path:
    """Inject one magnitude bin of one group (``(group, bin label)``), score it with every variant of the
    group, and write ``ba_<group>/shards/<bin>.parquet`` atomically (row, lensed_r_mag, arc_snr, a
    ``score_<variant>`` column per variant), unless it exists."""
    group, label = item
    path = ctx.dirs[group] / f"{label}.parquet"
    if path.exists():
        return path
    params, seeds, index, ok = ctx.draws[group]
    sel = ok & (index["mag_bin"] == label).to_numpy()
    rows = np.flatnonzero(sel)
    h = index["host_idx"].to_numpy()[rows]
    df = pd.DataFrame({"row": rows})
    if len(rows):
        res = ctx.engine(group).inject(ctx.images[h], params.select(sel), ctx.hosts["psfsize_r"].to_numpy()[h],
                                       ctx.hosts["psfdepth_r"].to_numpy()[h], seeds=seeds[rows])
        df["lensed_r_mag"], df["arc_snr"] = res.lensed_r_mag, res.arc_snr
        for name in groups((group,))[group]:
            clip = VARIANTS[name].clip_range
            spec = ctx.scorer.spec if clip is None else replace(ctx.scorer.spec, clip_range=float(clip))
            df[f"score_{name}"] = replace(ctx.scorer, spec=spec).scores(res.injected)
    with atomic_write(path) as tmp:
        df.to_parquet(tmp, index=False)
    return path


def run_bright_arcs(inputs: Inputs, results: Path, *, n_hosts: int = 200, theta_e: float = 1.5, seed: int = 42,
                    variants: tuple[str, ...] = tuple(VARIANTS), meta: dict | None = None, sampling: str = "full",
                    progress: bool = True, executor: Executor | None = None) -> dict[str, dict]:
    """Write ``ba_<variant>/bright_arc_results.json`` (F.4) and ``injection_metadata_scored.parquet`` per variant.

    The work is one task per magnitude bin and group of variants that score the same images (run on
    ``executor``, default this process), each writing its shard; a variant whose results file exists is not
    redone, and a rerun computes only the missing shards."""
    if n_hosts <= 0:
        raise RecomputeError(f"parameter 'bright_arc_hosts' must be > 0, got {n_hosts}")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise RecomputeError(f"unknown bright-arc variant(s) {unknown}; variants are {list(VARIANTS)}")
    executor = executor or LocalExecutor()
    hosts = sample_rows(inputs.rows("val", label=0, finite_psf=True), n_hosts, seed).reset_index(drop=True)
    if hosts.empty:
        raise RecomputeError("no validation negative with a finite psfsize_r and psfdepth_r to host the bright arcs")
    todo = tuple(v for v in variants if not (results / f"ba_{v}" / "bright_arc_results.json").exists())
    if not todo:
        return {}
    images, errors = inputs.load_images(hosts, progress=progress)
    n = len(hosts)
    draws_by_group = {}
    for group in groups(todo):
        params, seeds, index = draws(inputs.priors, n, theta_e, seed, VARIANTS[group].unrestricted)
        draws_by_group[group] = (params, seeds, index, ~index["host_idx"].isin(list(errors)).to_numpy())
    dirs = {g: results / f"ba_{g}" / "shards" for g in draws_by_group}
    local = executor.kind == "local"
    scorer = inputs.scorer()
    if not local:  # the workers put the model on their own device
        scorer = replace(scorer, model=copy.deepcopy(scorer.model).cpu())
    ctx = BrightArcContext(hosts[["psfsize_r", "psfdepth_r"]], images, draws_by_group, scorer, sampling, dirs,
                           inputs.device if local else None)
    items = [(g, label) for g in draws_by_group for label, _, _ in MAG_BINS]
    executor.map(bright_arc_task, ctx, items, desc="bright arcs", progress=progress)
    out = {}
    for group, names in groups(todo).items():
        params, seeds, index, ok = draws_by_group[group]
        shard = pd.concat([pd.read_parquet(dirs[group] / f"{label}.parquet") for label, _, _ in MAG_BINS],
                          ignore_index=True).sort_values("row")
        if not np.array_equal(shard["row"].to_numpy(), np.flatnonzero(ok)):
            raise RecomputeError(f"the bright-arc shards under {dirs[group]} do not hold the expected injections; "
                                 f"remove the folder and rerun")
        for name in (v for v in names if v in todo):
            scores = np.full(len(index), np.nan)
            scores[ok] = shard[f"score_{name}"].to_numpy() if len(shard) else []
            res = SimpleNamespace(lensed_r_mag=shard["lensed_r_mag"].to_numpy() if len(shard) else [],
                                  arc_snr=shard["arc_snr"].to_numpy() if len(shard) else [])
            table = _metadata(hosts, params, seeds, index, ok, res, theta_e, scores, name)
            folder = results / f"ba_{name}"
            with atomic_write(folder / "injection_metadata_scored.parquet") as tmp:
                table.to_parquet(tmp, index=False)
            doc = _results(table, VARIANTS[name], name, n, theta_e, seed, meta or {}, inputs)
            write_json(folder / "bright_arc_results.json", doc)
            out[name] = doc
    return out


def _metadata(hosts, params, seeds, index, ok, res, theta_e, scores, name) -> pd.DataFrame:
    """The E.3 per-injection columns (+ ``cnn_score``); failed hosts keep NaN diagnostics."""
    h = index["host_idx"].to_numpy()
    flux = params.fluxes_nmgy()
    df = pd.DataFrame({
        "injection_id": [f"bright_arc_{b}_host{i:04d}" for b, i in zip(index["mag_bin"], h, strict=True)],
        "mag_bin": index["mag_bin"], "host_idx": h,
        "cutout_filename": [f"bright_arc_{b}_host{i:04d}.npz" for b, i in zip(index["mag_bin"], h, strict=True)],
        "host_cutout_path": hosts["cutout_path"].to_numpy()[h], "theta_e": theta_e,
        "psf_fwhm_r": hosts["psfsize_r"].to_numpy()[h], "psfdepth_r": hosts["psfdepth_r"].to_numpy()[h],
        "target_mag": index["target_mag"], "source_r_mag": index["target_mag"],
        "lensed_r_mag": np.nan, "beta_frac": params.beta_frac, "source_re": params.re_arcsec,
        "source_n_sersic": params.n_sersic, "source_q": params.q_source, "source_flux_r": flux[:, 1],
        "source_flux_g": flux[:, 0], "source_flux_z": flux[:, 2], "lens_q": params.q_lens,
        "lens_shear_g1": params.shear_g1, "lens_shear_g2": params.shear_g2, "arc_snr": np.nan,
        "injection_seed": seeds,
    })
    df.loc[ok, "lensed_r_mag"] = res.lensed_r_mag
    df.loc[ok, "arc_snr"] = res.arc_snr
    df["cnn_score"] = scores
    return df


def _results(table: pd.DataFrame, v: Variant, name: str, n_hosts: int, theta_e: float, seed: int, meta: dict,
             inputs: Inputs) -> dict:
    by_bin = {}
    for label, _, _ in MAG_BINS:
        t = table[(table["mag_bin"] == label) & table["cnn_score"].notna()]
        s = t["cnn_score"].to_numpy()
        snr = t["arc_snr"].to_numpy()
        by_bin[label] = {"mag_bin": label, "n_scored": len(s),
                         "detection_rate_p03": float(np.mean(s >= 0.3)) if len(s) else float("nan"),
                         "detection_rate_p05": float(np.mean(s >= 0.5)) if len(s) else float("nan"),
                         "median_score": float(np.median(s)) if len(s) else float("nan"),
                         "median_arc_snr": float(np.nanmedian(snr)) if np.isfinite(snr).any() else float("nan")}
    spec = inputs.scorer(v.clip_range).spec
    n_scored = int(table["cnn_score"].notna().sum())
    return {
        "timestamp_utc": meta.get("timestamp_utc"), "checkpoint": meta.get("checkpoint"), "arch": meta.get("arch"),
        "epoch": meta.get("epoch"), "device": meta.get("device"), "clip_range_override": v.clip_range,
        "preprocessing": {"mode": "raw_robust", "crop": False, "clip_range": float(spec.clip_range)},
        "phase1_config": {"phase": "both", "manifest": meta.get("manifest"), "host_split": "val", "n_hosts": n_hosts,
                          "theta_e": theta_e, "beta_frac_range": list(UNRESTRICTED_BETA_FRAC) if v.unrestricted
                          else None, "add_poisson_noise": v.poisson, "gain_e_per_nmgy": v.gain,
                          "add_sky_noise": False, "resume": False, "seed": seed, "checkpoint": meta.get("checkpoint"),
                          "clip_range": None, "device": meta.get("device"), "out_dir": f"ba_{name}"},
        "n_total_injections": len(table), "n_scored": n_scored, "n_failed": len(table) - n_scored,
        "magnitude_bins": [b for b, _, _ in MAG_BINS], "results_by_bin": by_bin,
        "notes": ["Injected and scored in memory by lenslib; per-injection rows in injection_metadata_scored.parquet.",
                  "Hosts, geometry and seeds are shared by the variants (pairing of E.3)."],
    }

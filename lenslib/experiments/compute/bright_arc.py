"""§E.3: the bright-arc test, 200 hosts drawn once × 8 source-magnitude bins × six variants, paired.

Injection ``(b, i)`` (bin b, host i) draws its lens and source from ``default_rng(seed + 10 000·b + i)``, then
its target r magnitude uniformly in the bin (colours kept), and seeds its Poisson noise with the same number.
Variants that differ only in the scoring (``clip20``) score the same images; ``unrestricted`` maps the same
uniform draw to β_frac ∈ (0.1, 1.0). Every variant therefore sees the same hosts, and the default-β variants
the same geometry, in every bin.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lenslib._tqdm import tqdm
from lenslib._util import atomic_write, write_json
from lenslib.experiments.compute.inputs import Inputs, RecomputeError
from lenslib.experiments.compute.tier_a import sample_rows
from lenslib.injection import UNRESTRICTED_BETA_FRAC, InjectionEngine, InjectionParams, draw

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


def run_bright_arcs(inputs: Inputs, results: Path, *, n_hosts: int = 200, theta_e: float = 1.5, seed: int = 42,
                    variants: tuple[str, ...] = tuple(VARIANTS), meta: dict | None = None, sampling: str = "full",
                    progress: bool = True) -> dict[str, dict]:
    """Write ``ba_<variant>/bright_arc_results.json`` (F.4) and ``injection_metadata_scored.parquet`` per variant.

    A variant whose results file exists is not redone (a rerun resumes after the last finished variant)."""
    if n_hosts <= 0:
        raise RecomputeError(f"parameter 'bright_arc_hosts' must be > 0, got {n_hosts}")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise RecomputeError(f"unknown bright-arc variant(s) {unknown}; variants are {list(VARIANTS)}")
    hosts = sample_rows(inputs.rows("val", label=0, finite_psf=True), n_hosts, seed).reset_index(drop=True)
    if hosts.empty:
        raise RecomputeError("no validation negative with a finite psfsize_r and psfdepth_r to host the bright arcs")
    images, errors = inputs.load_images(hosts, progress=progress)
    n = len(hosts)
    images_cache: dict[tuple, tuple] = {}
    out = {}
    for name in tqdm(variants, desc="bright arcs", unit="variant", disable=not progress):
        v = VARIANTS[name]
        folder = results / f"ba_{name}"
        if (folder / "bright_arc_results.json").exists():
            continue
        if v.images_key not in images_cache:
            params, seeds, index = draws(inputs.priors, n, theta_e, seed, v.unrestricted)
            ok = ~index["host_idx"].isin(list(errors)).to_numpy()
            engine = InjectionEngine(poisson=v.poisson, gain=v.gain, sampling=sampling, device=inputs.device,
                                     batch_size=512 if inputs.device.type == "cuda" else 128)
            h = index["host_idx"].to_numpy()[ok]
            res = engine.inject(images[h], params.select(ok), hosts["psfsize_r"].to_numpy()[h],
                                hosts["psfdepth_r"].to_numpy()[h], seeds=seeds[ok])
            images_cache[v.images_key] = (params, seeds, index, ok, res)
        params, seeds, index, ok, res = images_cache[v.images_key]
        scores = np.full(len(index), np.nan)
        scores[ok] = inputs.scorer(v.clip_range).scores(res.injected)
        table = _metadata(hosts, params, seeds, index, ok, res, theta_e, scores, name)
        with atomic_write(folder / "injection_metadata_scored.parquet") as tmp:
            table.to_parquet(tmp, index=False)
        doc = _results(table, v, name, n, theta_e, seed, meta or {}, inputs)
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

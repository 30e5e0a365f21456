"""Speed of the paper's recompute: the selection-function grid end to end (plan, hosts read once, injection
with and without Poisson noise, preprocessing, scoring, shards, CSV), in injections+scores per second,
against a bare forward pass of the same finder on preprocessed tensors already on the device (the most
the grid could reach) in the same run, and against the authors' ~15 per second (one GH200, ~2 h per
condition). Also times the other experiments at the sizes given and projects the full paper.

    python benchmarks/bench_paper.py [--per-cell 40] [--negatives 600] [--arch bottlenecked_resnet|efficientnet_v2_s]
        [--devices cpu cuda] [--sampling full|adaptive]
    python benchmarks/bench_paper.py --full [--devices cuda]      # the paper profile's recompute at full size
    python benchmarks/bench_paper.py --full --hosts 3000 --set grid_injections_per_cell=5 ...   # a small one

The bucket is synthetic (tests/paper_bucket.py: DR10-like hosts in the authors' layout, a finder with
random weights in the authors' checkpoint format): speed does not depend on what the weights are.

``--full`` times the whole ``paper`` profile's recompute (every experiment but training, at the paper's
sizes unless ``--set`` shrinks them) with an EfficientNetV2-S, on a bucket grown to ``--hosts`` validation
negatives (default 50 000, the FPR sample; hard links to the synthetic cutouts, each with its own key)
whose PSF and depth fill 20 of the 35 PSF × depth bins, as the authors' hosts do (220 non-empty cells:
2 × 110 000 grid injections at 500 per cell). It prints every step's time, the grid's parts (host reading,
plan, injection and scoring, tables) and the goals (grid ≤ 60 s, the whole recompute ≤ 10 min on one
H100-class GPU).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lenslib.data.manifests import read_manifest, write_manifest  # noqa: E402
from lenslib.data.storage import open_store  # noqa: E402
from lenslib.experiments.compute import bright_arc, grid, tier_a  # noqa: E402
from lenslib.experiments.compute.inputs import open_inputs  # noqa: E402
from lenslib.finder.preprocess import raw_robust  # noqa: E402
from lenslib.repro import params as P  # noqa: E402
from lenslib.repro.recompute import recompute  # noqa: E402
from lenslib.survey import psfdepth_from_mag  # noqa: E402
from tests.paper_bucket import CHECKPOINT_KEY, MANIFEST_KEY, make_bucket  # noqa: E402

AUTHORS_PER_S = 15.0  # injections+scores per second of the authors' grid (PAPER_SPEC / issue: ~2 h per condition)
FULL_GRID = 2 * 110_000
GOALS_S = {"selection-function grid": 60.0, "recompute": 600.0}  # one H100-class GPU (the goals)


@torch.no_grad()
def bare_forward(model: torch.nn.Module, n: int, device: torch.device, batch: int = 256) -> float:
    x = raw_robust(torch.randn(min(n, 2048), 3, 101, 101, device=device).abs())
    model.eval()
    for _ in range(2):
        model(x[:batch])
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    done = 0
    while done < n:
        model(x[: min(batch, n - done)])
        done += min(batch, n - done)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - t0)


def grow_hosts(root: Path, n_hosts: int, n_bins: int = 20, seed: int = 0) -> int:
    """Give the bucket at ``root`` ``n_hosts`` validation negatives, whose PSF and depth lie inside ``n_bins``
    of the grid's PSF × depth bins (the first ``n_bins`` in depth-major order), as the authors' hosts fill 20:
    the synthetic negatives are moved into those bins and new rows added, each with its own key (a hard link
    to one of the synthetic negatives' cutouts). Returns the number of rows added."""
    df = read_manifest(root / MANIFEST_KEY)
    is_neg = (df["label"] == 0) & (df["split"] == "val")
    neg = df[is_neg]
    rng = np.random.default_rng(seed)
    added = max(n_hosts - len(neg), 0)
    src = neg.iloc[rng.integers(0, len(neg), added)].reset_index(drop=True)
    new = src.copy()
    new["galaxy_id"] = [f"bench_{k:07d}" for k in range(added)]
    folder = root / "cutouts" / "negatives" / "bench"
    folder.mkdir(parents=True, exist_ok=True)
    authors = str(neg["cutout_path"].iloc[0]).split("/cutouts/")[0]
    paths = []
    for gid, path in zip(new["galaxy_id"], src["cutout_path"], strict=True):
        os.link(root / "cutouts" / str(path).split("/cutouts/", 1)[1], folder / f"{gid}.npz")
        paths.append(f"{authors}/cutouts/negatives/bench/{gid}.npz")
    new["cutout_path"] = paths
    hosts = pd.concat([neg, new], ignore_index=True)
    bins = [(p, d) for d in grid.DEPTH_5SIG for p in grid.PSF_FWHM][:n_bins]
    pick = rng.integers(0, len(bins), len(hosts))
    hosts["psfsize_r"] = np.array([bins[k][0] for k in pick]) + rng.uniform(-0.05, 0.05, len(hosts))
    hosts["psfdepth_r"] = psfdepth_from_mag(np.array([bins[k][1] for k in pick])
                                            + rng.uniform(-0.15, 0.15, len(hosts)))
    write_manifest(pd.concat([df[~is_neg], hosts], ignore_index=True), root / MANIFEST_KEY)
    return added


def full_recompute(args: argparse.Namespace) -> None:
    """The paper profile's recompute on a grown synthetic bucket, every step timed (see the module docstring)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "bucket" / "stronglens_calibration"
        t0 = time.perf_counter()
        make_bucket(root, None, negatives=args.negatives, positives=120, arch=args.arch,
                    base_ch=27 if args.arch == "bottlenecked_resnet" else 6)
        added = grow_hosts(root, args.hosts)
        print(f"bucket: {args.negatives + 120 + added} cutouts ({added} hard links) in "
              f"{time.perf_counter() - t0:.0f} s; finder {args.arch}", flush=True)
        for dev in args.devices:
            overrides = {"data_uri": str(root), "manifest": MANIFEST_KEY, "finder_checkpoint": CHECKPOINT_KEY,
                         "output_dir": str(Path(tmp) / f"out_{dev}"), "device": dev,
                         "injection_sampling": args.sampling, **P.parse_set(args.set)}
            params = P.load("paper", overrides)
            timings: dict[str, float] = {}
            t0 = time.perf_counter()
            recompute(params, progress=False, log=lambda m, d=dev: print(f"[{d}] {m}", flush=True), timings=timings)
            timings["recompute"] = time.perf_counter() - t0
            grid_n = 2 * len(pd.read_parquet(Path(params["output_dir"]) / "results" / "grid_poisson"
                                              / "injections.parquet"))
            report = {"device": dev, "torch": torch.__version__, "arch": args.arch, "hosts": args.hosts,
                      "grid_injections_scores": grid_n,
                      "grid_rate_per_s": round(grid_n / timings["selection-function grid"], 1),
                      "sizes": {k: params[k] for k in ("fpr_negatives", "tier_a_negatives", "grid_injections_per_cell",
                                                       "grid_host_max", "bright_arc_hosts", "probe_samples",
                                                       "probe_permutations", "probe_bootstraps")},
                      "steps_s": {k: round(v, 2) for k, v in timings.items()},
                      "goals_s": GOALS_S}
            if dev == "cuda":
                report["gpu"] = torch.cuda.get_device_name(0)
            print(json.dumps(report, indent=1), flush=True)
            if args.report:
                Path(args.report).with_suffix(f".{dev}.json").write_text(json.dumps(report, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-cell", type=int, default=40, help="grid injections per non-empty cell")
    ap.add_argument("--negatives", type=int, default=600, help="synthetic negatives in the bucket")
    ap.add_argument("--arch", default=None, help="finder architecture (default: bottlenecked_resnet; with --full "
                    "the paper's efficientnet_v2_s)")
    ap.add_argument("--devices", nargs="+", default=["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    ap.add_argument("--sampling", default="full", choices=["full", "adaptive"])
    ap.add_argument("--full", action="store_true", help="time the whole paper-profile recompute (see above)")
    ap.add_argument("--hosts", type=int, default=50_000, help="--full: validation negatives in the bucket")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="--full: a parameter of the paper profile (e.g. grid_injections_per_cell=20)")
    ap.add_argument("--report", help="--full: also write the report to REPORT.<device>.json")
    args = ap.parse_args()
    if args.full:
        args.arch = args.arch or "efficientnet_v2_s"  # the paper's finder
        return full_recompute(args)
    args.arch = args.arch or "bottlenecked_resnet"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "bucket" / "stronglens_calibration"
        t0 = time.perf_counter()
        make_bucket(root, None, negatives=args.negatives, positives=60, arch=args.arch,
                    base_ch=27 if args.arch == "bottlenecked_resnet" else 6)
        print(f"bucket: {args.negatives + 60} cutouts in {time.perf_counter() - t0:.0f} s; finder {args.arch}")
        for dev in args.devices:
            store = open_store(str(root))
            inputs = open_inputs(store, manifest=MANIFEST_KEY, checkpoint=CHECKPOINT_KEY,
                                 priors="params/injection_priors.yaml", cache_dir=Path(tmp) / "cache", device=dev)
            out = Path(tmp) / f"out_{dev}"
            tau = tier_a.negative_fpr_thresholds(inputs, out / "work", n_negatives=500, progress=False)
            spec = grid.GridSpec(injections_per_cell=args.per_cell, sampling=args.sampling)
            t0 = time.perf_counter()
            grid.run_grid(inputs, out / "results", out / "work", tau, spec, progress=False, log=lambda *a: None)
            dt = time.perf_counter() - t0
            n = 2 * len(pd.read_parquet(out / "results" / "grid_poisson" / "injections.parquet"))
            rate = n / dt
            bare = bare_forward(inputs.finder.model, min(n, 4096), torch.device(dev))
            t0 = time.perf_counter()
            bright_arc.run_bright_arcs(inputs, out / "results", n_hosts=50, sampling=args.sampling, progress=False)
            ba = 4 * 8 * 50 / (time.perf_counter() - t0)
            print(f"[{dev}] grid: {n} injections+scores in {dt:.1f} s = {rate:,.0f}/s "
                  f"({rate / bare:.2f} x a bare forward pass of {bare:,.0f}/s; {rate / AUTHORS_PER_S:,.0f} x the "
                  f"authors' ~{AUTHORS_PER_S:.0f}/s); full 2 x 110 000 grid ≈ {FULL_GRID / rate / 60:.1f} min")
            print(f"[{dev}] bright arcs: {ba:,.0f} injections/s (4 image sets × 8 bins × 50 hosts, 6 scorings)")


if __name__ == "__main__":
    main()

"""Speed of the paper's recompute: the selection-function grid end to end (plan, hosts read once, injection
with and without Poisson noise, preprocessing, scoring, shards, CSV), in injections+scores per second,
against a bare forward pass of the same finder on preprocessed tensors already on the device (the most
the grid could reach) in the same run, and against the authors' ~15 per second (one GH200, ~2 h per
condition). Also times the other experiments at the sizes given and projects the full paper.

    python benchmarks/bench_paper.py [--per-cell 40] [--negatives 600] [--arch bottlenecked_resnet|efficientnet_v2_s]
        [--devices cpu cuda] [--sampling full|adaptive]

The bucket is synthetic (tests/paper_bucket.py: DR10-like hosts in the authors' layout, a finder with
random weights in the authors' checkpoint format): speed does not depend on what the weights are.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lenslib.data.storage import open_store  # noqa: E402
from lenslib.experiments.compute import bright_arc, grid, tier_a  # noqa: E402
from lenslib.experiments.compute.inputs import open_inputs  # noqa: E402
from lenslib.finder.preprocess import raw_robust  # noqa: E402
from tests.paper_bucket import CHECKPOINT_KEY, MANIFEST_KEY, make_bucket  # noqa: E402

AUTHORS_PER_S = 15.0  # injections+scores per second of the authors' grid (PAPER_SPEC / issue: ~2 h per condition)
FULL_GRID = 2 * 110_000


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-cell", type=int, default=40, help="grid injections per non-empty cell")
    ap.add_argument("--negatives", type=int, default=600, help="synthetic negatives in the bucket")
    ap.add_argument("--arch", default="bottlenecked_resnet")
    ap.add_argument("--devices", nargs="+", default=["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    ap.add_argument("--sampling", default="full", choices=["full", "adaptive"])
    args = ap.parse_args()
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

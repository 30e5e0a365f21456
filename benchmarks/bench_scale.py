"""Scale-out: manifest scoring (cutouts/s) and the selection-function grid (injections+scores/s) with the
local executor (the reference, this process, torch on every core) and on a Dask ``LocalCluster`` of 1 and 2
worker processes (one torch thread each), in the same run; projects the paper's 1.28 M negatives, the
paper's grid (110 000 injections × 2 conditions) and a 110 000-cell sweep at 500 injections per cell.

    python benchmarks/bench_scale.py [--negatives 600] [--per-cell 6] [--workers 1 2]

The bucket is synthetic (tests/paper_bucket.py, a finder with random weights in the authors' format): speed
does not depend on what the weights are. Each configuration runs into a fresh folder (nothing resumed);
cluster start-up is timed apart from the work, and an untimed warm-up run comes first.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lenslib.data.storage import open_store  # noqa: E402
from lenslib.experiments.compute import grid  # noqa: E402
from lenslib.experiments.compute.inputs import open_inputs  # noqa: E402
from lenslib.finder.scoring import score_manifest  # noqa: E402
from lenslib.parallel import DaskExecutor, LocalExecutor  # noqa: E402
from tests.paper_bucket import CHECKPOINT_KEY, MANIFEST_KEY, make_bucket  # noqa: E402

NEGATIVES = 1_280_000  # the paper's negative cutouts
PAPER_GRID = 2 * 110_000  # injections of the paper's grid, both conditions
SWEEP_CELLS, SWEEP_PER_CELL = 110_000, 500


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--negatives", type=int, default=600, help="negatives in the synthetic bucket")
    ap.add_argument("--per-cell", type=int, default=6, help="grid injections per cell")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="Dask LocalCluster sizes")
    args = ap.parse_args()
    quiet = lambda *a: None  # noqa: E731
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root = tmp / "bucket" / "stronglens_calibration"
        manifest = make_bucket(root, None, negatives=args.negatives, positives=60)
        inputs = open_inputs(open_store(str(root)), manifest=MANIFEST_KEY, checkpoint=CHECKPOINT_KEY,
                             priors="params/injection_priors.yaml", cache_dir=tmp / "cache", device="cpu")
        rows = inputs.manifest.assign(cutout_path=inputs.manifest["cutout_key"])
        spec = grid.GridSpec(injections_per_cell=args.per_cell, shard_injections=4 * args.per_cell * 8)
        # warm-up, untimed: first calls of torch, the engine and the readers in this process
        warm = tmp / "warm"
        score_manifest(inputs.finder.model, rows.iloc[:64], warm / "scores.parquet", spec=inputs.finder.spec,
                       root=str(root), chunk_size=64, progress=False)
        grid.run_grid(inputs, warm, warm / "work", {1e-3: 0.5}, grid.GridSpec(theta_e=(1.0,), injections_per_cell=2),
                      progress=False, log=quiet)
        n_grid = None
        results = {}
        for label, make in [("local", LocalExecutor)] + [
                (f"dask {n} worker{'s' * (n > 1)}", lambda n=n: DaskExecutor(None, n_workers=n, log=quiet))
                for n in args.workers]:
            with make() as ex:
                t0 = time.perf_counter()
                if ex.kind == "dask":
                    ex.client.wait_for_workers(len(ex.client.scheduler_info()["workers"]))
                start = time.perf_counter() - t0
                out = tmp / label.replace(" ", "_")
                t0 = time.perf_counter()
                score_manifest(inputs.finder.model, rows, out / "scores.parquet", spec=inputs.finder.spec,
                               root=str(root), chunk_size=64, progress=False, executor=ex)
                t_score = time.perf_counter() - t0
                t0 = time.perf_counter()
                grid.run_grid(inputs, out, out / "work", {1e-3: 0.5}, spec, progress=False, log=quiet, executor=ex)
                t_grid = time.perf_counter() - t0
                import pandas as pd

                n_grid = 2 * len(pd.read_parquet(out / "grid_poisson" / "injections.parquet"))
                results[label] = (start, len(rows) / t_score, n_grid / t_grid)
        ref_score, ref_grid = results["local"][1], results["local"][2]
        print(f"{len(manifest)} cutouts scored, {n_grid} grid injections+scores (both conditions), 2 CPU cores")
        print(f"{'executor':<16}{'start s':>9}{'cutouts/s':>12}{'x local':>9}{'inj+scores/s':>14}{'x local':>9}")
        for label, (start, score, gr) in results.items():
            print(f"{label:<16}{start:9.1f}{score:12.1f}{score / ref_score:9.2f}{gr:14.1f}{gr / ref_grid:9.2f}")
        best = max(results.items(), key=lambda kv: kv[1][1])
        print(f"projection at the best rate ({best[0]}): 1.28 M negatives scored in "
              f"{NEGATIVES / best[1][1] / 3600:.1f} h on this machine")
        best = max(results.items(), key=lambda kv: kv[1][2])
        print(f"projection at the best rate ({best[0]}): the paper's grid ({PAPER_GRID} injections+scores) in "
              f"{PAPER_GRID / best[1][2] / 3600:.1f} h; a {SWEEP_CELLS}-cell sweep at {SWEEP_PER_CELL} per cell, "
              f"2 conditions, in {2 * SWEEP_CELLS * SWEEP_PER_CELL / best[1][2] / 86400:.0f} days; with W such "
              f"machines as Dask workers, divide by W (tasks share nothing but the scattered context)")


if __name__ == "__main__":
    main()

"""Time the demo profile end to end, stage by stage: survey, finder training, each experiment, notebooks, book.

The figure of merit is the whole run's wall time on 2 CPU cores (goal: ≤ 10 minutes); the reference, run in
the same process, is one forward pass of the demo finder over the survey's cutouts (the least any run that
scores the survey must spend), so the ratio says how many such passes the whole paper costs.

    python benchmarks/bench_demo.py [--out runs/bench_demo] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from lenslib.repro import params as P  # noqa: E402
from lenslib.repro import runner  # noqa: E402
from lenslib.synthetic.demo import ensure_world  # noqa: E402


def reference_pass(params: dict) -> float:
    """Seconds for one scoring pass of the trained finder over every cutout of the survey."""
    from lenslib.data.cutouts import load_cutouts
    from lenslib.data.manifests import read_manifest
    from lenslib.finder.checkpoints import load_checkpoint
    from lenslib.finder.scoring import score_images

    root = P.resolve_path(params["data_uri"])
    m = read_manifest(root / params["manifest"])
    finder = load_checkpoint(root / params["finder_checkpoint"])
    t0 = time.perf_counter()
    images = load_cutouts([str(root / p) for p in m["cutout_path"]], nan_policy="zero")
    score_images(finder.model, np.asarray(images), finder.spec)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/bench_demo", help="a fresh output folder (removed first)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    out = P.resolve_path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    overrides = {"output_dir": str(out), "data_uri": str(out / "world"),
                 "catalogue_desi": str(out / "world" / "catalogs" / "desi_candidates.csv"),
                 "example_hosts": [str(out / "world" / "cutouts" / "negatives" / "synthetic" / f"syn42_00000{k}.npz")
                                   for k in (0, 1)], **P.parse_set(args.set)}
    params = P.load("demo", overrides)
    t0 = time.perf_counter()
    stages = ensure_world(params, progress=False, log=lambda *_: None)
    stages.update(runner.run(params, log=lambda *_: None))
    total = time.perf_counter() - t0
    ref = reference_pass(params)
    report = {"total_s": round(total, 1), "reference_scoring_pass_s": round(ref, 2),
              "ratio_to_reference": round(total / ref, 1), "goal_s": 600,
              "stages_s": {k: round(v, 1) for k, v in stages.items()}}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

"""Time the published profile end to end (papermill notebooks + jupyter-book build).

The reference, run in the same process, executes the same number of trivial notebooks through
papermill and builds the same book: it is the floor set by kernel start-up and Sphinx. The figure of
merit is the full run's wall time (goal: <= 120 s on 2 cores) and its ratio to that reference.

    python benchmarks/bench_published.py --results-uri ../shared/data/d06 [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import nbformat  # noqa: E402
import papermill  # noqa: E402

from lenslib.repro import params as P  # noqa: E402
from lenslib.repro import runner  # noqa: E402


def full_run(results_uri: str, out: Path) -> dict:
    prm = P.load("published", {"results_uri": results_uri, "output_dir": str(out)})
    t0 = time.perf_counter()
    timings = runner.run(prm, log=lambda *_: None)
    return {"total_s": time.perf_counter() - t0, **{k: round(v, 2) for k, v in timings.items()}}


def reference_run(n: int, tmp: Path) -> float:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]})])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    t0 = time.perf_counter()
    for i in range(n):
        papermill.execute_notebook(nb, str(tmp / f"ref{i}.ipynb"), kernel_name="python3", progress_bar=False)
    runner.build_book(profile="published")  # the measured run rebuilds this same book
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--results-uri", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "d06"))
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    n = len(runner.notebook_names())
    fulls, refs = [], []
    with tempfile.TemporaryDirectory() as d:
        for _ in range(args.repeat):
            refs.append(reference_run(n, Path(d)))
            fulls.append(full_run(args.results_uri, Path(d) / "out"))
    full = statistics.median(f["total_s"] for f in fulls)
    ref = statistics.median(refs)
    print(json.dumps({"notebooks": n, "full_run_s": round(full, 1), "reference_s": round(ref, 1),
                      "ratio_full_over_reference": round(full / ref, 2), "goal_s": 120,
                      "ratio_full_over_goal": round(full / 120, 2), "last_run_breakdown_s": fulls[-1]}, indent=1))


if __name__ == "__main__":
    main()

"""The demo profile end to end, from a copy of the project with nothing beside it: the synthetic survey, its
finder, every experiment through the recompute path, the realism gate and the book; and the world's known
truth (the morphological barrier) holding at a reduced scale, with margins."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from lenslib.repro import params as P
from lenslib.synthetic.survey import SurveySpec
from tests.conftest import copy_project

pytestmark = pytest.mark.slow

# the demo's survey and finder, with fewer injections, permutations and mixes (the checks must still hold)
REDUCED = ["grid_injections_per_cell=5", "gate_injections_per_cell=5", "probe_permutations=30",
           "probe_bootstraps=100", "probe_umap=false", "bright_arc_hosts=30", "gate_mixes=[0.0,0.5,1.0]"]


def lenslib(project, *args, timeout=1500):
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    return subprocess.run([sys.executable, "-m", "lenslib", *args], cwd=project, capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("demo")
    project = copy_project(tmp, shared=False)
    assert not (project.parent / "shared").exists()
    # the reduced scale is written into this copy's demo profile, so that it is also what a notebook opened in
    # Jupyter runs (test_a_notebook_runs_top_to_bottom_with_the_default_profile)
    profile = project / "params" / "demo.yaml"
    values = {**yaml.safe_load(profile.read_text()), **P.parse_set(REDUCED)}
    profile.write_text(yaml.safe_dump(values, sort_keys=False, allow_unicode=True))
    res = lenslib(project, "run")  # no --profile: demo is the default
    assert res.returncode == 0, res.stderr[-4000:]
    return project


def test_the_default_profile_is_the_demo_and_its_gate_ranges_are_the_worlds():
    prm = P.load("demo")
    spec = SurveySpec()
    assert prm["synthetic_world"] and prm["recompute"] and prm["gate"]
    assert tuple(prm["gate_theta_e"]) == spec.theta_e and tuple(prm["gate_source_r_mag"]) == spec.source_r_mag
    assert prm["gate_min_arc_snr"] == spec.tier_a_snr
    from lenslib.cli import _parser

    assert _parser().parse_args(["run"]).profile == "demo"


def test_demo_builds_the_book_without_anything_from_outside(demo):
    html = demo / "_build" / "demo"
    assert (html / "index.html").exists()
    for page in ("01_tier_a_recall", "02_selection_function", "05_linear_probe", "09_realism_gate", "07_claims"):
        text = (html / "book" / "executed" / f"{page}.html").read_text()
        assert "Synthetic survey — not DR10" in text, page
    gate_page = (html / "book" / "executed" / "09_realism_gate.html").read_text()
    assert gate_page.count("<img") >= 2
    results = demo / "runs" / "demo" / "results"
    for key in ("tier_a_scoring/real_lens_scoring_results.json", "grid_no_poisson/selection_function.csv",
                "grid_poisson/injections.parquet", "grid_realistic_no_poisson/selection_function.csv",
                "linear_probe/feature_space_results.json", "realism_gate/gate_sweep.csv",
                "provenance.json"):
        assert (results / key).exists(), key
    paper = demo / "runs" / "demo" / "paper"
    assert (paper / "numbers.tex").exists()
    from lenslib.paper.latex import tex_available

    if tex_available() or os.environ.get("CI"):  # the report, in the demo's words; no authors' source here
        text = subprocess.run(["pdftotext", str(paper / "reproduction_report.pdf"), "-"], capture_output=True,
                              text=True, check=True).stdout
        assert "Synthetic survey" in text and (html / "paper" / "reproduction_report.pdf").exists()
        assert not (paper / "balaji_johnson_2026_rasti.pdf").exists()


def test_the_morphological_barrier_is_found_on_the_known_truth(demo):
    gate = json.loads((demo / "runs/demo/results/realism_gate/gate_results.json").read_text())
    sweep = pd.DataFrame(gate["sweep"]).set_index("mix")
    sersic, realistic = gate["matched"]["sersic"], gate["matched"]["realistic"]
    # real Tier-A lenses are found at least twice as often as Sérsic injections of the same brightness
    assert gate["tier_a_recall_p0.3"] >= 2 * sersic["completeness"], gate["matched"]
    # the finder's features tell Sérsic injections from real lenses (the full demo: 0.91; here ≥ 0.85) …
    assert sweep.loc[0.0, "auc"] >= 0.85, sweep
    # … but not the realistic-source injections (near 0.5), which are also recovered markedly more
    assert sweep.loc[1.0, "auc"] <= min(0.7, sweep.loc[0.0, "auc"] - 0.15), sweep
    assert realistic["completeness"] >= sersic["completeness"] + 0.2, gate["matched"]
    checks = {c["check"]: c for c in gate["checks"]}
    assert len(checks) == 4 and sum(c["holds"] for c in checks.values()) >= 3, gate["checks"]


def test_claims_page_lists_the_demos_values_beside_the_papers(demo):
    res = lenslib(demo, "claims")
    doc = json.loads(res.stdout)
    rows = [c for c in doc["claims"] if c["status"] not in ("not_recomputable", "error")]
    assert len(rows) > 40
    assert any(c["status"] == "disagrees" for c in rows)  # a synthetic world is not DR10
    page = (demo / "_build/demo/book/executed/07_claims.html").read_text()
    assert "paper" in page.lower() and "Synthetic survey — not DR10" in page


def test_demo_book_passes_the_browser_check(demo):
    """Every page of the demo book in headless Chromium, offline (screenshots: ci-artifacts/screenshots/demo)."""
    from lenslib.repro import bookcheck
    from tests.repro.test_end_to_end import SCREENSHOTS

    html = demo / "_build" / "demo"
    reports = bookcheck.check_book(html, SCREENSHOTS / "demo", forbidden=(str(demo.parent),))
    bookcheck.raise_on_problems(reports, html)
    first = (html / "book" / "executed" / "index.html").read_text()
    assert "This book shows profile “demo”" in first and "<code>demo</code>" in first
    recall = (html / "book" / "executed" / "01_tier_a_recall.html").read_text()
    assert "Recomputed on lenslib" in recall and "paper: 89.3" in recall



def test_a_notebook_runs_top_to_bottom_with_the_default_profile(demo):
    """Opened in Jupyter (jupytext reads the MyST file) and run as is, with no parameters injected: the default
    profile's finished results are found and used, not recomputed."""
    import jupytext
    import nbclient

    nb = jupytext.read(demo / "notebooks" / "01_tier_a_recall.md")
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(demo)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/html", "")) for o in outputs)
    assert "recompute:" not in text  # nothing was computed again
    assert "Recomputed on lenslib" in text and "89.3" in text  # the paper's Table 2 beside the demo's values

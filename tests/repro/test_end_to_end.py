"""The published profile end to end: papermill -> notebooks -> artefacts -> jupyter-book, on a local
directory and on a real S3 endpoint, plus the failure modes (missing artefact, dead endpoint)."""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from lenslib.repro import bookcheck, paper_tables
from tests.conftest import REPO, copy_project

pytestmark = pytest.mark.slow
#: the browser check's screenshots, one PNG per page of each built book (a CI artefact folder)
SCREENSHOTS = REPO / "ci-artifacts" / "screenshots"

NOTEBOOKS = ["index", "methods_data", "methods_injection", "methods_model", "01_tier_a_recall",
             "02_selection_function", "03_poisson_noise", "04_bright_arcs", "05_linear_probe", "06_gallery",
             "09_realism_gate", "07_claims", "08_provenance", "10_paper"]
TABLES = {
    "tier_a_recall": ["threshold", "recall_pct", "n_detected", "n_total", "ci95_lo_pct", "ci95_hi_pct"],
    "grid_thresholds": ["threshold", "no_poisson_pct", "poisson_pct", "deficit_pp"],
    "grid_theta_e": ["theta_e", "completeness_pct", "n_detected", "n_injected"],
    "bright_arc": ["mag_bin", "baseline", "poisson", "clip20", "poisson_clip20", "unrestricted", "gain_1e12"],
    "poisson_theta_e": ["theta_e", "no_poisson_pct", "poisson_pct", "delta_pp"],
    "poisson_paired": ["mag_bin", "n", "gained", "lost", "sign_test_p"],
    "linear_probe": ["quantity", "value", "std"],
}
FIGURES = ["positives_sky_split", "dr10_cutouts", "injection_priors", "injection_examples", "injection_lenstronomy",
           "finder_training_curves", "finder_roc", "finder_scores", "fig1_completeness", "fig2_completeness_maps",
           "fig3_scores", "fig4_bright_arcs", "fig5_comparison"]


def lenslib(project, *args, timeout=600, env=None):
    return subprocess.run([sys.executable, "-m", "lenslib", *args], cwd=project, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def test_methods_model_notebook_shows_its_three_figures_inline(published_book):
    """The lens-finder chapter's training curves, ROC and score distributions are in the executed notebook
    (as PNG outputs of the cells that draw them) and on its page, not only in figures/."""
    project, out = published_book
    nb = json.loads((out / "executed_methods_model.ipynb").read_text())  # as the published run left it
    drawn = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"
             and any("image/png" in o.get("data", {}) for o in c.get("outputs", []))]
    for fig in ("training_curves_figure", "roc_figure", "score_distributions_figure"):
        assert sum(fig in src for src in drawn) == 1, f"{fig}: no inline image in methods_model.ipynb"
    page = (project / "_build" / "published" / "book" / "executed" / "methods_model.html").read_text()
    assert page.count("<img") >= 3
    for fid in ("finder_training_curves", "finder_roc", "finder_scores"):
        assert (out / "figures" / f"{fid}.png").exists()


@pytest.fixture(scope="module")
def published_book(tmp_path_factory, d06):
    """The whole published profile, run once in a copy of the project: (project, output folder)."""
    project = copy_project(tmp_path_factory.mktemp("published"))
    out = project.parent / "local"
    p = lenslib(project, "run", "--profile", "published", "--set", f"results_uri={d06}", "--set", f"output_dir={out}",
                env={"MPLBACKEND": "Agg"})  # as on a headless server: the book's figures must still be inline
    assert p.returncode == 0, p.stderr[-3000:]
    # later runs in this project overwrite book/executed/; keep this run's lens-finder chapter
    shutil.copy2(project / "book" / "executed" / "methods_model.ipynb", out / "executed_methods_model.ipynb")
    return project, out


def test_published_book_passes_the_browser_check(published_book):
    """Every page of the published book in headless Chromium, offline: no broken image or link, no request to
    another host, no traceback or stderr, no path of the machine that built it (screenshots: ci-artifacts/)."""
    project, _ = published_book
    html = project / "_build" / "published"
    reports = bookcheck.check_book(html, SCREENSHOTS / "published", forbidden=(str(project.parent),))
    bookcheck.raise_on_problems(reports, html)
    assert {"index.html", "book/executed/07_claims.html", "gallery/index.html"} <= {r.page for r in reports}
    assert len(reports) >= len(NOTEBOOKS) + 3  # the chapters, the root page, reproduce, search, the gallery


def test_every_results_page_shows_the_papers_tables_beside_this_runs_values(published_book):
    project, _ = published_book
    pages = project / "_build" / "published" / "book" / "executed"
    claims_page = (pages / "07_claims.html").read_text()
    anchors = set(re.findall(r'id="(claim-[^"]+)"', claims_page))
    for t in paper_tables.load_tables(project / "params" / "paper_tables.yaml"):
        page = (pages / f"{t.page}.html").read_text()
        assert f'id="{t.anchor}"' in page, (t.number, t.page)
        assert "Where these numbers come from" in page and "Re-derived from the authors' published results" in page
        links = set(re.findall(r'href="07_claims.html#(claim-[^"]+)"', page))
        assert {f"claim-{paper_tables.anchor(c)}" for c in t.claim_ids()} <= links <= anchors, t.number
    recall = (pages / "01_tier_a_recall.html").read_text()
    assert 'lenslib-agrees' in recall and "paper: 89.3" in recall and "lenslib-disagrees" not in recall
    for page in pages.glob("*.html"):  # the boilerplate is hidden: no parameter dumps, no start-up code
        text = page.read_text()
        assert "injected-parameters" not in text and "session.start(globals()" not in text, page.name
        assert "Parameters of this run and how to rerun this page" in text, page.name


def test_books_of_two_profiles_sit_side_by_side(published_book, d06):
    """A book built with another profile lands in its own folder and leaves the published one as it was."""
    project, out = published_book
    other = (project / "params" / "published.yaml").read_text().replace("profile: published", "profile: other")
    (project / "params" / "other.yaml").write_text(other)
    before = (project / "_build" / "published" / "book" / "executed" / "01_tier_a_recall.html").read_text()
    p = lenslib(project, "run", "--profile", "other", "--only", "01_tier_a_recall", "--set", f"results_uri={d06}",
                "--set", f"output_dir={out.parent / 'other'}")
    assert p.returncode == 0, p.stderr[-3000:]
    assert "_build/other/index.html" in p.stdout
    page = (project / "_build" / "other" / "book" / "executed" / "01_tier_a_recall.html").read_text()
    assert "This book shows profile “other”" in page and "--profile other" in page
    assert (project / "_build" / "published" / "book" / "executed" / "01_tier_a_recall.html").read_text() == before


def test_published_profile_local_and_s3_give_identical_tables(published_book, d06, s3_server, tmp_path):
    project, local_out = published_book
    s3_out = tmp_path / "s3"

    html = project / "_build" / "published"
    assert (html / "index.html").exists()
    for nb in NOTEBOOKS:
        assert (project / "book" / "executed" / f"{nb}.ipynb").exists()
        page = (html / "book" / "executed" / f"{nb}.html").read_text()
        assert "Traceback" not in page and "output error" not in page, nb
    assert (html / "gallery" / "index.html").exists() and (html / "gallery" / "thumbs" / "REAL_112.png").exists()
    assert "<img" in (html / "book" / "executed" / "02_selection_function.html").read_text()
    from lenslib.paper.latex import tex_available

    if tex_available() or os.environ.get("CI"):  # the book links both PDFs, with first-page thumbnails
        for name in ("reproduction_report", "balaji_johnson_2026_rasti"):
            assert (html / "paper" / f"{name}.pdf").read_bytes()[:4] == b"%PDF"
            assert (html / "paper" / f"{name}_p1.png").exists()
            for page in ("index", "10_paper"):  # the first page and the paper chapter link them
                assert f"../../paper/{name}.pdf" in (html / "book" / "executed" / f"{page}.html").read_text()
        audit = json.loads((local_out / "paper" / "numbers_audit.json").read_text())
        assert audit["summary"]["ok"] and audit["summary"]["unclassified"] == 0

    for tid, first in TABLES.items():
        header = (local_out / "tables" / f"{tid}.csv").read_text().splitlines()[0].split(",")
        assert header[: len(first)] == first, tid
        assert "\\begin{tabular}" in (local_out / "tables" / f"{tid}.tex").read_text()
    for fid in FIGURES:
        assert (local_out / "figures" / f"{fid}.pdf").read_bytes()[:4] == b"%PDF"
        assert (local_out / "figures" / f"{fid}.png").read_bytes()[:4] == b"\x89PNG"

    claims = json.loads((local_out / "claims.json").read_text())
    assert claims["summary"]["ok"] and claims["summary"]["disagrees"] == 0

    prov = json.loads((local_out / "provenance" / "run_provenance.json").read_text())
    key = "grid_poisson/selection_function.csv"
    assert prov["files"][key]["sha256"] == hashlib.sha256((d06 / key).read_bytes()).hexdigest()
    unused = {"comparison_figure/fig5_comparison.png", "gallery/gallery.html", "gallery/missed_tier_a_table.tex"}
    published = {f.relative_to(d06).as_posix() for f in d06.rglob("*") if f.is_file()}
    assert set(prov["files"]) == published - unused  # every artefact read is hashed, and nothing else

    p = lenslib(project, "run", "--profile", "published", "--no-book", "--set", f"results_uri={s3_server['uri']}",
                "--set", f"s3_endpoint_url={s3_server['endpoint_url']}", "--set", f"output_dir={s3_out}")
    assert p.returncode == 0, p.stderr[-3000:]
    for tid in [*TABLES, "grid_mag_bins", "missed_tier_a"]:
        csv = f"{tid}.csv"
        assert (s3_out / "tables" / csv).read_bytes() == (local_out / "tables" / csv).read_bytes(), tid
    prov_s3 = json.loads((s3_out / "provenance" / "run_provenance.json").read_text())
    assert prov_s3["files"][key]["uri"].startswith("s3://darkhaloscope/")
    assert {k: v["sha256"] for k, v in prov_s3["files"].items()} == {k: v["sha256"] for k, v in prov["files"].items()}


def test_missing_artefact_stops_with_names_and_keeps_earlier_outputs(project, d06, tmp_path):
    copy = tmp_path / "d06"
    shutil.copytree(d06, copy)
    (copy / "linear_probe" / "checkpoint.npz").unlink()
    out = tmp_path / "out"
    p = lenslib(project, "run", "--profile", "published", "--set", f"results_uri={copy}",
                "--set", f"output_dir={out}")
    assert p.returncode == 1
    assert "notebook 05_linear_probe failed in cell" in p.stderr
    assert "linear_probe/checkpoint.npz" in p.stderr
    assert (project / "book" / "executed" / "05_linear_probe.ipynb").exists()  # kept for inspection
    for tid in ("tier_a_recall", "grid_thresholds", "poisson_paired", "bright_arc"):
        assert (out / "tables" / f"{tid}.csv").exists()  # earlier notebooks' outputs are kept


def test_unreachable_endpoint_is_a_clear_error(project, tmp_path):
    p = lenslib(project, "run", "--profile", "published", "--only", "01_tier_a_recall",
                "--set", "results_uri=s3://darkhaloscope/x/",
                "--set", "s3_endpoint_url=http://127.0.0.1:9", "--set", "s3_max_attempts=1",
                "--set", "s3_connect_timeout=1", "--set", f"output_dir={tmp_path / 'out'}")
    assert p.returncode == 1
    assert "01_tier_a_recall" in p.stderr and "cannot reach S3 endpoint http://127.0.0.1:9" in p.stderr


def test_unknown_notebook_and_bad_parameter(project):
    p = lenslib(project, "run", "--only", "99_nothing")
    assert p.returncode == 1 and "no such notebook" in p.stderr
    assert not (project / "runs").exists()  # the default (demo) profile stops before it makes its world
    p = lenslib(project, "run", "--set", "figure_formats=[gif]")
    assert p.returncode == 2 and "figure_formats" in p.stderr


def test_notebook_runs_alone_with_papermill_and_a_params_file(project, d06, tmp_path):
    nb = tmp_path / "nb.ipynb"
    subprocess.run([sys.executable, "-m", "jupytext", "--to", "ipynb", "-o", str(nb),
                    str(project / "notebooks" / "04_bright_arcs.md")], check=True, capture_output=True)
    base = [sys.executable, "-m", "papermill", str(nb), str(tmp_path / "out.ipynb"), "--cwd", str(project),
            "-f", str(project / "params" / "published.yaml"), "-p", "results_uri", str(d06),
            "-p", "output_dir", str(tmp_path / "alone")]
    p = subprocess.run(base, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert (tmp_path / "alone" / "tables" / "bright_arc.csv").exists()
    p = subprocess.run(base + ["-p", "figure_dpi", "high"], capture_output=True, text=True, timeout=300)
    assert p.returncode != 0 and "'figure_dpi' must be int" in p.stderr + p.stdout

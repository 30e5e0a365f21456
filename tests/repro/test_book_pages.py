"""What a reader sees: the paper's tables beside this run's values, the claims page, page tidying, the HTML pieces."""

from __future__ import annotations

import re

import nbformat
import pandas as pd
import pytest

from lenslib.repro import claims as C
from lenslib.repro import claims_view as V
from lenslib.repro import pages, runner, views
from lenslib.repro import paper_tables as T
from lenslib.repro.claims import ClaimResult
from tests.conftest import REPO

TABLES = REPO / "params" / "paper_tables.yaml"
REGISTRY = REPO / "params" / "claims.yaml"


def _result(cid: str, status: str, computed: float | None = 1.0, paper: float = 1.0, precision: str = "2 dp",
            source: str = "Table 2") -> ClaimResult:
    return ClaimResult(id=cid, text=f"text of {cid}", paper=paper, unit="%", precision=precision, computed=computed,
                       status=status, kind="recomputed", source=source, detail=f"detail of {cid}")


def _table_blocks(tex: str) -> dict[str, str]:
    """label -> the LaTeX of its table environment."""
    out = {}
    for m in re.finditer(r"\\begin\{table\*?\}(.*?)\\end\{table\*?\}", tex, re.S):
        lab = re.search(r"\\label\{(tab:[^}]+)\}", m.group(1))
        if lab:
            out[lab.group(1)] = m.group(1)
    return out


def test_every_table_of_the_paper_is_transcribed_with_its_printed_numbers(shared):
    tex = shared("paper", "balaji_johnson_2026_rasti.tex").read_text()
    blocks = _table_blocks(tex)
    tables = T.load_tables(TABLES)
    assert [t.label for t in tables] == list(blocks)  # all ten, in the paper's order
    ids = {c["id"] for c in C.load_registry(REGISTRY)}
    n_numbers = 0
    for t in tables:
        body = re.sub(r"\\[,;!]|\$|\{|\}", "", blocks[t.label])
        body = re.sub(r"(\d)\s*\\times\s*10\^(-?\d+)", r"\1e\2", body)  # 3 \times 10^{-4} -> 3e-4
        body = re.sub(r"(?<![\d.])10\^(-?\d+)", r"1e\1", body)  # 10^{-3} -> 1e-3
        rows = [r for r in body.split("\\\\") if "&" in r]
        assert len(t.rows) <= len(rows), t.label
        for row in t.rows:
            assert len(row) == len(t.header), (t.label, row)
            for cell in row:
                for m in T.PLACEHOLDER.finditer(cell):
                    cid, printed = m.group(1), m.group(2)
                    assert cid in ids, f"{t.label}: {cid} is not a claim"
                    assert printed.lstrip("+-") in body, f"{t.label}: printed {printed!r} is not in the LaTeX table"
                    n_numbers += 1
    assert n_numbers >= 280  # 289 numbers in the ten tables


def test_format_like_writes_a_value_as_the_paper_printed_its_number():
    assert T.format_like(0.80612, "0.806") == "0.806"
    assert T.format_like(89.2857, "89.3") == "89.3"
    assert T.format_like(0.0042, "+0.004") == "+0.004"
    assert T.format_like(-0.0021, "-0.002") == "-0.002"
    assert T.format_like(-0.0001, "+0.0") == "0.0"  # no "-0.0"
    assert T.format_like(3.21e-4, "3.2e-4") == "3.2e-4"
    assert T.format_like(7.0, "07") == "07"
    assert T.format_like(float("nan"), "1.0") == "–"


def test_a_paper_table_cell_shows_this_runs_value_the_printed_one_and_the_worst_status():
    results = {"a": _result("a", "agrees", 89.2857), "b": _result("b", "known_discrepancy", 2.0)}
    cell = T.render_cell("{a|89.3}% / {b|1.5}", results)
    assert 'href="07_claims.html#claim-a"' in cell and ">89.3</a>%" in cell and ">2.0</a>" in cell
    assert "paper: 89.3% / 1.5" in cell
    assert T.COLOURS["known_discrepancy"] in cell and "lenslib-known_discrepancy" in cell
    missing = T.render_cell("{zzz|1.0}", results)  # a placeholder without a result is an error, not a pass
    assert T.COLOURS["error"] in missing
    assert T.render_cell("Herle (2024)", results) == "<td>Herle (2024)</td>"


def test_claims_are_grouped_by_where_the_paper_prints_them_and_linked_to_their_chapter():
    assert V.group_of("§4.4 Prediction from first principles") == "§4.4"
    assert V.group_of("Table 3 caption") == "Table 3"
    assert V.group_of("Appendix B (final version)") == "Appendix B"
    assert V.group_of("") == "Other"
    groups = ["Table 10", "§4.2", "Abstract", "Figure 1", "Table 2", "Appendix A", "§1", "Table B1"]
    assert sorted(groups, key=V._group_key) == ["Abstract", "§1", "§4.2", "Table 2", "Table 10", "Table B1",
                                                "Figure 1", "Appendix A"]
    pages_ = {"cell:x": "03_poisson_noise", "Table 1": "methods_data"}
    assert V.chapter_of({"id": "g", "compute": "experiments.grid.marginal_pct"}, pages_) == "02_selection_function"
    assert V.chapter_of({"id": "cell:x", "compute": "experiments.tables.cell"}, pages_) == "03_poisson_noise"
    assert V.chapter_of({"id": "n", "not_recomputable": "x", "source": "Table 1; §2.2"}, pages_) == "methods_data"
    assert V.chapter_of({"id": "n", "not_recomputable": "x", "source": "§5"}, pages_) is None


def test_every_number_linked_from_a_paper_table_has_its_row_on_the_claims_page():
    registry = C.load_registry(REGISTRY)
    results = [_result(c["id"], "agrees", source=c.get("source", "")) for c in registry]
    tables = T.load_tables(TABLES)
    page = V.claims_html(results, registry, tables, V.chapter_titles(REPO / "notebooks"))
    ids = set(re.findall(r'id="(claim-[^"]+)"', page))
    assert len(ids) == len(registry)
    by_id = T.results_by_id(results)
    for t in tables:
        for href in re.findall(r'href="07_claims.html#([^"]+)"', T.render(t, by_id)):
            assert href in ids, (t.number, href)
    for g in re.findall(r'href="#(claims-[^"]+)"', page):  # the index of groups
        assert f'id="{g}"' in page
    for chapter in set(re.findall(r'<a href="([^"#]+)\.html">', page)):
        assert (REPO / "notebooks" / f"{chapter}.md").exists(), chapter


def test_the_summary_sentence_counts_each_status():
    s = {"n_claims": 10, "agrees": 6, "known_discrepancy": 1, "disagrees": 1, "not_recomputable": 2, "error": 0,
         "ok": False}
    text = V.summary_sentence(s)
    assert "6 of the 10 numbers" in text and "1 differ" in text and "2 need data" in text and "error" not in text


def test_table_numbers_are_printed_at_a_readable_precision_without_the_index():
    assert views.fmt_number(0.80612, "threshold") == "0.806" and views.fmt_number(0.995, "tau_1e-4") == "0.995"
    assert views.fmt_number(89.28571) == "89.29" and views.fmt_number(float("nan")) == "–"
    assert views.fmt_number(112.0) == "112" and views.fmt_number(True) == "True"
    df = pd.DataFrame({"threshold": [0.806], "recall_pct": [79.46]}, index=["tier 0"])
    html = views.table_html(df)
    assert "tier 0" not in html and ">0.806<" in html and ">79.46<" in html
    tex = views.latex_table(pd.DataFrame({"threshold": [0.806, 0.995], "recall_pct": [79.46, 48.2]}), 1)
    assert "0.806 & 79.5" in tex and "0.995 & 48.2" in tex


def test_source_box_says_where_the_numbers_come_from():
    published = views.source_box({"recompute": False}, [_result("a", "agrees")])
    assert "Re-derived from the authors' published results" in published and "quoted" not in published
    quoted = _result("b", "agrees")
    quoted.kind = "reported"
    assert "1 of this page's paper numbers are <i>quoted</i>" in views.source_box({"recompute": False}, [quoted])
    assert "Recomputed from cutouts" in views.source_box({"recompute": True}, [])
    assert "synthetic survey" in views.source_box({"recompute": True, "synthetic_world": True}, [])


def test_tidy_notebook_hides_the_boilerplate_and_adds_one_rerun_box(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Title"),
                nbformat.v4.new_code_cell('profile = "demo"', metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell('profile = "published"', metadata={"tags": ["injected-parameters"]}),
                nbformat.v4.new_code_cell('S = lenslib.repro.session.start(globals(), "x")'),
                nbformat.v4.new_code_cell("S.paper_tables()"),
                nbformat.v4.new_code_cell("S.show_table(df, 'x')"),
                nbformat.v4.new_code_cell("S.finish()")]
    path = tmp_path / "x.ipynb"
    nbformat.write(nb, path)
    params = {"profile": "published", "results_uri": str(tmp_path / "d06"), "output_dir": str(REPO / "runs" / "p")}
    for _ in range(2):  # idempotent: a second tidy leaves one box
        pages.tidy_notebook(path, "x", params, {"results_uri": str(tmp_path / "d06")})
    cells = nbformat.read(path, as_version=4).cells
    tags = [c.metadata.get("tags", []) for c in cells]
    assert [c.metadata.get("lenslib") for c in cells].count("rerun") == 1 and cells[1].metadata["lenslib"] == "rerun"
    box = cells[1].source
    assert pages.RERUN_TITLE in box and "python -m lenslib run --profile published --set results_uri=…/d06" in box
    assert "-p results_uri …/d06" in box and "`\"runs/p\"`" in box and str(tmp_path) not in box
    assert "remove-cell" in tags[2] and "remove-cell" in tags[3]  # parameters, injected parameters
    assert "remove-cell" in tags[4]  # the start-up cell had no output
    assert "remove-input" in tags[5] and tags[6] == [] and "remove-cell" in tags[7]


def test_shown_path_hides_the_build_machine():
    assert pages.shown_path(str(REPO / "runs" / "demo")) == "runs/demo"
    assert pages.shown_path("/somewhere/else/d06") == "…/d06"
    assert pages.shown_path(["s3://b/k", 3]) == ["s3://b/k", 3]


def test_the_first_page_runs_last_and_each_profile_has_its_own_book():
    names = runner.select_notebooks()
    assert names[-1] == runner.FIRST_PAGE and names.count(runner.FIRST_PAGE) == 1
    assert runner.notebook_names()[0] == runner.FIRST_PAGE  # first in the book
    assert runner.book_dir("demo") != runner.book_dir("published")
    assert runner.book_dir("params/published.yaml") == runner.book_dir("published")


@pytest.mark.parametrize("name", sorted(p.stem for p in (REPO / "notebooks").glob("*.md")))
def test_every_notebook_defaults_to_the_demo_profile_and_cites_no_internal_spec(name):
    text = (REPO / "notebooks" / f"{name}.md").read_text()
    assert re.search(r'^profile = "demo"', text, re.M), name
    assert "PAPER_SPEC" not in text, name


def test_every_table_cell_of_the_paper_is_reproduced_on_the_published_artefacts(art):
    """On the authors' own artefacts each of the paper's table numbers is recomputed and agrees (or is a documented
    paper error): none is left unrecomputable or in error."""
    registry = C.load_registry(REGISTRY)
    wanted = T.needed_claims(T.load_tables(TABLES))
    results = [C.evaluate(c, art) for c in registry if c["id"] in wanted and "compute" in c]
    statuses = {r.id: r.status for r in results}
    assert len(results) >= 265  # 269 distinct computed numbers (Table 1 needs the training manifest)
    bad = {k: v for k, v in statuses.items() if v not in ("agrees", "known_discrepancy")}
    assert not bad, bad


def test_a_row_of_the_authors_run_missing_from_other_artefacts_is_not_recomputable_not_an_error(art):
    from lenslib.experiments import tables
    from lenslib.experiments.artefacts import NotInTheseArtefacts

    assert tables.cell(art, "tier_a_recall", "0.806", "n_detected") == 89
    with pytest.raises(NotInTheseArtefacts, match="no row threshold = '0.959'"):
        tables.cell(art, "tier_a_recall", "0.959", "n_detected")
    with pytest.raises(tables.TableCellError, match="no column"):
        tables.cell(art, "tier_a_recall", "0.806", "nope")
    claim = {"id": "x", "text": "x", "paper": 1.0, "decimals": 0, "compute": "experiments.tables.cell",
             "args": {"table": "missed_tier_a", "row": "REAL_999", "column": "score"}}
    assert C.evaluate(claim, art).status == "not_recomputable"

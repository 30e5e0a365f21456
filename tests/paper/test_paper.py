"""The paper step: numbers read from LaTeX, the audit of the authors' source, numbers.tex, the two PDFs
(real latexmk), and the failure modes (a broken source, no TeX)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

from lenslib.paper import audit as A  # noqa: E402
from lenslib.paper.latex import LatexError, files_read, latexmk, tex_available  # noqa: E402
from lenslib.paper.numbers import read_numbers  # noqa: E402
from lenslib.repro import params as P  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
TEX_NAME = "balaji_johnson_2026_rasti.tex"


@pytest.fixture(scope="module")
def tex_ok():
    """TeX must be there in CI (.ci/run installs it); elsewhere these tests skip, saying so."""
    if not tex_available():
        if os.environ.get("CI"):
            pytest.fail("latexmk/pdflatex not found: .ci/run installs TeX")
        pytest.skip("TeX is not installed (latexmk, pdflatex)")


@pytest.fixture(scope="module")
def paper_src(shared) -> Path:
    return shared("paper", TEX_NAME)


def published(tmp: Path, d06: Path, **extra) -> dict:
    return P.load("published", {"results_uri": str(d06), "output_dir": str(tmp), **extra})


def test_numbers_are_read_as_typed_and_markup_is_not_a_number():
    tex = "\n".join([
        r"\documentclass{article}",
        r"\begin{document}",
        r"We train on $\sim\!450\,000$ cutouts \citep{Foo2019}; see Table~\ref{tab:x2} and Section~3.",
        r"AUC $= 0.997 \pm 0.003$, $29$--$39$~per cent, $1.2 \times 10^{-5}$, gain $10^{12}$, $-39.0$ and $-$1.18~pp.",
        r"\includegraphics[width=0.48\textwidth]{fig1.pdf} 14\,000~deg$^{2}$ \\[2pt]",
        r"\begin{tabular}{lcc}", r"\multicolumn{2}{c}{x} & 22-24 \\", r"\end{tabular}",
        r"\begin{thebibliography}{99}", r"\bibitem{a} A. B., 2021, ApJ, 811, 20", r"\end{thebibliography}",
        r"\end{document}"])
    got = [(n.line, n.text, n.decimals, n.where, n.script) for n in read_numbers(tex)]
    texts = [g[1] for g in got]
    assert texts[:11] == ["450000", "3", "0.997", "0.003", "29", "39", "1.2e-5", "1e12", "-39.0", "-1.18", "14000"]
    assert ("2" in texts) and next(g for g in got if g[1] == "2")[4]  # deg^{2}: a superscript
    assert [g[1] for g in got if g[3] == "tabular"] == ["22", "24"]  # a hyphen range, not -24; no span count
    assert [g[1] for g in got if g[3] == "thebibliography"] == ["2021", "811", "20"]
    assert "2019" not in texts and "0.48" not in texts and "99" not in texts  # a citation key, a width
    assert got[2][2] == 3 and got[6][1] == "1.2e-5"


def test_the_audit_classifies_every_number_of_the_authors_source(paper_src, d06, tmp_path):
    """Every number typed in the paper is mapped or explained; no result disagrees unless it is a documented
    discrepancy; every method constant agrees with the code or the authors' configs."""
    from lenslib.paper.run import run_audit

    report = run_audit(published(tmp_path, d06))
    s = report["summary"]
    assert s["n_numbers"] == len(read_numbers(paper_src)) > 1000
    bad = [i for i in report["items"] if i["status"] in A.FAILING]
    assert not bad, "\n".join(f"line {i['line']} {i['text']}: {i['status']} {i['detail']}" for i in bad[:20])
    assert s["ok"] and s["unclassified"] == 0 and s["error"] == 0
    assert s["agrees"] > 300 and s["constant_agrees"] > 50
    for i in report["items"]:
        if i["status"] == "known_discrepancy":
            assert i["discrepancy"] in {d["key"] for d in report["discrepancies"]}, i
        if i["cls"] == "not":
            assert i["target"] in report["reasons"]
    assert {d["key"] for d in report["discrepancies"]} >= {f"i{k:02d}" for k in range(1, 21)}


def test_a_new_or_changed_number_in_the_source_is_caught(paper_src, d06, tmp_path):
    """A number typed differently, or added, is unclassified until the map says what it is; a number mapped
    to the wrong result disagrees."""
    from lenslib.data.storage import open_store
    from lenslib.experiments.artefacts import D06Artefacts

    lines = paper_src.read_text().splitlines()
    ln = next(i for i, t in enumerate(lines, 1) if "$89.3$~per cent recall on 112" in t)
    typo = lines.copy()
    typo[ln - 1] = typo[ln - 1].replace("$89.3$~per cent recall", "$88.3$~per cent recall", 1)
    added = lines.copy()
    added[ln - 1] += " We also find 42.7 per cent."
    art = D06Artefacts(open_store(str(d06)))
    configs = REPO.parent / "shared" / "data" / "configs"

    def flagged(src_lines, map_dir):
        src = tmp_path / TEX_NAME
        src.write_text("\n".join(src_lines) + "\n")
        items = A.audit(src, A.load_map(map_dir), art, REPO / "params" / "claims.yaml", REPO, configs)
        return {i.status for i in items if i.line == ln} & set(A.FAILING), A.summary(items)["ok"]

    for variant in (typo, added):
        assert flagged(variant, REPO / "params" / "paper_numbers") == ({"unclassified"}, False)
    wrong = tmp_path / "map"  # 89.3 (the recall at p > 0.3) mapped to the recall at p > 0.5 (83.9)
    shutil.copytree(REPO / "params" / "paper_numbers", wrong)
    f = next(p for p in wrong.glob("*.yaml") if f'\n  {ln}: ' in p.read_text() or f'\n  {ln}:\n' in p.read_text())
    text = f.read_text()
    block = text[text.index(f"  {ln}:"):]
    fixed = block.replace('"89.3 claim:tier_a_recall_p03_pct"', '"89.3 cell:tier_a_recall/0.5/recall_pct"', 1)
    f.write_text(text.replace(block, fixed))
    assert flagged(lines, wrong) == ({"disagrees"}, False)


def test_a_malformed_map_names_its_file_and_line(tmp_path):
    bad = tmp_path / "map.yaml"
    bad.write_text("lines:\n  12: ['3.5 not:no_such_reason']\n")
    with pytest.raises(A.AuditMapError, match=r"map\.yaml: line 12: reason 'no_such_reason'"):
        A.load_map(bad)
    bad.write_text("lines:\n  12: ['3.5 because']\n")
    with pytest.raises(A.AuditMapError, match=r"line 12: item '3.5 because'"):
        A.load_map(bad)


def _regenerated_figures(art, out: Path) -> dict[str, Path]:
    """Three of the paper's figures drawn by lenslib from the artefacts (PDF), and one as PNG only."""
    from lenslib.experiments import figures as F

    out.mkdir()
    made = {}
    for fid, fn, ext in (("fig1_completeness", F.fig1_completeness, "pdf"), ("fig3_scores", F.fig3_scores, "pdf"),
                         ("fig4_bright_arcs", F.fig4_bright_arcs, "png")):
        fig = fn(art)
        fig.savefig(out / f"{fid}.{ext}")
        made[fid] = out / f"{fid}.{ext}"
    return made


def test_the_authors_paper_is_rebuilt_with_this_runs_figures(tex_ok, paper_src, art, tmp_path):
    from lenslib.paper.build import rebuild_paper

    before = {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in paper_src.parent.iterdir()}
    ours = _regenerated_figures(art, tmp_path / "figures")
    res = rebuild_paper(paper_src, tmp_path / "figures", tmp_path / "build", log=lambda *_: None)
    assert res.pdf.exists() and res.pdf.read_bytes()[:4] == b"%PDF"
    assert set(res.replaced) == {"fig1_completeness.pdf", "fig3_scores.pdf", "fig4_brightarc.pdf"}
    assert set(res.kept) == {"fig2_umap.pdf", "fig5_comparison.pdf"}
    read = files_read(tmp_path / "build" / TEX_NAME)
    for name in res.replaced:  # the build read the staged file, which is ours, not the authors'
        staged = tmp_path / "build" / name
        assert staged.resolve() in read
        assert staged.read_bytes() != (paper_src.parent / name).read_bytes()
    assert (tmp_path / "build" / "fig1_completeness.pdf").read_bytes() == ours["fig1_completeness"].read_bytes()
    pages = subprocess.run(["pdfinfo", str(res.pdf)], capture_output=True, text=True).stdout
    assert re.search(r"Pages:\s+1[34]\n", pages), pages  # the authors' paper: 14 pages (13 with smaller figures)
    after = {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in paper_src.parent.iterdir()}
    assert after == before  # the source folder is never written


def test_paper_step_builds_the_report_with_the_recomputed_values(tex_ok, d06, tmp_path):
    from lenslib.paper.generated import fmt
    from lenslib.paper.run import artefacts_for, build_paper
    from lenslib.repro import claims as C

    params = published(tmp_path / "out", d06)
    status = build_paper(params, log=lambda *_: None)
    paper = tmp_path / "out" / "paper"
    assert set(status["pdfs"]) == {"reproduction_report", "balaji_johnson_2026_rasti"}
    assert status["audit"]["ok"]
    for name in status["pdfs"]:
        assert (paper / f"{name}.pdf").read_bytes()[:4] == b"%PDF" and (paper / f"{name}_p1.png").exists()
    text = subprocess.run(["pdftotext", "-layout", str(paper / "reproduction_report.pdf"), "-"],
                          capture_output=True, text=True, check=True).stdout
    results = {r.id: r for r in C.evaluate_all(REPO / "params" / "claims.yaml", artefacts_for(params))}
    for cid in ("tier_a_recall_p03_pct", "grid_p03_no_poisson_pct", "grid_p03_poisson_detected", "probe_auc_mean"):
        r = results[cid]
        assert fmt(r.computed, r.precision) in text, cid
    assert f"Of {len(results)} claims of the paper" in " ".join(text.split())
    macros = (paper / "numbers.tex").read_text()
    r = results["tier_a_recall_p03_pct"]
    assert rf"\csname lensclaim@tier_a_recall_p03_pct\endcsname{{{fmt(r.computed, r.precision)}}}" in macros


def test_numbers_tex_is_usable_from_any_document(tex_ok, tmp_path):
    from lenslib.paper.generated import numbers_tex
    from lenslib.repro.claims import ClaimResult

    res = [ClaimResult("x_pct", "x", 5.18, "%", "2 dp", 12.3456, "disagrees", "recomputed", "", ""),
           ClaimResult("n_total", "n", 112, "", "0 dp", 113.0, "disagrees", "recomputed", "", "")]
    (tmp_path / "numbers.tex").write_text(numbers_tex(res, "test"))
    (tmp_path / "doc.tex").write_text("\\documentclass{article}\\input{numbers.tex}\\begin{document}"
                                      "A \\claim{x_pct} B \\claimpaper{x_pct} C \\claimunit{n_total}\\end{document}\n")
    pdf = latexmk(tmp_path / "doc.tex")
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    assert "A 12.35 B 5.18 C 113" in " ".join(text.split())


def test_a_latex_error_is_one_clear_message_and_loses_nothing(tex_ok, paper_src, d06, tmp_path):
    from lenslib.paper.run import PaperError, build_paper

    src = tmp_path / "src"
    shutil.copytree(paper_src.parent, src, ignore=shutil.ignore_patterns("*.pdf"))
    shutil.copy2(paper_src.parent / "fig2_umap.pdf", src)
    for f in ("fig1_completeness.pdf", "fig3_scores.pdf", "fig4_brightarc.pdf", "fig5_comparison.pdf"):
        shutil.copy2(paper_src.parent / f, src)
    tex = (src / TEX_NAME).read_text().replace("\\maketitle", "\\maketitle\n\\thiscommandisnotdefined", 1)
    (src / TEX_NAME).write_text(tex)
    with pytest.raises(LatexError, match=r"Undefined control sequence.*log: .*\.log\)"):
        latexmk(src / TEX_NAME)
    out = tmp_path / "out"
    (out / "tables").mkdir(parents=True)
    (out / "tables" / "kept.csv").write_text("a\n1\n")
    with pytest.raises(PaperError, match=r"balaji_johnson_2026_rasti: .*Undefined control sequence"):
        build_paper(published(out, d06, paper_tex=str(src / TEX_NAME)), log=lambda *_: None)
    assert (out / "tables" / "kept.csv").read_text() == "a\n1\n"
    assert (out / "paper" / "reproduction_report.pdf").exists()  # the other PDF is built and kept
    assert (out / "paper" / "numbers.tex").exists() and (out / "paper" / "numbers_audit.json").exists()


def test_without_tex_the_paper_command_names_the_packages(d06, tmp_path):
    env = {**os.environ, "PATH": str(tmp_path)}  # no latexmk, no pdflatex
    p = subprocess.run([sys.executable, "-m", "lenslib", "paper", "--profile", "published",
                        "--set", f"results_uri={d06}", "--set", f"output_dir={tmp_path / 'out'}"],
                       cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 1
    assert "TeX is not installed" in p.stderr and "texlive-publishers" in p.stderr


def test_without_tex_the_paper_step_still_writes_numbers_and_audit(d06, tmp_path, monkeypatch):
    from lenslib.paper import latex
    from lenslib.paper.run import build_paper

    monkeypatch.setattr(latex, "tex_available", lambda: False)
    status = build_paper(published(tmp_path, d06), log=lambda *_: None)
    assert "texlive-latex-base" in status["not_built"]["pdfs"] and not status["pdfs"]
    assert (tmp_path / "paper" / "numbers.tex").exists() and status["audit"]["ok"]

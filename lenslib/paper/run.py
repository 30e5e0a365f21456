"""The paper step of a run: the numbers audit (JSON for the book) and the PDFs, for a profile."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lenslib import LenslibError
from lenslib._util import shown_path
from lenslib.paper import audit as A


class PaperError(LenslibError):
    """The paper step cannot run (no source given, no artefacts)."""


def artefacts_for(params: dict[str, Any]):
    """The D06 artefacts a profile's numbers come from: published ones, or ``<output_dir>/results``."""
    from lenslib.repro.params import open_artefacts, resolve_path

    if params["results_uri"] is None:
        params = {**params, "results_uri": str(resolve_path(params["output_dir"]) / "results")}
    return open_artefacts(params)


def tex_source(params: dict[str, Any], tex: str | None = None) -> Path:
    from lenslib.repro.params import resolve_path

    src = tex or params.get("paper_tex")
    if not src:
        raise PaperError("no LaTeX source: set paper_tex (the authors' .tex) or pass --tex PATH")
    path = resolve_path(src)
    if not path.is_file():
        raise PaperError(f"paper_tex {path}: no such file")
    return path


def run_audit(params: dict[str, Any], tex: str | None = None, out: Path | None = None,
              art=None) -> dict[str, Any]:
    """Audit every number of the profile's LaTeX source against its artefacts; writes
    ``<output_dir>/paper/numbers_audit.json`` (or ``out``) and returns what it wrote."""
    from lenslib.repro.params import resolve_path

    src = tex_source(params, tex)
    amap = A.load_map(resolve_path(params["paper_numbers"]))
    configs = resolve_path(params["paper_configs"]) if params.get("paper_configs") else None
    art = art if art is not None else artefacts_for(params)
    items = A.audit(src, amap, art, resolve_path(params["claims_file"]), resolve_path("."), configs)
    report = {"profile": params["profile"], "tex": str(src), "map": str(amap.path),
              "synthetic": bool(params.get("synthetic_world")), "summary": A.summary(items),
              "reasons": amap.reasons,
              "discrepancies": A.discrepancy_table(items, amap, art, resolve_path("."), configs),
              "items": [i.as_dict() for i in items]}
    out = out or resolve_path(params["output_dir"]) / "paper" / "numbers_audit.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=1, default=lambda x: None if x != x else x))
    tmp.replace(out)
    report["path"] = str(out)
    return report


#: claims quoted in the report's first section (id, what it is)
HIGHLIGHTS = [("tier_a_recall_p03_pct", "Tier-A recall at p > 0.3"),
              ("grid_p03_no_poisson_pct", "Injection completeness at p > 0.3, no Poisson noise"),
              ("grid_p03_poisson_pct", "Injection completeness at p > 0.3, Poisson noise"),
              ("gap_pp", "Gap between real-lens recall and injection completeness"),
              ("probe_auc_mean", "Linear-probe AUC, real lenses vs injections")]
REPORT_FIGURES = {"fig1_completeness": "Injection completeness", "fig3_scores": "Score distributions",
                  "fig4_bright_arcs": "Bright-arc detection rates"}
REPORT_TABLES = ("tier_a_recall", "grid_thresholds", "bright_arc")


def _figure_file(figures: Path, fid: str, dest_dir: Path) -> str | None:
    from lenslib.paper.build import stage_figure

    return f"{fid}.pdf" if stage_figure(figures, fid, dest_dir / f"{fid}.pdf") else None


def build_report(params: dict[str, Any], results: list, claims_summary: dict, audit_summary: dict | None,
                 out_dir: Path) -> Path:
    """Write and build the reproduction report under ``out_dir/report/``; returns its PDF."""
    import shutil

    from lenslib.paper import generated as G
    from lenslib.paper.latex import latexmk
    from lenslib.repro.params import resolve_path

    run_dir = resolve_path(params["output_dir"])
    build = out_dir / "report"
    (build / "tables").mkdir(parents=True, exist_ok=True)
    figures = {f: cap for fid, cap in REPORT_FIGURES.items()
               if (f := _figure_file(run_dir / "figures", fid, build))}
    tables = []
    for t in REPORT_TABLES:
        src = run_dir / "tables" / f"{t}.tex"
        if src.exists():
            shutil.copy2(src, build / "tables" / src.name)
            tables.append(t)
    known = {r.id for r in results}
    G.write_if_changed(build / "numbers.tex", (out_dir / "numbers.tex").read_text())
    tex = G.report_tex(profile=params["profile"], description=params.get("description") or "",
                       synthetic=bool(params.get("synthetic_world")), results=results,
                       claims_summary=claims_summary, audit_summary=audit_summary, figures=figures, tables=tables,
                       highlights=[h for h in HIGHLIGHTS if h[0] in known])
    G.write_if_changed(build / "reproduction_report.tex", tex)
    return latexmk(build / "reproduction_report.tex")


def build_paper(params: dict[str, Any], tex: str | None = None, log=print) -> dict[str, Any]:
    """The paper step: ``numbers.tex`` from the claims, the numbers audit (when a LaTeX source is given), the
    reproduction report and the authors' paper rebuilt with this run's figures (when TeX is installed).
    Everything lands in ``<output_dir>/paper/``; ``paper_build.json`` says what was built and what was not."""
    import shutil

    from lenslib.paper import generated as G
    from lenslib.paper.build import rebuild_paper
    from lenslib.paper.latex import INSTALL_HINT, LatexError, first_page_png, tex_available
    from lenslib.repro import claims as C
    from lenslib.repro.params import resolve_path

    out_dir = resolve_path(params["output_dir"]) / "paper"
    out_dir.mkdir(parents=True, exist_ok=True)
    art = artefacts_for(params)
    results = C.evaluate_all(resolve_path(params["claims_file"]), art)
    claims_summary = C.summary(results)
    G.write_if_changed(out_dir / "numbers.tex", G.numbers_tex(results, params["profile"]))
    status: dict[str, Any] = {"numbers_tex": str(out_dir / "numbers.tex"), "pdfs": {}, "not_built": {}}
    audit_summary, failed = None, {}
    if tex or params.get("paper_tex"):
        report = run_audit(params, tex=tex, out=out_dir / "numbers_audit.json", art=art)  # one read of each file
        audit_summary = report["summary"]
        status["audit"] = {"path": report["path"], **audit_summary}
    else:
        status["not_built"]["audit"] = "no paper_tex: the audit needs the authors' LaTeX source"
    if not params.get("paper_pdf", True):
        status["not_built"]["pdfs"] = "paper_pdf is false"
    elif not tex_available():
        status["not_built"]["pdfs"] = INSTALL_HINT
        log(f"paper: PDFs not built: {INSTALL_HINT}")
    else:
        jobs = [("reproduction_report", lambda: build_report(params, results, claims_summary, audit_summary,
                                                             out_dir))]
        if tex or params.get("paper_tex"):
            src = tex_source(params, tex)
            jobs.append((src.stem, lambda: rebuild_paper(src, resolve_path(params["output_dir"]) / "figures",
                                                         out_dir / "authors", log=log)))
        for name, job in jobs:
            try:
                res = job()
            except LatexError as exc:  # one PDF failing keeps the other and everything the run wrote
                status["not_built"][name] = failed[name] = str(exc)
                log(f"paper: {name}.pdf not built: {exc}")
                continue
            pdf = res if isinstance(res, Path) else res.pdf
            shutil.copy2(pdf, out_dir / f"{name}.pdf")
            entry = {"pdf": str(out_dir / f"{name}.pdf")}
            if not isinstance(res, Path):
                entry.update(replaced={k: str(v) for k, v in res.replaced.items()}, kept=res.kept)
            thumb = first_page_png(out_dir / f"{name}.pdf", out_dir / f"{name}_p1.png")
            if thumb:
                entry["thumbnail"] = str(thumb)
            status["pdfs"][name] = entry
            log(f"paper: {shown_path(str(out_dir / f'{name}.pdf'))}")
    (out_dir / "paper_build.json").write_text(json.dumps(status, indent=1))
    if failed:
        raise PaperError("; ".join(f"{k}: {v}" for k, v in failed.items()))
    return status

"""The authors' paper rebuilt from this run's figures, in a build folder (the source folder is never written)."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from lenslib.paper.latex import latexmk

#: the file names the authors' source includes -> the figure ids a run saves under figures/
PAPER_FIGURES = {"fig1_completeness.pdf": "fig1_completeness", "fig2_umap.pdf": "fig2_umap",
                 "fig3_scores.pdf": "fig3_scores", "fig4_brightarc.pdf": "fig4_bright_arcs",
                 "fig5_comparison.pdf": "fig5_comparison"}
_SOURCE_FILES = ("*.tex", "*.cls", "*.bst", "*.bib", "*.sty", "*.bbl", "*.pdf", "*.png", "*.jpg", "*.eps")


@dataclass
class PaperBuild:
    pdf: Path
    replaced: dict[str, Path] = field(default_factory=dict)  # file name in the source -> this run's figure
    kept: dict[str, str] = field(default_factory=dict)       # file name -> why the authors' figure was kept


def png_to_pdf(png: Path, pdf: Path, dpi: float = 150.0) -> Path:
    """A PNG figure as a one-page PDF (a profile that saves PNG only still fills the paper's PDF slots)."""
    from PIL import Image

    with Image.open(png) as im:
        im.convert("RGB").save(pdf, "PDF", resolution=dpi)
    return pdf


def stage_figure(figures_dir: Path, figure_id: str, dest: Path) -> Path | None:
    """This run's ``figure_id`` as a PDF at ``dest`` (from its .pdf, else its .png); None if it has neither."""
    pdf, png = figures_dir / f"{figure_id}.pdf", figures_dir / f"{figure_id}.png"
    if pdf.exists():
        shutil.copy2(pdf, dest)
        return pdf
    if png.exists():
        png_to_pdf(png, dest)
        return png
    return None


def rebuild_paper(tex: Path, figures_dir: Path, build_dir: Path, log=print) -> PaperBuild:
    """Copy the source folder's files into ``build_dir``, put this run's figures in place of the authors'
    (where the run has them; the build log says which were kept) and build it with latexmk."""
    tex = Path(tex)
    build_dir.mkdir(parents=True, exist_ok=True)
    for pattern in _SOURCE_FILES:
        for f in tex.parent.glob(pattern):
            if f.name != tex.with_suffix(".pdf").name:  # never the authors' built PDF
                shutil.copy2(f, build_dir / f.name)
    included = set(re.findall(r"\\includegraphics(?:\[[^\]]*\])?\{([^}]+)\}", tex.read_text()))
    result = PaperBuild(pdf=build_dir / tex.with_suffix(".pdf").name)
    for name, figure_id in PAPER_FIGURES.items():
        if name not in included:
            continue
        src = stage_figure(Path(figures_dir), figure_id, build_dir / name)
        if src is None:
            result.kept[name] = f"this run has no {figure_id} figure"
            log(f"paper: kept the authors' {name} ({result.kept[name]})")
        else:
            result.replaced[name] = src
    result.pdf = latexmk(build_dir / tex.name)
    return result

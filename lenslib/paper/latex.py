"""latexmk, run in a build folder: TeX's presence, its errors as one clear message."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from lenslib import LenslibError

#: the Debian packages that build the authors' source (the report needs only the first five and latexmk)
TEX_PACKAGES = ("latexmk", "texlive-latex-base", "texlive-latex-recommended", "texlive-latex-extra",
                "texlive-publishers", "texlive-fonts-recommended", "texlive-fonts-extra", "texlive-plain-generic",
                "texlive-science", "tex-gyre")
INSTALL_HINT = ("TeX is not installed: on Debian/Ubuntu `apt-get install -y --no-install-recommends "
                + " ".join(TEX_PACKAGES) + "`; with conda, see environment.yml")


class TexMissing(LenslibError):
    """latexmk or pdflatex is not on PATH."""


class LatexError(LenslibError):
    """A LaTeX build failed; the message holds the first TeX error and the log's path."""


def tex_available() -> bool:
    return shutil.which("latexmk") is not None and shutil.which("pdflatex") is not None


def first_error(log: Path) -> str:
    """The first TeX error of a log (``! ...`` or ``file:line: ...``, with the line it points at)."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log written)"
    for i, ln in enumerate(lines):
        if ln.startswith("!") or re.match(r"^[^\s:]+\.(tex|cls|sty|bst):\d+: ", ln):
            where = next((m for m in lines[i + 1: i + 8] if re.match(r"^l\.\d+", m)), "")
            return (ln + (f" ({where.strip()})" if where else "")).strip()
    return next((ln for ln in lines if "Fatal error" in ln or "Emergency stop" in ln), "unknown error (see the log)")


def latexmk(tex: Path, timeout: float = 600) -> Path:
    """Build ``tex`` to PDF in its own folder (``-recorder``: the ``.fls`` lists every file read)."""
    if not tex_available():
        raise TexMissing(INSTALL_HINT)
    tex = Path(tex)
    cmd = ["latexmk", "-pdf", "-interaction=nonstopmode", "-halt-on-error", "-file-line-error", "-recorder",
           tex.name]
    try:
        proc = subprocess.run(cmd, cwd=tex.parent, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise LatexError(f"{tex}: latexmk ran past {timeout:.0f} s (log: {tex.with_suffix('.log')})") from None
    pdf = tex.with_suffix(".pdf")
    if proc.returncode != 0 or not pdf.exists():
        log = tex.with_suffix(".log")
        raise LatexError(f"{tex.name}: LaTeX failed: {first_error(log)} (log: {log})")
    return pdf


def files_read(tex: Path) -> list[Path]:
    """The files a build read (from latexmk's ``.fls`` recorder file), resolved."""
    fls = Path(tex).with_suffix(".fls")
    out = []
    for ln in fls.read_text(errors="replace").splitlines():
        if ln.startswith("INPUT "):
            p = Path(ln[6:])
            out.append((p if p.is_absolute() else Path(tex).parent / p).resolve())
    return sorted(set(out))


def first_page_png(pdf: Path, out: Path, width: int = 360) -> Path | None:
    """A thumbnail of the first page (pdftoppm from poppler-utils; None where it is not installed)."""
    if shutil.which("pdftoppm") is None:
        return None
    stem = out.with_suffix("")
    subprocess.run(["pdftoppm", "-png", "-f", "1", "-l", "1", "-singlefile", "-scale-to", str(width), str(pdf),
                    str(stem)], check=True, capture_output=True)
    return stem.with_suffix(".png")

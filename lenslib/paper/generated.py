"""Generated LaTeX: the claims as macros (``numbers.tex``) and the reproduction report's source."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from pathlib import Path

from lenslib.repro.claims import ClaimResult

_UNICODE = {"θ": r"$\theta$", "β": r"$\beta$", "σ": r"$\sigma$", "χ": r"$\chi$", "τ": r"$\tau$", "μ": r"$\mu$",
            "Δ": r"$\Delta$", "α": r"$\alpha$", "≈": r"$\approx$", "≤": r"$\leq$", "≥": r"$\geq$",
            "×": r"$\times$", "−": "-", "–": "--", "—": "---", "±": r"$\pm$", "→": r"$\to$", "′": "'",
            "″": "''", "é": r"\'e", "è": r"\`e", "ñ": r"\~n", "ö": r'\"o', "ü": r'\"u', "°": r"$^\circ$",
            "·": r"$\cdot$", "√": r"$\surd$", "²": r"$^2$", "⁻": "-", "¹": r"$^1$", "₀": "0", "…": r"\ldots{}",
            "’": "'", "‘": "`", "“": "``", "”": "''", "≠": r"$\neq$", "∈": r"$\in$", "ε": r"$\epsilon$"}
_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
            "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"$<$", ">": r"$>$"}


def escape(text: str) -> str:
    """Plain text (with the Greek letters and symbols the claims use) as pdflatex-safe LaTeX."""
    out = []
    for ch in str(text):
        if ch in _SPECIAL:
            out.append(_SPECIAL[ch])
        elif ch in _UNICODE:
            out.append(_UNICODE[ch])
        elif ord(ch) < 128:
            out.append(ch)
        else:
            out.append("?")
    return "".join(out)


def fmt(value: float | None, precision: str) -> str:
    """A value at a claim's printed precision (``"2 dp"`` / ``"3 sf"``)."""
    if value is None or not math.isfinite(value):
        return "--"
    n, kind = (precision.split() + ["dp"])[:2] if precision else ("3", "sf")
    n = int(n)
    if kind == "dp":
        return f"{value:.{n}f}"
    if value == 0:
        return "0"
    digits = n - 1 - math.floor(math.log10(abs(value)))
    return f"{round(value, digits):.{max(digits, 0)}f}" if abs(value) >= 1e-3 else f"{value:.{n - 1}e}"


def numbers_tex(results: Iterable[ClaimResult], profile: str) -> str:
    """One macro per claim: ``\\claim{<id>}`` is the recomputed value at the paper's printed precision,
    ``\\claimpaper{<id>}`` the printed one, ``\\claimunit{<id>}`` the value with its unit."""
    lines = [f"% lenslib: the claims recomputed on the {profile} profile (generated; do not edit).",
             r"\providecommand{\claim}[1]{\csname lensclaim@#1\endcsname}",
             r"\providecommand{\claimpaper}[1]{\csname lensclaimpaper@#1\endcsname}",
             r"\providecommand{\claimunit}[1]{\csname lensclaimunit@#1\endcsname}"]
    for r in results:
        if not re.fullmatch(r"[A-Za-z0-9_:./-]+", r.id):
            continue
        value = fmt(r.computed, r.precision)
        paper = fmt(float(r.paper), r.precision) if r.paper is not None else "--"
        unit = {"%": r"\,per~cent", "pp": r"~pp", "": ""}.get(r.unit, "~" + escape(r.unit))
        for prefix, body in (("lensclaim", value), ("lensclaimpaper", paper), ("lensclaimunit", value + unit)):
            lines.append(rf"\expandafter\newcommand\csname {prefix}@{r.id}\endcsname{{{body}}}")
    return "\n".join(lines) + "\n"


_STATUS = {"agrees": "agrees", "known_discrepancy": "known", "disagrees": "DIFFERS", "not_recomputable": "n/r",
           "error": "ERROR"}


def claims_longtable(results: Iterable[ClaimResult]) -> str:
    rows = [r"\begin{longtable}{@{}p{0.62\textwidth}rrl@{}}",
            r"\caption{Every claim of the registry: the printed value, this run's value, the status.}\\",
            r"\toprule claim & paper & this run & \\ \midrule \endfirsthead",
            r"\toprule claim & paper & this run & \\ \midrule \endhead"]
    for r in results:
        paper = fmt(float(r.paper), r.precision) if r.paper is not None else "--"
        status = _STATUS.get(r.status, r.status)
        rows.append(rf"{escape(r.text)} & {paper} & {fmt(r.computed, r.precision)} & {status} \\")
    rows.append(r"\bottomrule \end{longtable}")
    return "\n".join(rows)


def report_tex(*, profile: str, description: str, synthetic: bool, results: list[ClaimResult],
               claims_summary: dict, audit_summary: dict | None, figures: dict[str, str], tables: list[str],
               highlights: list[tuple[str, str]]) -> str:
    """The reproduction report (mnras class): the generated numbers in sentences, the run's tables and
    figures, and every claim with its status."""
    s = claims_summary
    world = (r"\textbf{Synthetic survey --- not DR10.} Every number below is a property of the synthetic world "
             r"that lenslib made, printed beside the paper's value for comparison. " if synthetic else "")
    aud = ""
    if audit_summary:
        a = audit_summary
        aud = (rf"The numbers audit read {a['n_numbers']} numbers typed in the authors' source: "
               rf"{a['agrees']} results agree with this run at their printed precision, "
               rf"{a['known_discrepancy']} are documented discrepancies, {a['disagrees']} disagree, "
               rf"{a['not_recomputable']} cannot be recomputed from the published artefacts; "
               rf"{a['constant_agrees']} method constants agree with the code and {a['constant_differs']} differ; "
               rf"{a['explained']} are not results (years, citations, references, notation) and "
               rf"{a['unclassified']} are unclassified. ")
    hl = "\n".join(rf"\item {escape(text)}: \claimunit{{{cid}}} (paper: \claimpaper{{{cid}}})."
                   for cid, text in highlights)
    figs = "\n".join(rf"""\begin{{figure}}
\centering
\includegraphics[width=\columnwidth]{{{f}}}
\caption{{{escape(cap)} (this run).}}
\end{{figure}}""" for f, cap in figures.items())
    tabs = "\n".join(rf"""\begin{{table*}}
\centering\small
\caption{{Table \texttt{{{escape(t)}}} as this run computed it.}}
\resizebox{{\ifdim\width>\textwidth\textwidth\else\width\fi}}{{!}}{{\input{{tables/{t}.tex}}}}
\end{{table*}}""" for t in tables)
    return rf"""\documentclass[fleqn,usenatbib]{{mnras}}
\usepackage[T1]{{fontenc}}
\usepackage{{graphicx,booktabs,longtable,amsmath}}
\input{{numbers.tex}}
\title[lenslib reproduction report]{{A reproduction of ``A morphological barrier'' with lenslib:
the {escape(profile)} profile}}
\author[lenslib]{{lenslib}}
\date{{generated by python -m lenslib paper}}
\pubyear{{2026}}
\begin{{document}}
\label{{firstpage}}
\pagerange{{\pageref{{firstpage}}--\pageref{{lastpage}}}}
\maketitle
\begin{{abstract}}
{world}This report was written by lenslib from the {escape(profile)} profile ({escape(description)}).
Of {s['n_claims']} claims of the paper, {s['agrees']} agree with this run at the printed precision,
{s['known_discrepancy']} are documented paper errors, {s['disagrees']} disagree and {s['not_recomputable']}
cannot be recomputed from the artefacts. {aud}
\end{{abstract}}
\begin{{keywords}}
gravitational lensing: strong -- methods: data analysis
\end{{keywords}}
\section{{The headline numbers}}
Each value below is a macro of the generated \texttt{{numbers.tex}} (\verb|\claim{{id}}|), so this text cannot drift
from the run that wrote it.
\begin{{itemize}}
{hl}
\end{{itemize}}
\section{{Tables and figures}}
The tables and figures below are this run's own, regenerated from its artefacts.
{tabs}
{figs}
\onecolumn
\section{{Every claim}}
{claims_longtable(results)}
\label{{lastpage}}
\end{{document}}
"""


def write_if_changed(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path

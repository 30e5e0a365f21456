"""HTML pieces of a book page: tables without the pandas index, figure captions, download links, the box that says
where a page's numbers come from. Pure functions of data; :mod:`lenslib.repro.session` displays them."""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

#: where ``lenslib.repro.runner.build_book`` puts the run's tables/ and figures/ in the site
DOWNLOADS = "downloads"
#: from a page of ``book/executed/`` to the site's root
SITE_ROOT = "../../"
#: columns printed with three decimals whatever their size (thresholds such as 0.806 and 0.995)
THREE_DECIMALS = ("threshold", "tau", "p_threshold")


def fmt_number(x: Any, column: str = "") -> str:
    """A table value as a reader wants it: integers whole, thresholds at three decimals, others at four significant
    digits (0.806 stays 0.806, 89.2857 is 89.29), missing values as "–"."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, (bool, np.bool_)):
        return str(bool(x))
    if isinstance(x, (int, np.integer)):
        return f"{int(x)}"
    if isinstance(x, (float, np.floating)):
        if any(column.lower().startswith(c) for c in THREE_DECIMALS):
            return f"{x:.3f}"
        if float(x).is_integer() and abs(x) < 1e15:
            return f"{int(x)}"
        return f"{x:.4g}"
    return str(x)


def latex_table(df: pd.DataFrame, decimals: int) -> str:
    """``df`` as a LaTeX tabular: floats at ``decimals`` places, threshold columns at three (0.806 stays 0.806),
    missing values as ``--``."""
    def fmt(d: int):
        return lambda x: "--" if x is None or (isinstance(x, float) and math.isnan(x)) else (
            f"{x:.{d}f}" if isinstance(x, (float, np.floating)) else str(x))

    formatters = {c: fmt(3) for c in df.columns
                  if any(str(c).lower().startswith(t) for t in THREE_DECIMALS) and df[c].dtype.kind == "f"}
    return df.to_latex(index=False, float_format=fmt(decimals), formatters=formatters or None, na_rep="--",
                       escape=True)


def _td(value: Any, column: str) -> str:
    text = html.escape(fmt_number(value, column))
    numeric = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    long = len(text) > 60
    cls = "num" if numeric else ("long" if long else "")
    return f'<td class="{cls}">{text}</td>' if cls else f"<td>{text}</td>"


def table_html(df: pd.DataFrame, caption: str = "", max_rows: int = 400) -> str:
    """``df`` as an HTML table without its index, in a block that scrolls sideways when wider than the page."""
    cols = list(df.columns)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    rows = []
    for rec in df.head(max_rows).itertuples(index=False):
        rows.append("<tr>" + "".join(_td(v, str(c)) for c, v in zip(cols, rec, strict=True)) + "</tr>")
    more = f"<p><i>{len(df) - max_rows} more rows in the CSV.</i></p>" if len(df) > max_rows else ""
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return (f'<div class="lenslib-table" style="overflow-x:auto"><table class="dataframe">{cap}<thead><tr>{head}'
            f"</tr></thead><tbody>{''.join(rows)}</tbody></table>{more}</div>")


def downloads_html(files: list[tuple[str, str]]) -> str:
    """Links to the run's files in the site (``files``: (path under the output folder, label))."""
    links = " · ".join(f'<a href="{SITE_ROOT}{DOWNLOADS}/{html.escape(p)}" download>{html.escape(label)}</a>'
                       for p, label in files)
    return f'<p class="lenslib-downloads" style="font-size:90%">Download: {links}</p>'


def caption_html(number: str, caption: str) -> str:
    if not (number or caption):
        return ""
    lead = f"<b>{html.escape(number)}.</b> " if number else ""
    return f'<p class="lenslib-caption" style="font-size:95%">{lead}{html.escape(caption)}</p>'


def source_box(params: dict[str, Any], results: list) -> str:
    """Where this page's numbers come from on this profile (recomputed, re-derived, or quoted), as an admonition."""
    n_reported = sum(getattr(r, "kind", "") == "reported" for r in results)
    if params.get("synthetic_world"):
        text = ("<b>Recomputed on lenslib's synthetic survey.</b> lenslib made the cutouts, trained the finder on "
                "them, drew the injections and scored them; every number on this page comes from those scores. The "
                "paper's values stand beside them for comparison only: this world is not DR10.")
    elif params.get("recompute"):
        text = ("<b>Recomputed from cutouts.</b> lenslib drew the injections into the survey cutouts, scored them "
                "with the finder checkpoint of this profile and derived every number on this page from those "
                "scores (the run's <code>results/</code>).")
    else:
        text = ("<b>Re-derived from the authors' published results (D06).</b> lenslib recounts each number on this "
                "page from the per-cell, per-lens and per-injection values the authors published (detection counts, "
                "scores); it does not rerun their CNN.")
    if n_reported:
        text += (f" {n_reported} of this page's paper numbers are <i>quoted</i>: summary values the authors' script "
                 "stored whose inputs are not published, read as stored.")
    return ('<div class="admonition note lenslib-source"><p class="admonition-title">Where these numbers come from'
            f"</p><p>{text}</p></div>")


#: the paper this book reproduces
CITATION = {"authors": "Balaji, A. & Johnson, P. T.", "year": 2026,
            "title": "A morphological barrier: quantifying the injection realism gap for CNN strong lens finders in "
                     "DESI Legacy Survey DR10", "journal": "RAS Techniques and Instruments",
            "code": "https://github.com/aditrivaishnavi/stronglens-realism-gap"}


def profile_sentence(params: dict[str, Any]) -> str:
    """One line naming the profile that built a book and what it is (the banner of every page)."""
    what = params.get("description") or ""
    return f"This book shows profile “{params['profile']}”" + (f": {what}." if what else ".")


def build_html(params: dict[str, Any], commit: str | None, pdfs: list[tuple[str, str]],
               claims: dict[str, Any] | None) -> str:
    """The first page's box: which profile built this book, from which commit, the PDFs built beside it
    (``pdfs``: (site path, title)) and the claims tally of the run."""
    items = [f"<li><b>Profile:</b> <code>{html.escape(str(params['profile']))}</code> — "
             f"{html.escape(params.get('description') or '')}</li>"]
    if commit:
        items.append(f"<li><b>lenslib commit:</b> <code>{html.escape(commit[:12])}</code></li>")
    if claims:
        items.append(f"<li><b>The paper's numbers:</b> {claims['agrees']} of {claims['n_claims']} agree on this run, "
                     f"{claims['known_discrepancy']} known discrepancies, {claims['disagrees']} differ, "
                     f"{claims['not_recomputable']} not recomputable from these artefacts "
                     '(<a href="07_claims.html">Claims</a>).</li>')
    if pdfs:
        links = " · ".join(f'<a href="{SITE_ROOT}{html.escape(p)}">{html.escape(t)}</a>' for p, t in pdfs)
        items.append(f"<li><b>PDFs built with this book:</b> {links}</li>")
    else:
        items.append("<li><b>PDFs:</b> not built with this book (TeX is not installed, or the paper step did not "
                     'run; see <a href="10_paper.html">The paper</a>).</li>')
    return ('<div class="admonition note lenslib-build"><p class="admonition-title">This build</p>'
            f"<ul>{''.join(items)}</ul></div>")


#: the PDFs of the paper step, as the book names them
PDF_TITLES = {"reproduction_report": "Reproduction report (this run's numbers, tables, figures and claims)",
              "balaji_johnson_2026_rasti": "The authors' paper, rebuilt with this run's figures"}


def built_pdfs(paper_dir: Path) -> list[str]:
    return [n for n in PDF_TITLES if (paper_dir / f"{n}.pdf").exists()]

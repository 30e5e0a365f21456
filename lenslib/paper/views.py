"""What the book shows of the paper step: the audit as tables, the PDFs as thumbnail links."""

from __future__ import annotations

import html
from typing import Any

import pandas as pd

from lenslib.repro.views import PDF_TITLES, built_pdfs

__all__ = ["PDF_TITLES", "built_pdfs", "audit_frame", "status_counts", "pdf_cards_html", "discrepancy_frame"]

def audit_frame(report: dict[str, Any], statuses: tuple[str, ...] | None = None) -> pd.DataFrame:
    """One row per audited number (optionally only some statuses), in source order."""
    df = pd.DataFrame(report["items"])
    if df.empty:
        return df
    if statuses is not None:
        df = df[df["status"].isin(statuses)]
    df = df.assign(**{"class": df["cls"] + ":" + df["target"]})
    return df[["line", "text", "where", "class", "status", "computed", "detail"]].reset_index(drop=True)


def status_counts(report: dict[str, Any]) -> pd.DataFrame:
    """Numbers per class and status."""
    df = pd.DataFrame(report["items"])
    return df.assign(cls=df["cls"].replace("", "unclassified")).pivot_table(
        index="cls", columns="status", values="line", aggfunc="count", fill_value=0)


def pdf_cards_html(names: list[str], base: str, thumbs: bool = True) -> str:
    """Links (with first-page thumbnails) to the paper step's PDFs, relative to ``base`` (the site's
    ``paper/`` folder as seen from the page)."""
    cards = []
    for name in names:
        title = html.escape(PDF_TITLES.get(name, name))
        img = (f'<img src="{base}/{name}_p1.png" alt="first page" style="width:180px;border:1px solid #ccc">'
               if thumbs else "")
        cards.append(f'<a href="{base}/{name}.pdf" style="display:inline-block;margin:0 1em 1em 0;'
                     f'text-align:center;width:200px">{img}<br>{title}</a>')
    return '<div class="lenslib-pdfs">' + "".join(cards) + "</div>"


def discrepancy_frame(report: dict[str, Any]) -> pd.DataFrame:
    """The documented discrepancies: what each says, the audited numbers and recorded settings that check it."""
    rows = []
    for d in report["discrepancies"]:
        settings = "; ".join(f"{c['what']} = {c['value']!r} ({'holds' if c['holds'] else 'does not hold'})"
                             for c in d.get("settings", []))
        rows.append({"key": d["key"], "discrepancy": d["text"], "status": d["status"],
                     "source lines": d["lines"], "recorded settings": settings})
    return pd.DataFrame(rows)

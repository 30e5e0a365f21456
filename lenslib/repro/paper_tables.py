"""The paper's tables beside this run's: each printed number with the value recomputed for it and the claim's status.

``params/paper_tables.yaml`` holds every table of the paper as printed, row by row; a number lenslib recomputes is
a placeholder ``{claim id|printed text}``. :func:`render` draws a table as HTML: in each cell this run's values in
the paper's own layout (each number at the printed precision, linked to its claim on the claims page), the printed
cell beneath, and the cell coloured by the worst status of its numbers.
"""

from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lenslib._util import read_yaml_mapping
from lenslib.repro.claims import ClaimResult

PLACEHOLDER = re.compile(r"\{([^{}|]+)\|([^{}]+)\}")
#: cell colours by claim status (worst first)
COLOURS = {"error": "#f4c0c0", "disagrees": "#f4c0c0", "known_discrepancy": "#fff0c0", "not_recomputable": "#e8e8e8",
           "agrees": "#d8f0d8"}
STATUS_WORDS = {"agrees": "agrees", "known_discrepancy": "known discrepancy", "disagrees": "differs",
                "not_recomputable": "not recomputable here", "error": "error"}
CLAIMS_PAGE = "07_claims.html"


@dataclass
class PaperTable:
    label: str
    number: str
    page: str
    caption: str
    header: list[str]
    rows: list[list[str]]

    def claim_ids(self) -> list[str]:
        out: list[str] = []
        for row in self.rows:
            for cell in row:
                out += [m.group(1) for m in PLACEHOLDER.finditer(cell) if m.group(1) not in out]
        return out

    @property
    def anchor(self) -> str:
        return "paper-" + anchor(self.label)


def anchor(claim_id: str) -> str:
    """An HTML id for a claim (or table label): characters other than letters, digits, ``-`` and ``_`` become ``-``."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", claim_id)


def claim_href(claim_id: str, claims_page: str = CLAIMS_PAGE) -> str:
    return f"{claims_page}#claim-{anchor(claim_id)}"


def load_tables(path: Path) -> list[PaperTable]:
    data = read_yaml_mapping(path)
    return [PaperTable(t["label"], t["number"], t["page"], t["caption"], t["header"], t["rows"])
            for t in data.get("tables") or []]


def tables_for_page(path: Path, page: str) -> list[PaperTable]:
    return [t for t in load_tables(path) if t.page == page]


def format_like(value: float, printed: str) -> str:
    """``value`` written as ``printed`` is: same decimals, scientific form, explicit ``+`` and zero padding."""
    if value is None or not math.isfinite(value):
        return "–"
    sign = "+" if printed.startswith("+") else ""
    body = printed.lstrip("+-")
    if "e" in body:
        mant = body.split("e")[0]
        digits = len(mant.split(".")[1]) if "." in mant else 0
        m, e = f"{value:.{digits}e}".split("e")
        return f"{sign if value >= 0 else ''}{m}e{int(e)}"
    decimals = len(body.split(".")[1]) if "." in body else 0
    width = len(body) if body.startswith("0") and len(body.split(".")[0]) > 1 else 0
    text = f"{abs(value):0{width}.{decimals}f}"
    return ("-" if value < 0 and float(text) != 0 else (sign if value >= 0 else "")) + text


def _worst(statuses: list[str]) -> str | None:
    for s in COLOURS:
        if s in statuses:
            return s
    return None


def render_cell(cell: str, results: dict[str, ClaimResult], claims_page: str = CLAIMS_PAGE) -> str:
    """One ``<td>``: this run's values in the printed layout (each linked to its claim), the printed cell below."""
    if not PLACEHOLDER.search(cell):
        return f"<td>{html.escape(cell)}</td>"
    ours, statuses, pos = [], [], 0
    for m in PLACEHOLDER.finditer(cell):
        ours.append(html.escape(cell[pos:m.start()]))
        cid, printed = m.group(1), m.group(2)
        r = results.get(cid)
        status = r.status if r is not None else "error"
        statuses.append(status)
        value = format_like(r.computed, printed) if r is not None and r.computed is not None else "–"
        tip = f"{r.text if r else cid}: paper {printed}, this run {value} ({STATUS_WORDS.get(status, status)})"
        ours.append(f'<a href="{claim_href(cid, claims_page)}" title="{html.escape(tip)}">{html.escape(value)}</a>')
        pos = m.end()
    ours.append(html.escape(cell[pos:]))
    paper = PLACEHOLDER.sub(lambda m: m.group(2), cell)
    worst = _worst(statuses) or "agrees"
    return (f'<td class="lenslib-{worst}" style="background:{COLOURS[worst]}">'
            f'<span class="lenslib-ours">{"".join(ours)}</span>'
            f'<br><span class="lenslib-paper" style="font-size:85%;color:#555">paper: {html.escape(paper)}</span></td>')


def render(table: PaperTable, results: dict[str, ClaimResult], claims_page: str = CLAIMS_PAGE) -> str:
    """The table as HTML (a ``<div>`` that scrolls sideways when wider than the page)."""
    counts: dict[str, int] = {}
    for cid in table.claim_ids():
        s = results[cid].status if cid in results else "error"
        counts[s] = counts.get(s, 0) + 1
    tally = ", ".join(f"{n} {STATUS_WORDS.get(s, s)}" for s, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.header)
    body = "".join("<tr>" + "".join(render_cell(c, results, claims_page) for c in row) + "</tr>" for row in table.rows)
    return (f'<div class="lenslib-paper-table" id="{table.anchor}" style="overflow-x:auto;margin:1em 0">'
            f"<p><b>{html.escape(table.number)} of the paper</b>, this run's values in place of the printed ones "
            f"(printed value beneath each cell; {tally}).</p>"
            f'<table class="lenslib-compare" style="border-collapse:collapse">'
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
            f'<p style="font-size:85%;color:#555"><i>Paper caption:</i> {html.escape(table.caption)}</p></div>')


def legend_html() -> str:
    items = "".join(f'<span style="background:{COLOURS[s]};padding:0 .5em;margin-right:.6em">{w}</span>'
                    for s, w in STATUS_WORDS.items() if s != "error")
    return f'<p style="font-size:90%">Cell colours: {items}. Each number links to its claim.</p>'


def results_by_id(results: list[ClaimResult]) -> dict[str, ClaimResult]:
    return {r.id: r for r in results}


def needed_claims(tables: list[PaperTable]) -> set[str]:
    return {cid for t in tables for cid in t.claim_ids()}


def summary_row(table: PaperTable, results: dict[str, Any]) -> dict[str, Any]:
    ids = table.claim_ids()
    st = [results[c].status if c in results else "error" for c in ids]
    return {"table": table.number, "page": table.page, "numbers": len(ids),
            **{s: st.count(s) for s in ("agrees", "known_discrepancy", "disagrees", "not_recomputable", "error")}}

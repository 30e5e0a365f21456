"""The claims page as a reader sees it: the claims grouped by where the paper prints them, each row with an anchor
(``claim-<id>``, the target of every linked number of the results pages) and a link to the chapter that computes it.

Pure functions of the registry and the claim results; the claims notebook displays what they return.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from pathlib import Path

from lenslib.repro.claims import STATUSES, ClaimResult
from lenslib.repro.paper_tables import COLOURS, STATUS_WORDS, PaperTable, anchor

#: the chapter (notebook name) that computes the claims of each lenslib module
MODULE_PAGES = {"experiments.tier_a": "01_tier_a_recall", "experiments.grid": "02_selection_function",
                "experiments.poisson": "03_poisson_noise", "experiments.bright_arc": "04_bright_arcs",
                "experiments.probe": "05_linear_probe", "experiments.gallery": "06_gallery",
                "data.manifests": "methods_data"}
_GROUP = re.compile(r"^(Abstract|§\s?\d+(?:\.\d+)?|Table [A-Z]?\d+|Figure \d+|Appendix [A-Z])")
_KIND_ORDER = {"Abstract": 0, "§": 1, "Table": 2, "Figure": 3, "Appendix": 4}


def group_of(source: str) -> str:
    """Where the paper prints a claim, from its ``source``: ``"§4.4 Prediction …"`` → ``"§4.4"``,
    ``"Table 3 caption"`` → ``"Table 3"``; ``"Other"`` when the source names none of these."""
    m = _GROUP.match((source or "").strip())
    return m.group(1).replace("§ ", "§") if m else "Other"


def _group_key(group: str) -> tuple:
    kind = "§" if group.startswith("§") else group.split(" ")[0]
    nums = [int(n) for n in re.findall(r"\d+", group)]
    letter = re.findall(r" ([A-Z])", group)
    return (_KIND_ORDER.get(kind, 9), letter, nums, group)


def chapter_of(claim: dict, table_pages: dict[str, str]) -> str | None:
    """The notebook that computes ``claim``: its module's chapter, else (a table cell) the page of the paper table
    that shows it, else the page of the table its source names; ``None`` when no chapter does."""
    module = (claim.get("compute") or "").rpartition(".")[0]
    if module in MODULE_PAGES:
        return MODULE_PAGES[module]
    if claim["id"] in table_pages:
        return table_pages[claim["id"]]
    return table_pages.get(group_of(claim.get("source", "")))


def table_pages(tables: list[PaperTable]) -> dict[str, str]:
    """claim id → page, and table number ("Table 3") → page, over the paper's tables."""
    out: dict[str, str] = {}
    for t in tables:
        out[t.number] = t.page
        for cid in t.claim_ids():
            out.setdefault(cid, t.page)
    return out


def chapter_titles(notebooks: Path) -> dict[str, str]:
    """Notebook name → its title (the first ``# `` heading of ``notebooks/<name>.md``)."""
    out = {}
    for nb in sorted(Path(notebooks).glob("*.md")):
        for line in nb.read_text(encoding="utf-8").splitlines():
            if line.startswith("# "):
                out[nb.stem] = line[2:].strip()
                break
    return out


def _tally(statuses: list[str]) -> str:
    c = Counter(statuses)
    return ", ".join(f"{c[s]} {STATUS_WORDS[s]}" for s in STATUSES if c[s])


def _value(x: float | None, precision: str) -> str:
    """``x`` at the claim's printed precision (``"2 dp"``, ``"3 sf"``)."""
    if x is None:
        return "–"
    n, _, how = precision.partition(" ")
    if how == "dp":
        return f"{x:.{int(n)}f}"
    if how == "sf":
        return f"{x:.{int(n)}g}" if abs(x) < 10 ** int(n) else f"{x:.0f}"
    return f"{x:.6g}"


def short_title(title: str) -> str:
    """A chapter title without its parenthesis: "Bright arcs (Table 6, Figure 4)" → "Bright arcs"."""
    return title.split(" (")[0]


def _row(r: ClaimResult, page: str | None, titles: dict[str, str]) -> str:
    link = f'<a href="{page}.html">{html.escape(short_title(titles.get(page, page)))}</a>' if page else "–"
    colour = COLOURS.get(r.status, "#f4c0c0")
    unit = f" {html.escape(r.unit)}" if r.unit else ""
    paper = "–" if r.paper is None else (_value(float(r.paper), r.precision) if r.precision else f"{r.paper:.6g}")
    ours = _value(r.computed, r.precision)
    return (f'<tr id="claim-{anchor(r.id)}"><td>{html.escape(r.text)} <code style="font-size:75%">'
            f'{html.escape(r.id)}</code><div class="lenslib-detail">{html.escape(r.detail)}</div></td>'
            f'<td class="num">{paper}{unit if paper != "–" else ""}</td>'
            f'<td class="num">{ours}{unit if ours != "–" else ""}</td>'
            f'<td style="background:{colour}">{STATUS_WORDS.get(r.status, r.status)}</td><td>{link}</td></tr>')


def claims_html(results: list[ClaimResult], registry: list[dict], tables: list[PaperTable],
                titles: dict[str, str]) -> str:
    """Every claim, grouped by where the paper prints it (Abstract, sections, tables, figures, appendices), one
    table per group preceded by an index of the groups with their tallies."""
    by_id = {c["id"]: c for c in registry}
    pages = table_pages(tables)
    groups: dict[str, list[ClaimResult]] = {}
    for r in results:
        groups.setdefault(group_of(r.source), []).append(r)
    order = sorted(groups, key=_group_key)
    index = "".join(f'<tr><td><a href="#claims-{anchor(g)}">{html.escape(g)}</a></td><td>{len(groups[g])}</td>'
                    f"<td>{_tally([r.status for r in groups[g]])}</td></tr>" for g in order)
    out = [f'<div class="lenslib-table" style="overflow-x:auto"><table class="dataframe"><thead><tr><th>Where in the '
           f"paper</th><th>numbers</th><th>status</th></tr></thead><tbody>{index}</tbody></table></div>"]
    head = ("<thead><tr><th>Number (id; how it is computed, or why it is not)</th><th>Paper</th><th>This run</th>"
            "<th>Status</th><th>Chapter</th></tr></thead>")
    for g in order:
        rows = "".join(_row(r, chapter_of(by_id.get(r.id, {"id": r.id}), pages), titles) for r in groups[g])
        out.append(f'<h3 id="claims-{anchor(g)}">{html.escape(g)}</h3><p>{_tally([r.status for r in groups[g]])}</p>'
                   f'<div class="lenslib-table lenslib-claims" style="overflow-x:auto"><table class="dataframe">'
                   f"{head}<tbody>{rows}</tbody></table></div>")
    return "".join(out)


def summary_sentence(summary: dict) -> str:
    """One paragraph: how many of the paper's numbers this run reproduces, and what the others are."""
    n = summary["n_claims"]
    parts = [f"<b>{summary['agrees']} of the {n} numbers</b> checked agree with the paper at its printed precision"]
    if summary["known_discrepancy"]:
        parts.append(f"{summary['known_discrepancy']} differ where the paper is known to be wrong (each explained "
                     "in its row)")
    if summary["disagrees"]:
        parts.append(f"{summary['disagrees']} differ")
    if summary["error"]:
        parts.append(f"{summary['error']} could not be computed from these artefacts (an error)")
    if summary["not_recomputable"]:
        parts.append(f"{summary['not_recomputable']} need data that is not among the artefacts (each row says which)")
    return "<p>" + "; ".join(parts) + ".</p>"


def summary_frame(summary: dict):
    """The claims tally as a two-column table (status, claims)."""
    import pandas as pd

    return pd.DataFrame([{"status": STATUS_WORDS[k], "claims": summary[k]} for k in STATUSES])


def tables_frame(tables: list[PaperTable], results: dict[str, ClaimResult], titles: dict[str, str]):
    """One row per paper table: its chapter and how many of its numbers have each status on this run."""
    import pandas as pd

    from lenslib.repro.paper_tables import summary_row

    rows = [{**summary_row(t, results), "page": short_title(titles.get(t.page, t.page))} for t in tables]
    return pd.DataFrame(rows).rename(columns={"page": "chapter", "known_discrepancy": "known discrepancy",
                                              "not_recomputable": "not recomputable"})

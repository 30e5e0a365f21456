"""Write ``params/paper_tables.yaml`` from the authors' LaTeX source and the numbers audit map (a maintainer's
tool, run once when the source or the map changes; ``tests/repro/test_paper_tables.py`` checks the file against
both). Every number of a paper table that the map checks as a result (``claim:`` or ``cell:``) becomes a
placeholder ``{claim id|printed text}`` of the row it sits in; table cells not yet in the claims registry become
claims (``experiments.tables.cell``).

    python tools/paper_tables.py ../shared/data/paper/balaji_johnson_2026_rasti.tex
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lenslib.paper.audit import load_map  # noqa: E402

#: paper table label -> (number as printed, the book page that computes it)
TABLES = {
    "tab:dataset": ("Table 1", "methods_data"),
    "tab:tierA": ("Table 2", "01_tier_a_recall"),
    "tab:thresholds": ("Table 3", "02_selection_function"),
    "tab:thetaE": ("Table 4", "02_selection_function"),
    "tab:probe": ("Table 5", "05_linear_probe"),
    "tab:brightarc": ("Table 6", "04_bright_arcs"),
    "tab:paired_delta": ("Table 7", "03_poisson_noise"),
    "tab:theta_e_poisson": ("Table 8", "03_poisson_noise"),
    "tab:published": ("Table 9", "07_claims"),
    "tab:missed": ("Table B1", "06_gallery"),
}

_SUBS = [
    (r"\\(?:textbf|mathbf|mathrm|emph|textit)\{([^{}]*)\}", r"\1"),
    (r"([0-9.]+)\s*\\times\s*10\^\{(-?\d+)\}", r"\1e\2"),
    (r"10\^\{(-?\d+)\}", r"1e\1"),
    (r"(\d)\\,(\d)", r"\1\2"),
    (r"\\citet\{([A-Za-z]+)(\d{4})[A-Za-z]*\}", r"\1 (\2)"),
    (r"\\citet\{EuclidPrep([A-Z]+)\}", r"Euclid Prep. \1"),
    (r"\\theta_\{\\rm E\}", "θ_E"), (r"\\beta_\{\\rm frac\}", "β_frac"), (r"n_\{\\rm det\}", "n_det"),
    (r"z_\{\\rm lens\}", "z_lens"), (r"\\Delta\s*", "Δ"), (r"\\pm", "±"), (r"\\leq", "≤"), (r"\\approx", "≈"),
    (r"\\sim", "~"), (r"\\%", "%"), (r"\\_", "_"), (r"\\'\{e\}", "é"), (r"\$-\$", "-"), (r"\^\{a\}", "ᵃ"),
    (r"``", "“"), (r"''", "”"), (r"\\;", " "), (r"\\!", ""), (r"\^\{-1\}", "⁻¹"), (r"e\^\{-\}", "e⁻"),
    (r"TPR\$_0\$", "TPR₀"), (r"\\!=\\!", "="), (r"\\,=\\,", " = "), (r"\\,", " "), (r"\\ ", " "), (r"~", " "),
    (r"--", "–"), (r"\$", ""), (r"\\[a-zA-Z]+", ""), (r"[{}]", ""), (r"\s+", " "),
]


def clean(tex: str) -> str:
    for pat, rep in _SUBS:
        tex = re.sub(pat, rep, tex)
    return tex.strip()


def tables(tex_path: Path, amap) -> list[dict]:
    lines = tex_path.read_text(encoding="utf-8").splitlines()
    out, problems = [], []
    i = 0
    while i < len(lines):
        if not re.search(r"\\begin\{table\*?\}", lines[i]):
            i += 1
            continue
        start = i
        while not re.search(r"\\end\{table\*?\}", lines[i]):
            i += 1
        block = range(start + 1, i + 2)  # 1-based line numbers
        label = next(re.search(r"\\label\{(.*?)\}", lines[n - 1]).group(1) for n in block
                     if "\\label{" in lines[n - 1])
        caption = next((lines[n - 1] for n in block if "\\caption{" in lines[n - 1]), "")
        caption = clean(re.sub(r"^\\caption\{|\}$", "", caption.strip()))
        rows, header = [], None
        in_tab = False
        for n in block:
            raw = lines[n - 1]
            if "\\begin{tabular}" in raw:
                in_tab = True
                continue
            if "\\end{tabular}" in raw:
                in_tab = False
            if not in_tab or "&" not in raw:
                continue
            text = clean(raw.rstrip().removesuffix("\\\\").replace("&", "\x00"))
            items = [it for it in amap.lines.get(n, [])]
            if header is None:
                header = [f.strip() for f in text.split("\x00")]
                continue
            pos, parts = 0, []
            for it in items:
                k = text.find(it["text"], pos)
                if k < 0:
                    problems.append(f"{label} line {n}: {it['text']!r} not found in {text[pos:]!r}")
                    continue
                if it["cls"] not in ("claim", "cell"):
                    continue
                a = k - 1 if k > 0 and text[k - 1] == "+" else k
                cid = it["target"] if it["cls"] == "claim" else f"cell:{it['target']}"
                parts.append((a, k + len(it["text"]), cid, text[a:k + len(it["text"])], it))
                pos = k + len(it["text"])
            tmpl, last = "", 0
            for a, b, cid, printed, _ in parts:
                tmpl += text[last:a] + "{" + cid + "|" + printed + "}"
                last = b
            tmpl += text[last:]
            rows.append({"line": n, "cells": [f.strip() for f in tmpl.split("\x00")],
                         "parts": parts})
        number, page = TABLES[label]
        out.append({"label": label, "number": number, "page": page, "caption": caption, "header": header,
                    "rows": rows})
    if problems:
        raise SystemExit("\n".join(problems))
    return out


def _decimals(text: str) -> dict:
    t = text.lstrip("+-")
    if "e" in t:
        mant = t.split("e")[0]
        return {"sig": len(mant.replace(".", "").lstrip("0")) or 1}
    return {"decimals": len(t.split(".")[1]) if "." in t else 0}


def main(tex: str) -> None:
    amap = load_map(ROOT / "params" / "paper_numbers")
    registry = yaml.safe_load((ROOT / "params" / "claims.yaml").read_text())["claims"]
    known = {c["id"] for c in registry} | {c["id"] for c in amap.extra["claims"]}
    claims, seen = [], set()
    out_tables = []
    for t in tables(Path(tex), amap):
        for r in t["rows"]:
            for _a, _b, cid, printed, it in r["parts"]:
                if it["cls"] == "claim":
                    if cid not in known:
                        raise SystemExit(f"{t['label']}: claim {cid} is not in the registry")
                    continue
                if cid in seen or cid in known:
                    continue
                seen.add(cid)
                table, _, rest = it["target"].partition("/")
                row, _, column = rest.rpartition("/")
                c = {"id": cid, "text": f"{t['number']}: {column} at {row}", "paper": float(printed),
                     **_decimals(printed), "compute": "experiments.tables.cell",
                     "args": {"table": table, "row": row, "column": column}, "source": t["number"]}
                if it["disc"]:
                    c["known_discrepancy"] = amap.discrepancies[it["disc"]]["text"]
                claims.append(c)
        out_tables.append({"label": t["label"], "number": t["number"], "page": t["page"], "caption": t["caption"],
                           "header": t["header"], "rows": [r["cells"] for r in t["rows"]]})
    doc = {"tables": out_tables, "claims": claims}
    head = ("# The paper's tables as printed, cell by cell (written by tools/paper_tables.py from the authors' LaTeX\n"
            "# source and params/paper_numbers/; checked against both by tests/repro/test_paper_tables.py).\n"
            "# A placeholder {claim id|printed text} is a number of the table that lenslib recomputes; the book shows\n"
            "# each table with this run's value in place of each placeholder, beside the printed one.\n"
            "# claims: the table cells that are not claims of claims.yaml (included by it).\n")
    (ROOT / "params" / "paper_tables.yaml").write_text(
        head + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=118), encoding="utf-8")
    print(f"{len(out_tables)} tables, {sum(len(t['rows']) for t in out_tables)} rows, {len(claims)} new claims")


if __name__ == "__main__":
    main(sys.argv[1])

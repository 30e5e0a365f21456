"""Every number typed in a LaTeX source, with its line, printed precision and surroundings.

LaTeX markup (``\\label``, ``\\ref``, ``\\cite`` keys, lengths, column specs, ``\\multicolumn`` spans, file
names, comments) is not typed text, so it is removed before numbers are read. Super- and subscripts
(``\\chi^2``, ``$^{1}$``) and the bibliography are read but marked by the environment they sit in, so the
audit can explain them by rule. Thousands written ``450\\,000`` are one number; ``1.2\\times10^{-5}`` and
``10^{12}`` are one number each; an en-dash range ``29--39`` is two.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

# markup whose braces hold names, keys or lengths, not typed numbers
_ARG_COMMANDS = ("label", "ref", "eqref", "pageref", "cite", "citep", "citet", "citealt", "citeauthor", "citeyear",
                 "includegraphics", "url", "href", "bibliography", "bibliographystyle", "usepackage",
                 "documentclass", "begin", "end", "cmidrule", "vspace", "hspace", "setlength", "addtolength",
                 "label", "bibitem", "citeauthoryear", "protect", "hypersetup", "renewcommand", "newcommand",
                 "resizebox", "rule", "arraystretch", "tabcolsep")
_MARKUP = re.compile(
    r"(?<!\\)%.*$"                                                      # comments
    r"|\\(?:" + "|".join(_ARG_COMMANDS) + r")\*?(?:\([^)]*\))?(?:\[[^\]]*\])*(?:\{[^{}]*\})?(?:\{[^{}]*\})?"
    r"|\\multicolumn\{\d+\}|\\multirow\{\d+\}"                         # span counts
    r"|\\\\\[[^\]]*\]"                                                  # \\[2pt]
    r"|-?\d*\.?\d+\s*(?:pt|mm|cm|em|ex|in)\b"                           # lengths
    r"|-?\d*\.?\d+\s*\\(?:textwidth|columnwidth|linewidth|hsize|baselineskip)"
    r"|\{[lcrp|@]+\}(?=\s*$|\s*\\)"                                      # column specs
    , re.M)
_NUMBER = re.compile(
    r"(?<![A-Za-z0-9_.\\])"
    r"(?P<sign>\$[-−]\$(?=\d)|(?<![-\d])[-+−](?=\d)|\$[-+](?=\d))?"
    r"(?P<mant>\d{1,3}(?:(?:\\,|\{,\}|,)\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
    r"(?P<exp>\s*\\times\s*10\^\{?[-−]?\d+\}?|\s*\\times\s*10\^\{?\\?[-−]?\d+\}?)?"
    r"(?![A-Za-z0-9]|\.\d)")
_POW10 = re.compile(r"(?<![\d.])10\^\{?(?P<e>[-−]?\d+)\}?")
_ENVS = ("thebibliography", "table", "table*", "figure", "figure*", "abstract", "equation", "align", "tabular",
         "keywords")


@dataclass(frozen=True)
class TypedNumber:
    """One number as typed: ``line`` (1-based), ``index`` (its position among the numbers of that line),
    ``text`` (as typed, normalised: ``450000``, ``1.2e-5``), ``value``, ``decimals`` (printed decimal places),
    ``where`` (innermost environment, or ``text``/``preamble``), ``script`` (True for a super/subscript),
    ``context`` (about 60 characters around it)."""

    line: int
    index: int
    text: str
    value: float
    decimals: int
    where: str
    script: bool
    context: str


def _mask_markup(line: str) -> str:
    """The line with markup blanked out (same length, so columns still point into the source)."""
    return _MARKUP.sub(lambda m: " " * len(m.group(0)), line)


def read_numbers(tex: str | Path) -> list[TypedNumber]:
    """All numbers typed in a LaTeX source (a path or its text), in reading order."""
    text = Path(tex).read_text() if isinstance(tex, Path) else tex
    out: list[TypedNumber] = []
    stack: list[str] = []
    in_doc = False
    for ln, raw in enumerate(text.splitlines(), start=1):
        if "\\begin{document}" in raw:
            in_doc = True
        line = _mask_markup(raw)
        for m in re.finditer(r"\\(begin|end)\{([^}]*)\}", raw):
            if m.group(2) in _ENVS:
                if m.group(1) == "begin":
                    stack.append(m.group(2))
                elif m.group(2) in stack:
                    stack.reverse()
                    stack.remove(m.group(2))
                    stack.reverse()
        where = stack[-1] if stack else ("text" if in_doc else "preamble")
        if "thebibliography" in stack or "\\end{thebibliography}" in raw:
            where = "thebibliography"
        spans = []
        for m in _POW10.finditer(line):  # a bare power of ten: 10^{12}
            if not re.search(r"\\times\s*$", line[: m.start()]):
                spans.append((m.start(), m.end(), f"1e{m.group('e').replace('−', '-')}", 0))
        taken = [(a, b) for a, b, _, _ in spans]
        for m in _NUMBER.finditer(line):
            if any(a <= m.start() < b for a, b in taken):
                continue
            mant = re.sub(r"\\,|\{,\}|,", "", m.group("mant"))
            sign = (m.group("sign") or "").replace("$", "").replace("−", "-").replace("+", "")
            if sign == "-" and re.search(r"\d\$?$", line[: m.start()]):  # 22-24 typed with a hyphen: a range
                sign = ""
            decimals = len(mant.split(".")[1]) if "." in mant else 0
            txt = sign + mant
            if m.group("exp"):
                e = re.search(r"[-−]?\d+\}?$", m.group("exp").replace("\\", "")).group(0).strip("}").replace("−", "-")
                txt = f"{txt}e{e}"
            spans.append((m.start(), m.end(), txt, decimals))
        for i, (a, b, txt, dec) in enumerate(sorted(spans)):
            before = line[:a].rstrip("{ ")
            script = before.endswith(("^", "_"))
            ctx = raw[max(0, a - 30): b + 30]
            out.append(TypedNumber(ln, i, txt, float(txt), dec, where, script, ctx))
    return out

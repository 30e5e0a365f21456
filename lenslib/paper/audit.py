"""The numbers audit: every number typed in the paper's source, classified and, where it is a result or a
method constant, checked.

The map (``params/paper_numbers.yaml``) says, line by line and in reading order, what each number is::

    lines:
      199: ["0.806 claim:tier_a_threshold_fpr1e3", "1e-3 const:fpr_target_1e3",
            "79.5 cell:tier_a_recall/0.806/recall_pct", "89 cell:tier_a_recall/0.806/n_detected", "2021 not:year"]

Each item is ``<number as read> <class>:<target>``:

- ``claim:<id>`` — a result, the claim ``<id>`` of the claims registry, checked at the printed precision;
- ``cell:<table>/<row>/<column>`` — a result typed in a table (or quoted from one), checked against that cell
  of the table lenslib computes (:mod:`lenslib.experiments.tables`);
- ``const:<name>`` — a method constant, checked against where the code keeps it (the map's ``constants:``);
- ``not:<reason>`` — not a result (a year, a citation, a section number, an equation constant, ...): the reason
  is a key of the map's ``reasons:``, which says what the rule is;
- ``result:<why>`` — a result of this paper that is not checked yet (counted and shown, never hidden).

A class may carry ``*<scale>`` (``cell:...*100``: the table holds a fraction, the paper prints per cent),
a ``~`` before it (``~claim:...``: an approximate number, checked at its significant figures), and
``!<key>`` after it: a documented paper ↔ code ↔ artefact discrepancy (a key of the map's
``discrepancies:``): a disagreement there is reported as ``known_discrepancy``.

Numbers in the bibliography and super/subscripts (``^{2}``, ``^{-1}``) are explained by rule, not listed.
"""

from __future__ import annotations

import importlib
import math
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lenslib import LenslibError, ParamError
from lenslib._util import read_yaml_mapping
from lenslib.experiments.artefacts import D06Artefacts
from lenslib.paper.numbers import TypedNumber, read_numbers
from lenslib.repro import claims as C

CLASSES = ("claim", "cell", "const", "not", "result")
#: the statuses of an audited number, and which of them make the audit fail
STATUSES = ("agrees", "known_discrepancy", "disagrees", "not_recomputable", "constant_agrees", "constant_differs",
            "explained", "unchecked", "unclassified", "error")
FAILING = ("disagrees", "constant_differs", "unclassified", "error")
AUTO_RULES = {
    "bibliography": "a number in the reference list (years, volumes, pages)",
    "notation": "a super- or subscript: a power, a unit exponent, an affiliation or footnote mark",
}
_ITEM = re.compile(r"^(?P<text>\S+)\s+(?P<approx>~)?(?P<cls>[a-z]+):(?P<target>[^\s*!]+)"
                   r"(?:\*(?P<scale>[-0-9.e]+))?(?:\s*!(?P<disc>\S+))?\s*$")


class AuditMapError(LenslibError, ValueError):
    """The numbers map is malformed."""


@dataclass
class AuditItem:
    line: int
    index: int
    text: str
    where: str
    context: str
    cls: str
    target: str
    status: str
    paper: float
    computed: float | None = None
    detail: str = ""
    discrepancy: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class AuditMap:
    lines: dict[int, list[dict]]
    reasons: dict[str, str]
    constants: dict[str, dict]
    discrepancies: dict[str, dict]
    path: Path
    extra: dict = field(default_factory=dict)


def _parse_item(raw: str, where: str) -> dict:
    m = _ITEM.match(str(raw).strip())
    if not m:
        raise AuditMapError(f"{where}: item {raw!r} is not '<number> <class>:<target>'")
    d = m.groupdict()
    if d["cls"] not in CLASSES:
        raise AuditMapError(f"{where}: item {raw!r}: class must be one of {', '.join(CLASSES)}")
    return {"text": d["text"], "cls": d["cls"], "target": d["target"], "approx": bool(d["approx"]),
            "scale": float(d["scale"]) if d["scale"] else 1.0, "disc": d["disc"] or ""}


def _merge(into: dict, new: dict, what: str, where: Path) -> None:
    for k, v in (new or {}).items():
        if k in into and into[k] != v:
            raise AuditMapError(f"{where}: {what} {k!r} is defined twice, differently")
        into[k] = v


def load_map(path: Path) -> AuditMap:
    """The numbers map: one YAML file, or a folder of them (merged; ``params/paper_numbers/``). A file may
    also hold ``claims:`` (same schema as the claims registry) for results the map checks."""
    path = Path(path)
    files = sorted(path.glob("*.yaml")) if path.is_dir() else [path]
    if not files:
        raise AuditMapError(f"numbers map {path}: no *.yaml files")
    reasons, constants, discrepancies, raw_lines, extra_claims = dict(AUTO_RULES), {}, {}, {}, []
    for f in files:
        try:
            data = read_yaml_mapping(f)
        except ParamError as exc:
            raise AuditMapError(f"numbers map {exc}") from None
        _merge(reasons, data.get("reasons"), "reason", f)
        _merge(constants, data.get("constants"), "constant", f)
        _merge(discrepancies, data.get("discrepancies"), "discrepancy", f)
        for key, items in (data.get("lines") or {}).items():
            try:
                ln = int(key)
            except (TypeError, ValueError):
                raise AuditMapError(f"{f}: lines: key {key!r} is not a line number") from None
            if ln in raw_lines:
                raise AuditMapError(f"{f}: line {ln} is also mapped in {raw_lines[ln][0]}")
            if not isinstance(items, list):
                raise AuditMapError(f"{f}: line {ln}: expected a list of items")
            raw_lines[ln] = (f, items)
        for c in data.get("claims") or []:
            cid = c.get("id") if isinstance(c, dict) else None
            prev = next((p for p in extra_claims if isinstance(p, dict) and p.get("id") == cid), None)
            if prev is None:
                extra_claims.append(c)
            elif prev != c:
                raise AuditMapError(f"{f}: claim {cid!r} is defined twice in the map, differently")
    lines: dict[int, list[dict]] = {}
    for ln, (f, items) in sorted(raw_lines.items()):
        parsed = [_parse_item(it, f"{f}: line {ln}") for it in items]
        for it in parsed:
            if it["cls"] == "not" and it["target"] not in reasons:
                raise AuditMapError(f"{f}: line {ln}: reason {it['target']!r} is not in reasons:")
            if it["cls"] == "const" and it["target"] not in constants:
                raise AuditMapError(f"{f}: line {ln}: constant {it['target']!r} is not in constants:")
            if it["disc"] and it["disc"] not in discrepancies:
                raise AuditMapError(f"{f}: line {ln}: discrepancy {it['disc']!r} is not in discrepancies:")
        lines[ln] = parsed
    return AuditMap(lines, reasons, constants, discrepancies, path, extra={"claims": extra_claims})


def registry(claims_path: Path, amap: AuditMap) -> dict[str, dict]:
    """The claims registry with the claims the map defines (validated as the registry is)."""
    import tempfile

    import yaml

    base = C.load_registry(claims_path)
    extra = amap.extra.get("claims") or []
    if extra:
        with tempfile.TemporaryDirectory() as tmp:  # the registry's own validation, on the map's claims
            p = Path(tmp) / "map_claims.yaml"
            p.write_text(yaml.safe_dump({"claims": extra}, allow_unicode=True))
            try:
                extra = C.load_registry(p)
            except C.ClaimsFileError as exc:
                raise AuditMapError(f"{amap.path}: claims: {str(exc).replace(str(p), 'map')}") from None
    out: dict[str, dict] = {}
    for c in [*base, *extra]:
        if c["id"] in out and out[c["id"]] == c:  # the same claim in two map files
            continue
        if c["id"] in out:
            raise AuditMapError(f"claim {c['id']!r} is defined twice (registry {claims_path} and {amap.path})")
        out[c["id"]] = c
    return out


def auto_reason(n: TypedNumber) -> str | None:
    """The rule that explains a number without a map entry, if one does."""
    if n.where == "thebibliography":
        return "bibliography"
    if n.script:
        return "notation"
    return None


# --- constants ---------------------------------------------------------------------------------------------

def _walk(obj: Any, path: str, where: str) -> Any:
    for part in [p for p in path.split(".") if p]:
        if isinstance(obj, dict):
            if part not in obj:
                raise AuditMapError(f"{where}: no key {part!r}")
            obj = obj[part]
        elif isinstance(obj, (list, tuple)) and re.fullmatch(r"-?\d+", part):
            obj = obj[int(part)]
        else:
            if not hasattr(obj, part):
                raise AuditMapError(f"{where}: no attribute {part!r}")
            obj = getattr(obj, part)
    return obj


def constant_value(spec: dict, root: Path, name: str = "", configs: Path | None = None) -> Any:
    """The value a constant has in the code: ``py: module:attr.path``, ``yaml: file:key.path`` (relative to
    the project), ``config: file:key.path`` (one of the authors' configs, in the profile's ``paper_configs``
    folder), ``profile: name:key`` (a validated parameter of ``params/<name>.yaml``), or ``value:`` (fixed by
    the method; ``why:`` says by what)."""
    where = f"constant {name}"
    if "config" in spec:
        if configs is None:
            raise AuditMapError(f"{where}: needs the authors' configs; set paper_configs")
        file, _, key = str(spec["config"]).partition(":")
        return _walk(read_yaml_mapping(configs / file), key, f"{where} ({spec['config']})")
    if "py" in spec:
        module, _, attr = str(spec["py"]).partition(":")
        try:
            obj = importlib.import_module(module)
        except ModuleNotFoundError:
            raise AuditMapError(f"{where}: no module {module}") from None
        return _walk(obj, attr, f"{where} ({spec['py']})")
    if "yaml" in spec:
        file, _, key = str(spec["yaml"]).partition(":")
        return _walk(read_yaml_mapping(root / file), key, f"{where} ({spec['yaml']})")
    if "profile" in spec:
        from lenslib.repro import params as P

        prof, _, key = str(spec["profile"]).partition(":")
        return _walk(P.load(prof, {}), key, f"{where} ({spec['profile']})")
    if "value" in spec:  # fixed by the method itself (e.g. the number of DR10 bands); ``why`` says so
        return spec["value"]
    raise AuditMapError(f"{where}: give py:, yaml:, profile: or value:")


def _close(value: float, printed: float, tol: float) -> bool:
    return math.isfinite(value) and abs(value - printed) <= tol * (1 + 1e-9)


def _tolerance(n: TypedNumber, approx: bool) -> float:
    if not approx:
        if "e" in n.text:
            mant = n.text.split("e")[0]
            dec = len(mant.split(".")[1]) if "." in mant else 0
            return 0.5 * 10.0 ** (-dec) * 10.0 ** int(n.text.split("e")[1])
        return 0.5 * 10.0 ** (-n.decimals)
    # approximate: the significant figures as typed (trailing zeros of an integer are not significant)
    v = abs(n.value)
    if v == 0:
        return 0.5
    digits = n.text.split("e")[0].lstrip("-").replace(".", "").lstrip("0")
    sig = max(1, len(digits.rstrip("0")) if "." not in n.text else len(digits))
    return 0.5 * 10.0 ** (math.floor(math.log10(v)) - sig + 1)


def _check_constant(n: TypedNumber, it: dict, amap: AuditMap, root: Path,
                    configs: Path | None) -> tuple[str, float | None, str]:
    spec = amap.constants[it["target"]]
    try:
        value = constant_value(spec, root, it["target"], configs)
    except (LenslibError, LookupError, TypeError, ValueError) as exc:
        return "error", None, str(exc)
    printed, tol = n.value, _tolerance(n, it["approx"])
    how = spec.get("check", "equal")
    src = (spec.get("py") or spec.get("yaml") or spec.get("config") or spec.get("profile")
           or f"value ({spec.get('why', '')})")
    try:
        if how == "member":
            vals = [float(v) * it["scale"] for v in value]
            ok = any(_close(v, printed, tol) for v in vals)
            shown = None
        else:
            vals = [float(v) for v in value] if isinstance(value, (list, tuple)) else [float(value)]
            v = {"min": min, "max": max, "equal": lambda x: x[0], "len": len}[how](vals) if how != "len" \
                else len(value)
            v = float(v) * it["scale"]
            ok, shown = _close(v, printed, tol), v
    except (KeyError, TypeError, ValueError) as exc:
        return "error", None, f"constant {it['target']}: {type(exc).__name__}: {exc}"
    detail = f"{src} ({how})" + (f" = {value}" if shown is None else f" = {shown:g}")
    return ("constant_agrees" if ok else "constant_differs"), shown, detail


# --- results ----------------------------------------------------------------------------------------------

def _claim_for(n: TypedNumber, it: dict, registry: dict[str, dict]) -> dict:
    """The claim that checks this typed number: the registry's (or a table cell's), at the printed precision."""
    if it["cls"] == "claim":
        if it["target"] not in registry:
            raise AuditMapError(f"claim {it['target']!r} is not in the claims registry")
        base = dict(registry[it["target"]])
    else:
        table, _, rest = it["target"].partition("/")
        row, _, column = rest.rpartition("/")
        if not (table and row and column):
            raise AuditMapError(f"cell {it['target']!r}: expected <table>/<row>/<column>")
        base = {"id": f"cell:{it['target']}", "text": f"table {table}, {row}, {column}",
                "compute": "experiments.tables.cell", "args": {"table": table, "row": row, "column": column}}
    claim = {k: v for k, v in base.items() if k not in ("decimals", "sig", "paper")}
    claim["paper"] = n.value / it["scale"]
    claim["_tol"] = _tolerance(n, it["approx"]) / abs(it["scale"])
    return claim


def _check_result(n: TypedNumber, it: dict, registry: dict, art: D06Artefacts,
                  amap: AuditMap) -> tuple[str, float | None, str]:
    try:
        claim = _claim_for(n, it, registry)
    except AuditMapError as exc:
        return "error", None, str(exc)
    if "not_recomputable" in claim:
        return "not_recomputable", None, claim["not_recomputable"]
    tol = claim.pop("_tol")
    if it["disc"]:
        claim["known_discrepancy"] = amap.discrepancies[it["disc"]].get("text", it["disc"])
    elif claim.get("known_discrepancy"):  # documented on the claim itself: the item names the claim
        it["disc"] = f"claim:{claim['id']}"
    claim["decimals"] = 0  # precision is handled here (tol); evaluate() needs one of decimals/sig
    res = C.evaluate(claim, art)
    if res.computed is None:
        return res.status, None, res.detail
    value = res.computed * it["scale"]
    ok = _close(value, n.value, tol * abs(it["scale"]))
    status = "agrees" if ok else ("known_discrepancy" if claim.get("known_discrepancy") else "disagrees")
    detail = (f"{claim['compute']}({claim.get('args') or ''}) = {value:.6g}, printed {n.text} "
              f"(±{tol * abs(it['scale']):.2g})")
    if status == "known_discrepancy":
        detail += f". Known discrepancy: {claim['known_discrepancy']}"
    if it["cls"] == "claim":
        reg = registry[it["target"]]
        if not _close(float(reg["paper"]) * it["scale"], n.value, tol * abs(it["scale"]) + C.half_unit(reg)):
            return "error", value, f"the registry says claim {it['target']} printed {reg['paper']}, the source {n.text}"
    return status, value, detail


def audit(tex: Path, amap: AuditMap, art: D06Artefacts, registry_path: Path, root: Path,
          configs: Path | None = None) -> list[AuditItem]:
    """Classify and check every number typed in ``tex``."""
    registry_ = registry(registry_path, amap)
    numbers = read_numbers(Path(tex))
    by_line: dict[int, list[TypedNumber]] = {}
    for n in numbers:
        by_line.setdefault(n.line, []).append(n)
    out: list[AuditItem] = []
    for ln, nums in by_line.items():
        listed = amap.lines.get(ln, [])
        todo = [n for n in nums if auto_reason(n) is None]
        mismatch = len(listed) != len(todo) or any(it["text"] != n.text for it, n in zip(listed, todo, strict=False))
        for n in nums:
            rule = auto_reason(n)
            if rule:
                out.append(AuditItem(n.line, n.index, n.text, n.where, n.context, "not", rule, "explained",
                                     n.value, detail=amap.reasons[rule]))
        for k, n in enumerate(todo):
            if mismatch:
                got = " ".join(it["text"] for it in listed) or "nothing"
                out.append(AuditItem(n.line, n.index, n.text, n.where, n.context, "", "", "unclassified", n.value,
                                     detail=f"the map lists {got} for line {ln}; the source has "
                                            f"{' '.join(m.text for m in todo)}"))
                continue
            it = listed[k]
            disc = it["disc"]
            if it["cls"] == "not":
                status, value, detail = "explained", None, amap.reasons[it["target"]]
            elif it["cls"] == "result":
                status, value, detail = "unchecked", None, it["target"].replace("_", " ")
            elif it["cls"] == "const":
                status, value, detail = _check_constant(n, it, amap, root, configs)
                if status == "constant_differs" and disc:
                    status = "known_discrepancy"
            else:
                status, value, detail = _check_result(n, it, registry_, art, amap)
                disc = it["disc"]
            out.append(AuditItem(n.line, n.index, n.text, n.where, n.context, it["cls"], it["target"], status,
                                 n.value, value, detail, disc))
    stale = sorted(set(amap.lines) - set(by_line))
    for ln in stale:
        out.append(AuditItem(ln, 0, "", "", "", "", "", "error", float("nan"),
                             detail=f"the map lists line {ln}, which holds no number in {tex}"))
    return sorted(out, key=lambda a: (a.line, a.index))


def summary(items: list[AuditItem]) -> dict[str, Any]:
    counts = Counter(i.status for i in items)
    by_class = Counter(i.cls or "unclassified" for i in items)
    return {"n_numbers": len(items), **{s: counts.get(s, 0) for s in STATUSES},
            "by_class": dict(by_class), "ok": not any(counts.get(s, 0) for s in FAILING)}


def _setting(check: dict, art: D06Artefacts, root: Path, configs: Path | None) -> Any:
    if "artefact" in check:  # a value recorded in a D06 JSON artefact: "key.json:dotted.path"
        key, _, path = str(check["artefact"]).partition(":")
        return _walk(art.json(key, "a discrepancy check"), path, f"artefact {key}")
    return constant_value(check, root, check.get("what", ""), configs)


def check_setting(check: dict, art: D06Artefacts, root: Path, configs: Path | None) -> dict:
    """One recorded setting compared with what a discrepancy says it is (``expect``: equal; ``contains``: a
    substring of a text)."""
    try:
        value = _setting(check, art, root, configs)
    except (LenslibError, LookupError, TypeError, ValueError) as exc:
        return {"what": check.get("what", ""), "value": None, "holds": False, "detail": str(exc)}
    if "contains" in check:
        holds = str(check["contains"]) in str(value)
    else:
        expect = check.get("expect")
        holds = (list(value) == list(expect)) if isinstance(value, (list, tuple)) else value == expect
    return {"what": check.get("what", ""), "value": value, "holds": bool(holds), "detail": ""}


def discrepancy_table(items: list[AuditItem], amap: AuditMap, art: D06Artefacts | None = None,
                      root: Path | None = None, configs: Path | None = None) -> list[dict]:
    """The documented discrepancies (PAPER_SPEC §I), each with the audited numbers tagged with it and the
    recorded settings (``checks:``) that show it in the code, the configs or the artefacts."""
    rows = []
    documented = dict(amap.discrepancies)
    for i in items:  # discrepancies documented on a claim of the registry (known_discrepancy: ...)
        if i.discrepancy.startswith("claim:") and i.discrepancy not in documented:
            documented[i.discrepancy] = {"text": i.detail.split("Known discrepancy: ")[-1]}
    for key, d in documented.items():
        checked = [i for i in items if i.discrepancy == key]
        statuses = Counter(i.status for i in checked)
        settings = [check_setting(c, art, root or Path("."), configs) for c in d.get("checks") or []] \
            if art is not None else []
        parts = [f"{v} {k}" for k, v in statuses.items()]
        if settings:
            held = sum(c["holds"] for c in settings)
            parts.append(f"{held}/{len(settings)} recorded settings confirm it")
        rows.append({"key": key, "text": d.get("text", ""), "numbers": len(checked),
                     "status": "; ".join(parts) or "documented; no typed number or recorded setting to compare",
                     "lines": ", ".join(str(i.line) for i in checked),
                     "settings": settings,
                     "confirmed": bool(settings) and all(c["holds"] for c in settings)})
    return rows

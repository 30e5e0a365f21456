"""The claims registry: every published number, its printed precision, and the function that recomputes it.

``params/claims.yaml`` lists claims. Each has ``id``, ``text``, ``paper`` (the printed value),
``decimals`` or ``sig`` (printed precision), and either ``compute: module.function`` (a function of
``lenslib`` called as ``fn(artefacts, **args)``) or ``not_recomputable: <why>``. ``kind`` says how the
value is obtained: ``recomputed`` (derived from lower-level data: counts, per-row CSVs, probabilities)
or ``reported`` (a summary value the authors' script stored, read as is because the inputs behind it
are not among the artefacts).

A claim *agrees* when the computed value, at the printed precision, is the printed value:
|computed − paper| ≤ half a unit in the last printed place. A claim marked
``known_discrepancy: <explanation>`` is a documented paper error: it is reported as
``known_discrepancy`` while it disagrees (and as ``agrees`` should the data ever match), so it
neither hides nor fails the run; every other disagreement fails ``lenslib claims``.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lenslib import LenslibError, ParamError
from lenslib._util import read_yaml_mapping
from lenslib.experiments.artefacts import D06Artefacts, NotInTheseArtefacts

STATUSES = ("agrees", "known_discrepancy", "disagrees", "not_recomputable", "error")
_FIELDS = {"id", "text", "paper", "unit", "decimals", "sig", "compute", "args", "kind", "source",
           "not_recomputable", "known_discrepancy", "note"}


class ClaimsFileError(LenslibError, ValueError):
    """The claims registry is malformed."""


@dataclass
class ClaimResult:
    id: str
    text: str
    paper: float | None
    unit: str
    precision: str
    computed: float | None
    status: str
    kind: str
    source: str
    detail: str

    def as_dict(self) -> dict:
        return asdict(self)


def _read(path: Path) -> dict:
    try:
        return read_yaml_mapping(path)
    except ParamError as exc:
        raise ClaimsFileError(f"claims registry {exc}") from None


def load_registry(path: Path) -> list[dict]:
    """The claims of ``path`` and of the files its ``include:`` list names (relative to it; the paper's table
    cells live in ``params/paper_tables.yaml``), validated."""
    path = Path(path)
    data = _read(path)
    claims = data.get("claims")
    if not isinstance(claims, list) or not claims:
        raise ClaimsFileError(f"{path}: expected a top-level 'claims:' list")
    for inc in data.get("include") or []:
        sub = _read(path.parent / inc)
        more = sub.get("claims")
        if not isinstance(more, list):
            raise ClaimsFileError(f"{path.parent / inc} (included by {path.name}): expected a 'claims:' list")
        claims = claims + more
    seen = set()
    for i, c in enumerate(claims):
        where = f"{path}: claim #{i + 1} ({c.get('id', '?') if isinstance(c, dict) else c!r})"
        if not isinstance(c, dict):
            raise ClaimsFileError(f"{where}: must be a mapping")
        unknown = set(c) - _FIELDS
        if unknown:
            raise ClaimsFileError(f"{where}: unknown field(s) {sorted(unknown)}")
        for req in ("id", "text", "paper"):
            if req not in c:
                raise ClaimsFileError(f"{where}: missing {req!r}")
        if c["id"] in seen:
            raise ClaimsFileError(f"{where}: duplicate id")
        seen.add(c["id"])
        if ("compute" in c) == ("not_recomputable" in c):
            raise ClaimsFileError(f"{where}: give exactly one of 'compute' or 'not_recomputable'")
        if "compute" in c and ("decimals" in c) == ("sig" in c):
            raise ClaimsFileError(f"{where}: give exactly one of 'decimals' or 'sig' (printed precision)")
        if c.get("kind", "recomputed") not in ("recomputed", "reported"):
            raise ClaimsFileError(f"{where}: kind must be 'recomputed' or 'reported'")
    return claims


def resolve(spec: str):
    """``experiments.grid.marginal_pct`` -> lenslib.experiments.grid.marginal_pct (only lenslib functions
    may be named)."""
    module, _, name = spec.rpartition(".")
    if not module or not name:
        raise ClaimsFileError(f"compute {spec!r}: expected module.function inside lenslib")
    try:
        mod = importlib.import_module(f"lenslib.{module}")
    except ModuleNotFoundError:
        raise ClaimsFileError(f"compute {spec!r}: there is no module lenslib.{module}") from None
    try:
        return getattr(mod, name)
    except AttributeError:
        raise ClaimsFileError(f"compute {spec!r}: lenslib.{module} has no function {name!r}") from None


def half_unit(claim: dict) -> float:
    """Half a unit in the last printed place of the paper value."""
    if "decimals" in claim:
        return 0.5 * 10.0 ** (-int(claim["decimals"]))
    paper = abs(float(claim["paper"]))
    exponent = math.floor(math.log10(paper)) if paper > 0 else 0
    return 0.5 * 10.0 ** (exponent - int(claim["sig"]) + 1)


def evaluate(claim: dict, art: D06Artefacts) -> ClaimResult:
    precision = f"{claim['decimals']} dp" if "decimals" in claim else (
        f"{claim['sig']} sf" if "sig" in claim else "")
    base = dict(id=claim["id"], text=claim["text"], paper=claim["paper"], unit=claim.get("unit", ""),
                precision=precision, kind=claim.get("kind", "recomputed"), source=claim.get("source", ""))
    if "not_recomputable" in claim:
        return ClaimResult(**base, computed=None, status="not_recomputable", detail=claim["not_recomputable"])
    try:
        value = float(resolve(claim["compute"])(art, **(claim.get("args") or {})))
    except NotInTheseArtefacts as exc:  # an object of the authors' run that this run does not have
        return ClaimResult(**base, computed=None, status="not_recomputable", detail=f"on these artefacts: {exc}")
    except LenslibError as exc:
        return ClaimResult(**base, computed=None, status="error", detail=str(exc))
    except (LookupError, ValueError, ArithmeticError) as exc:  # the artefacts lack what the claim needs
        return ClaimResult(**base, computed=None, status="error",
                           detail=f"{claim['compute']}({claim.get('args') or ''}): {type(exc).__name__}: {exc}")
    tol = half_unit(claim)
    diff = value - float(claim["paper"])
    ok = math.isfinite(value) and abs(diff) <= tol * (1 + 1e-9)
    detail = (f"{claim['compute']}({claim.get('args') or ''}) = {value:.6g}; "
              f"|Δ| = {abs(diff):.3g} vs tolerance {tol:.3g}")
    if claim.get("note"):
        detail += f". {claim['note']}"
    status = "agrees" if ok else ("known_discrepancy" if claim.get("known_discrepancy") else "disagrees")
    if status == "known_discrepancy":
        detail += f". Known discrepancy: {claim['known_discrepancy']}"
    return ClaimResult(**base, computed=value, status=status, detail=detail)


def evaluate_all(registry: Path, art: D06Artefacts) -> list[ClaimResult]:
    return [evaluate(c, art) for c in load_registry(registry)]


def summary(results: list[ClaimResult]) -> dict[str, Any]:
    counts = {s: sum(r.status == s for r in results) for s in STATUSES}
    return {"n_claims": len(results), **counts, "ok": counts["disagrees"] == 0 and counts["error"] == 0}

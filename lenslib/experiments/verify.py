"""Checksums of result folders: the published D06 files lenslib ships the SHA-256 of, and the artefacts a
recompute records in its ``provenance.json``; :func:`verify_folder` checks a folder against them and checks
the structure of every artefact in it (``python -m lenslib verify <results>``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lenslib import LenslibError
from lenslib._util import PARAMS_DIR, resolve_path
from lenslib.data.storage import ArtefactMissing, Store
from lenslib.experiments.artefacts import (
    BRIGHT_ARC_VARIANTS,
    GRID_CONDITIONS,
    GRID_EXTRA,
    PATHS,
    D06Artefacts,
)

#: the SHA-256 of every file of the authors' published D06 folder (``tools/d06_checksums.py`` wrote it)
PUBLISHED_CHECKSUMS = PARAMS_DIR / "d06_checksums.json"
PROVENANCE = PATHS["provenance"]


class ChecksumFileError(LenslibError, ValueError):
    """A checksum list cannot be read."""


def read_checksums(path: str | Path) -> dict[str, str]:
    """``{relative path: sha256}`` of a checksum JSON (``{"files": {path: {"sha256": ...}}}``)."""
    p = resolve_path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
        return {k: v["sha256"] for k, v in doc["files"].items()}
    except FileNotFoundError:
        raise ChecksumFileError(f"{p}: checksum file not found (parameter 'results_checksums')") from None
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as exc:
        raise ChecksumFileError(f"{p}: not a checksum list ({{'files': {{path: {{'sha256': ...}}}}}}; {exc})") from None


def recorded_checksums(store: Store) -> dict[str, str]:
    """The ``artefacts`` map a recompute wrote into the folder's ``provenance.json`` (``{}`` when there is none:
    the authors' provenance lists their code, not their results)."""
    if not store.exists(PROVENANCE):
        return {}
    try:
        doc = json.loads(store.read_bytes(PROVENANCE))
        return {k: v["sha256"] for k, v in (doc.get("artefacts") or {}).items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        return {}


def checksums_for(store: Store, checksums: str | None) -> dict[str, str]:
    """What a folder is checked against: the list at ``checksums`` (a path), else what the folder's own
    ``provenance.json`` recorded."""
    return read_checksums(checksums) if checksums else recorded_checksums(store)


def artefact_checksums(results: Path) -> dict[str, dict[str, Any]]:
    """``{relative path: {sha256, size_bytes}}`` of every file under ``results`` but ``provenance.json`` (and
    lock files and temporaries), for a recompute's ``provenance.json``."""
    out = {}
    for p in sorted(Path(results).rglob("*")):
        rel = p.relative_to(results).as_posix()
        if not p.is_file() or rel == PROVENANCE or p.name.startswith(".") or ".part" in p.name:
            continue
        data = p.read_bytes()
        out[rel] = {"sha256": hashlib.sha256(data).hexdigest(), "size_bytes": len(data)}
    return out


@dataclass
class VerifyReport:
    """What :func:`verify_folder` found. ``ok`` when nothing differs, is missing or is malformed."""

    folder: str
    against: str
    checked: int = 0
    matched: int = 0
    mismatched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unlisted: int = 0
    structure: dict[str, str] = field(default_factory=dict)  # artefact → error
    structure_checked: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.mismatched or self.missing or self.structure)

    def as_dict(self) -> dict[str, Any]:
        return {"folder": self.folder, "against": self.against, "ok": self.ok, "checked": self.checked,
                "matched": self.matched, "mismatched": self.mismatched, "missing": self.missing,
                "unlisted": self.unlisted, "structure_checked": self.structure_checked,
                "structure_errors": self.structure}


def _structure(art: D06Artefacts, report: VerifyReport) -> None:
    readers: list[tuple[str, Any]] = [(PATHS["tier_a_scoring"], art.tier_a_scoring)]
    for c in GRID_CONDITIONS + GRID_EXTRA:
        readers.append((PATHS["grid_csv"].format(condition=c), lambda c=c: art.grid(c)))
    for v in BRIGHT_ARC_VARIANTS:
        readers.append((PATHS["bright_arc"].format(variant=v), lambda v=v: art.bright_arc(v)))
    readers += [(PATHS["probe_results"], art.probe_results), (PATHS["probe_permutation"], art.probe_permutation),
                (PATHS["probe_checkpoint"], art.probe_checkpoint),
                (PATHS["poisson_diagnostics"], art.poisson_diagnostics), (PATHS["gallery_data"], art.gallery_data),
                (PATHS["gate_results"], art.gate_results), (PROVENANCE, art.provenance)]
    for key, read in readers:
        if not art.store.exists(key):
            continue
        report.structure_checked.append(key)
        try:
            read()
        except ArtefactMissing:
            continue
        except LenslibError as exc:
            report.structure[key] = str(exc)


def verify_folder(store: Store, checksums: str | None = None) -> VerifyReport:
    """Check every listed file of a results folder against its SHA-256, and the structure of every artefact.

    The list is ``checksums`` (a path) if given, else the folder's own ``provenance.json`` artefacts (a
    recompute), else the published D06 list lenslib ships (the authors' folder)."""
    sums, against = {}, ""
    if checksums:
        sums, against = read_checksums(checksums), str(resolve_path(checksums))
    if not sums:
        sums, against = recorded_checksums(store), f"{store.url(PROVENANCE)} (artefacts)"
    if not sums:
        sums, against = read_checksums(PUBLISHED_CHECKSUMS), f"{PUBLISHED_CHECKSUMS} (the published D06 files)"
    report = VerifyReport(folder=store.uri, against=against)
    present = set(store.list(""))
    for key, want in sorted(sums.items()):
        report.checked += 1
        if key not in present:
            report.missing.append(key)
            continue
        got = hashlib.sha256(store.read_bytes(key)).hexdigest()
        if got == want:
            report.matched += 1
        else:
            report.mismatched.append(key)
    report.unlisted = len([k for k in present - set(sums) if k != PROVENANCE and not Path(k).name.startswith(".")])
    _structure(D06Artefacts(store, on_mismatch="off"), report)
    return report

"""Provenance: the D06 provenance record, and SHA-256 of every artefact a run read."""

from __future__ import annotations

import json
import platform
import socket
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from lenslib._util import git_commit
from lenslib.data.storage import Store
from lenslib.experiments.artefacts import D06Artefacts


def d06_table(art: D06Artefacts) -> pd.DataFrame:
    """The files the authors hashed for D06 (code, priors, checkpoint, manifest)."""
    p = art.provenance()
    rows = [{"path": k, "sha256": v.get("sha256"), "size_bytes": v.get("size_bytes")} for k, v in p["files"].items()]
    return pd.DataFrame(rows)


def run_info() -> dict:
    return {"generated_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "hostname": socket.gethostname(), "git_commit": git_commit(),
            "python": platform.python_version(), "platform": platform.platform()}


def write_reads(store: Store, path: Path, notebook: str) -> None:
    """Record what one notebook read (uri, size, sha256)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    recs = [asdict(r) for r in sorted(store.reads.values(), key=lambda r: r.key)]
    path.write_text(json.dumps({"notebook": notebook, "store": store.uri, "reads": recs}, indent=1))


def collect_reads(reads_dir: Path) -> pd.DataFrame:
    """All artefacts read by the notebooks of a run: key, uri, size, sha256, and which notebooks read it."""
    rows = []
    for f in sorted(Path(reads_dir).glob("*.json")):
        d = json.loads(f.read_text())
        rows += [{**r, "notebook": d["notebook"]} for r in d["reads"]]
    if not rows:
        return pd.DataFrame(columns=["key", "uri", "size_bytes", "sha256", "notebooks"])
    df = pd.DataFrame(rows)
    inconsistent = df.groupby("key")["sha256"].nunique()
    if (inconsistent > 1).any():
        bad = list(inconsistent[inconsistent > 1].index)
        raise RuntimeError(f"artefacts changed between notebooks of one run: {bad}")
    return (df.groupby(["key", "uri", "size_bytes", "sha256"], as_index=False)["notebook"]
              .agg(lambda s: ", ".join(sorted(set(s)))).rename(columns={"notebook": "notebooks"}))

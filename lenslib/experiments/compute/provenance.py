"""§E.7: ``provenance.json``, the SHA-256 of every input and of lenslib's code, and where and how it ran.

The ``files`` map has the authors' layout (relative path → ``{sha256, size_bytes}``); lenslib adds the
inputs' locations (``sources``), its git commit, the device, the package versions and ``artefacts``: the
SHA-256 of every file the recompute wrote, which every later read and ``python -m lenslib verify`` check.
"""

from __future__ import annotations

import hashlib
import platform
import socket
from importlib import metadata
from pathlib import Path

import torch

from lenslib._util import REPO_ROOT, git_commit, utc_now, write_json
from lenslib.experiments.verify import artefact_checksums

PACKAGES = ("lenslib", "numpy", "scipy", "pandas", "pyarrow", "astropy", "torch", "scikit-learn", "statsmodels",
            "boto3", "lenstronomy")


def _versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def write_provenance(results: Path, inputs_files: dict[str, dict], *, device: str, params: dict | None = None) -> dict:
    """Write ``results/provenance.json``: the inputs (manifest, checkpoint, priors, configs) and every lenslib
    source file, each with its SHA-256 and size."""
    files = {f"inputs/{name}": {"sha256": f["sha256"], "size_bytes": f["size_bytes"]}
             for name, f in sorted(inputs_files.items())}
    for path in sorted((REPO_ROOT / "lenslib").rglob("*.py")):
        data = path.read_bytes()
        files[path.relative_to(REPO_ROOT).as_posix()] = {"sha256": hashlib.sha256(data).hexdigest(),
                                                         "size_bytes": len(data)}
    doc = {"generated_utc": utc_now(), "hostname": socket.gethostname(), "files": files,
           "sources": {name: f["uri"] for name, f in sorted(inputs_files.items())},
           "git_commit": git_commit(), "device": device,
           "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
           "python": platform.python_version(), "packages": _versions(), "parameters": params or {},
           "artefacts": artefact_checksums(results)}
    write_json(results / "provenance.json", doc)
    return doc

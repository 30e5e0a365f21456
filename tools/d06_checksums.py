"""Write ``params/d06_checksums.json``: the SHA-256 of every file of the authors' published D06 folder.

Run once from the real files (``python tools/d06_checksums.py ../shared/data/d06``); the published profile
then checks every artefact it reads against this list (``results_checksums``, ``results_verify``).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "params" / "d06_checksums.json"


def main(folder: str) -> None:
    root = Path(folder)
    files = {p.relative_to(root).as_posix(): {"sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
                                              "size_bytes": p.stat().st_size}
             for p in sorted(root.rglob("*")) if p.is_file()}
    doc = {"description": "SHA-256 of every file of the authors' published D06 results (results/"
                          "D06_corrected_priors/), computed from the real files", "files": files}
    OUT.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n")
    print(f"{len(files)} files → {OUT}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/d06")

"""Private helpers every layer may use: the project's folders, YAML files, atomic writes.

Nothing here knows about surveys, lenses or notebooks; it sits at the bottom of the import graph
beside :mod:`lenslib.survey` and :mod:`lenslib.stats`.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from lenslib import ParamError

# the repository (a checkout, or an editable install of one)
REPO_ROOT = Path(__file__).resolve().parent.parent
PARAMS_DIR = REPO_ROOT / "params"
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
EXECUTED_DIR = REPO_ROOT / "book" / "executed"
BUILD_DIR = REPO_ROOT / "_build"
TOC = REPO_ROOT / "_toc.yml"


def resolve_path(value: str | os.PathLike) -> Path:
    """A relative path (in a profile or a config) is relative to the repository root; ``~`` is expanded."""
    p = Path(value).expanduser()
    return p if p.is_absolute() else (REPO_ROOT / p)


def read_yaml_mapping(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML file that must hold a mapping; every error names the file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ParamError(f"{path}: file not found") from None
    except yaml.YAMLError as exc:
        raise ParamError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ParamError(f"{path}: must hold a mapping of parameter: value, got {type(data).__name__}")
    return data


@contextmanager
def atomic_write(path: str | os.PathLike, suffix: str = "", *, unique: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without error it is renamed onto ``path``.

    A kill or an exception never leaves a half-written file under the real name; on an exception the
    temporary is removed. The temporary is ``<name>.part`` plus ``suffix`` (for writers that insist on
    an extension, such as ``np.savez``'s ``.npz``), so what a killed writer left is overwritten by the
    next writer of the same file. ``unique=True`` adds the process and thread ids to the name, for
    files that several threads may write at once (the last rename wins)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tag = f".{os.getpid()}.{threading.get_ident()}" if unique else ""
    tmp = path.with_name(f"{path.name}{tag}.part{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: str | os.PathLike, obj: Any, *, allow_nan: bool = True) -> Path:
    """JSON as the authors' result files are written (indent 2, no final newline; NaN literals unless
    ``allow_nan`` is false), through :func:`atomic_write`."""
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, allow_nan=allow_nan))
    return Path(path)


def write_bytes_atomic(path: str | os.PathLike, data: bytes, *, unique: bool = False) -> Path:
    """Write ``data`` to ``path`` through :func:`atomic_write`."""
    with atomic_write(path, unique=unique) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def utc_now() -> str:
    """ISO-8601 UTC time of now, or of ``SOURCE_DATE_EPOCH`` (seconds) when that is set: with it, runs with the
    same parameters write byte-identical artefacts, timestamps included (the reproducible-builds convention)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = datetime.fromtimestamp(int(epoch), timezone.utc) if epoch else datetime.now(timezone.utc)
    return when.isoformat()


def git_commit() -> str:
    """The commit of the lenslib checkout (``"unknown"`` outside a git checkout)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def shown_path(value: Any, root: Path = REPO_ROOT) -> Any:
    """``value`` as a page may show it: an absolute path under ``root`` becomes relative, any other absolute path
    is reduced to ``…/<name>``; anything else is returned as is (lists element-wise)."""
    if isinstance(value, list):
        return [shown_path(v, root) for v in value]
    if not isinstance(value, str) or not os.path.isabs(value):
        return value
    p = Path(value)
    try:
        return p.resolve().relative_to(Path(root).resolve()).as_posix() or "."
    except ValueError:
        return f"…/{p.name}"

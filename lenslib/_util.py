"""Private helpers every layer may use: the project's folders, YAML files, atomic writes.

Nothing here knows about surveys, lenses or notebooks; it sits at the bottom of the import graph
beside :mod:`lenslib.survey` and :mod:`lenslib.stats`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from lenslib import LenslibError, ParamError


class WriteFailed(LenslibError, OSError):
    """A file could not be written (disk full, read-only, no permission): the message names the file."""


_WRITE_HINTS = {28: "the disk is full", 122: "the disk quota is exceeded", 30: "the file system is read-only",
                13: "permission denied", 1: "operation not permitted"}


def _write_failed(path: Path, exc: BaseException) -> WriteFailed:
    err = getattr(exc, "errno", None)
    why = _WRITE_HINTS.get(err) or getattr(exc, "strerror", None)
    if not why:  # a library's own message (torch.save: "[enforce fail ...] unexpected pos"): look at the disk
        try:
            free = shutil.disk_usage(next(p for p in (path.parent, *path.parents) if p.exists())).free
        except (OSError, StopIteration):
            free = None
        why = (f"the disk is full ({free // 1024} kB free)" if free is not None and free < (4 << 20)
               else str(exc).strip().splitlines()[0][:160])
    out = WriteFailed(f"cannot write {path}: {why}; nothing already written was changed (free space or choose "
                      f"another output folder, then rerun: it resumes)")
    out.errno = err
    return out

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
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ParamError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise ParamError(f"{path}: is a directory, not a YAML file") from None
    except UnicodeDecodeError as exc:
        raise ParamError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason}); save it as UTF-8") from None
    except OSError as exc:
        raise ParamError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise ParamError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ParamError(f"{path}: must hold a mapping of parameter: value, got {type(data).__name__}")
    return data


@contextmanager
def atomic_write(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without error it is renamed onto ``path``.

    A kill or an exception never leaves a half-written file under the real name; on an exception the
    temporary is removed. The temporary is ``<name>.<pid>.<thread>.part`` plus ``suffix`` (for writers that
    insist on an extension, such as ``np.savez``'s ``.npz``): unique per process and thread, so two writers
    never share one (the last rename wins). What a killed writer left is removed by the next job that locks
    the folder (:func:`lenslib._lock.remove_stale_temporaries`)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _write_failed(path.parent, exc) from None
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.part{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except WriteFailed:
        raise
    except OSError as exc:  # the disk is full, read-only, ...: name the file, not the temporary
        raise _write_failed(path, exc) from None
    except RuntimeError as exc:  # torch.save on a full disk: "[enforce fail at inline_container.cc] ... write"
        if "enforce fail" in str(exc) or "write" in str(exc).lower():
            raise _write_failed(path, exc) from None
        raise
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass


def write_json(path: str | os.PathLike, obj: Any, *, allow_nan: bool = True) -> Path:
    """JSON as the authors' result files are written (indent 2, no final newline; NaN literals unless
    ``allow_nan`` is false), through :func:`atomic_write`."""
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, allow_nan=allow_nan))
    return Path(path)


ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest zip timestamp: a file does not depend on when it was written


def write_npz(path: str | os.PathLike, arrays: Mapping[str, Any], *, compress: bool = False,
              allow_pickle: bool = False) -> Path:
    """``np.savez`` (``compress``: ``np.savez_compressed``) with fixed zip timestamps, so equal arrays give
    equal bytes, through :func:`atomic_write`. Object arrays need ``allow_pickle``, as in ``np.save``."""
    import io
    import zipfile

    import numpy as np

    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with atomic_write(path) as tmp, zipfile.ZipFile(tmp, "w", compression=method, allowZip64=True) as zf:
        for name, value in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=ZIP_EPOCH)
            info.compress_type = method
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asanyarray(value), allow_pickle=allow_pickle)
            zf.writestr(info, buf.getvalue())
    return Path(path)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through :func:`atomic_write`."""
    with atomic_write(path) as tmp:
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

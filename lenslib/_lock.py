"""Exclusive locks on output folders, so two jobs never write into one folder at once.

A job (a run, a recompute, a training, a scoring, a sync) holds :func:`output_lock` on the folder it
writes for as long as it runs. The lock is an ``flock`` on ``<folder>/.lenslib.lock``: the kernel drops
it when the process ends, however it ends (``kill -9`` included), so a killed job never leaves a stale
lock behind. A second job on the same folder stops at once with :class:`OutputLocked`, which names the
folder and the process that holds it. Locks are re-entrant within one process (a run that recomputes
takes the same folder twice), and a process started by a lock holder (a notebook kernel of a run) may
be told through :data:`HELD_ENV` that its parent holds them.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from lenslib import LenslibError

try:  # POSIX; on Windows locking is skipped (documented in the README)
    import fcntl
except ImportError:  # pragma: no cover - not on the CI's platform
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".lenslib.lock"
#: folders (os.pathsep-separated) whose locks the parent process holds for this one
HELD_ENV = "LENSLIB_HELD_LOCKS"
#: a temporary of :func:`lenslib._util.atomic_write`: ``<name>.<pid>.<thread>.part[.<ext>]``
TEMPORARY = re.compile(r"\.(\d+)\.(\d+)\.part(\.[A-Za-z0-9]+)?$")

_held: dict[Path, list] = {}  # folder → [open file, depth]
_guard = threading.Lock()


class OutputLocked(LenslibError, RuntimeError):
    """Another process is writing into the output folder this job was asked to write."""


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return "another process"
    if not info:
        return "another process"
    return (f"process {info.get('pid')} on {info.get('host')} ({info.get('job')}, since {info.get('started')}"
            f"{', command: ' + info['command'] if info.get('command') else ''})")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def remove_stale_temporaries(folder: Path) -> int:
    """Remove the temporaries of writers that no longer run (a killed job's ``*.<pid>.<tid>.part``) under
    ``folder``; returns how many. Temporaries of running processes are left alone."""
    n = 0
    for p in Path(folder).rglob("*.part*"):
        m = TEMPORARY.search(p.name)
        if m and p.is_file() and not _pid_alive(int(m.group(1))):
            p.unlink(missing_ok=True)
            n += 1
    return n


@contextmanager
def output_lock(folder: str | os.PathLike, job: str) -> Iterator[Path]:
    """Hold the exclusive lock on ``folder`` (created if missing) for the block.

    Raises
    ------
    OutputLocked
        Another process holds it: the message names the folder, that process and its job.
    """
    folder = Path(folder).resolve()
    if str(folder) in os.environ.get(HELD_ENV, "").split(os.pathsep) or fcntl is None:
        yield folder
        return
    with _guard:
        if folder in _held:
            _held[folder][1] += 1
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield folder
        finally:
            with _guard:
                _held[folder][1] -= 1
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputLocked(f"cannot create the output folder {folder}: {exc.strerror or exc}") from None
    path = folder / LOCK_NAME
    try:
        fh = open(path, "a+")  # noqa: SIM115 - held for the block
    except OSError as exc:
        raise OutputLocked(f"cannot write into the output folder {folder} ({path}: {exc.strerror or exc})") from None
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        who = _holder(path)
        fh.close()
        raise OutputLocked(f"the output folder {folder} is in use by {who}; wait for it to finish, or give this "
                           f"{job} another output folder") from None
    fh.seek(0)
    fh.truncate()
    fh.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "job": job,
                         "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                         "command": " ".join(sys.argv)}))
    fh.flush()
    with _guard:
        _held[folder] = [fh, 1]
    try:
        remove_stale_temporaries(folder)
        yield folder
    finally:
        with _guard:
            _held.pop(folder, None)
        try:
            fh.seek(0)
            fh.truncate()
        except OSError:
            pass
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        fh.close()


def held_folders() -> list[str]:
    """The folders this process holds locks on (for :data:`HELD_ENV` of the processes it starts)."""
    with _guard:
        return [str(p) for p in _held]

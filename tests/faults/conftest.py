"""Fixtures of the fault suite: a small synthetic survey, a tiny finder checkpoint, helpers that run the CLI,
hold a lock from another process, and give a folder that is full or read-only."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    """A synthetic survey of 30 cutouts (the bucket's layout) and its manifest."""
    from lenslib.synthetic import SurveySpec, make_survey

    root = tmp_path_factory.mktemp("faults_world")
    df = make_survey(root, SurveySpec(n_negatives=20, n_positives=10, seed=11))
    return root, df


@pytest.fixture(scope="session")
def model():
    from lenslib.finder.models import BottleneckedResNet

    torch.manual_seed(0)
    return BottleneckedResNet(base_ch=8).eval()


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory, model):
    from lenslib.finder.checkpoints import save_checkpoint

    path = tmp_path_factory.mktemp("faults_ckpt") / "m.pt"
    save_checkpoint(path, {"epoch": 1, "model": model.state_dict(), "train": {"arch": "bottlenecked_resnet",
                                                                             "base_ch": 8}})
    return path


def cli(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m lenslib ARGS`` in the repository; returns the finished process (text output)."""
    return subprocess.run([sys.executable, "-m", "lenslib", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def one_clear_line(p: subprocess.CompletedProcess, *names: str) -> str:
    """The CLI failed with a message naming each of ``names`` and no traceback."""
    assert p.returncode != 0, p.stdout[-2000:]
    assert "Traceback" not in p.stderr, p.stderr[-3000:]
    for n in names:
        assert n in p.stderr, (n, p.stderr[-2000:])
    return p.stderr


@contextmanager
def lock_held_elsewhere(folder: Path, job: str = "other job"):
    """Another process holds lenslib's lock on ``folder`` for the block; yields its pid."""
    code = textwrap.dedent(f"""
        import sys, time
        from lenslib._lock import output_lock
        with output_lock({str(folder)!r}, {job!r}):
            print("held", flush=True)
            time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        proc.kill()
        proc.wait()


def _mount_tmpfs(path: Path, options: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                          capture_output=True).returncode == 0


@pytest.fixture
def small_disk(tmp_path):
    """A folder on a 256 kB tmpfs where root can mount one (else the test skips: it needs a small disk)."""
    where = tmp_path / "small_disk"
    if not _mount_tmpfs(where, "size=256k"):
        pytest.skip("needs root to mount a small tmpfs")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder nobody can write: a read-only tmpfs as root, else a folder without write permission."""
    where = tmp_path / "read_only"
    if _mount_tmpfs(where, "size=64k,ro"):
        try:
            yield where
        finally:
            subprocess.run(["umount", "-l", str(where)], capture_output=True)
        return
    where.mkdir(exist_ok=True)
    where.chmod(0o555)
    try:
        yield where
    finally:
        where.chmod(0o755)


def wait_for(predicate, timeout: float = 60.0) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False

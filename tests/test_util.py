"""The private helpers: atomic writes, YAML mappings, repository paths."""

import os
import subprocess
import sys
import threading

import pytest

from lenslib import ParamError
from lenslib._lock import output_lock
from lenslib._util import REPO_ROOT, atomic_write, read_yaml_mapping, resolve_path, write_bytes_atomic


def test_atomic_write_renames_on_success_only(tmp_path):
    target = tmp_path / "sub" / "a.bin"
    write_bytes_atomic(target, b"first")
    with pytest.raises(RuntimeError), atomic_write(target) as tmp:
        tmp.write_bytes(b"half")
        assert target.read_bytes() == b"first"  # nothing new under the real name until the block ends
        raise RuntimeError("killed")
    assert target.read_bytes() == b"first"
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.bin"]  # the temporary is gone
    with atomic_write(target, suffix=".npz") as tmp:
        assert tmp.name == f"a.bin.{os.getpid()}.{threading.get_ident()}.part.npz" and tmp.parent == target.parent
        tmp.write_bytes(b"second")
    assert target.read_bytes() == b"second"


def test_temporaries_are_unique_per_thread_and_a_killed_writers_are_cleaned(tmp_path):
    target = tmp_path / "c.txt"
    names, together = [], threading.Barrier(4)

    def write(text):
        with atomic_write(target) as tmp:
            names.append(tmp.name)
            tmp.write_text(text)
            together.wait(timeout=10)  # all four temporaries exist at once

    threads = [threading.Thread(target=write, args=(str(k),)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(names)) == 4 and target.read_text() in {"0", "1", "2", "3"}
    # a temporary of a process that no longer runs is removed by the next job that locks the folder;
    # one of a running process (this one) is left alone
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / "sub" / f"d.bin.{int(dead.stdout)}.1.part.npz"
    stale.parent.mkdir()
    stale.write_text("left by a killed writer")
    live = tmp_path / f"e.bin.{os.getpid()}.7.part"
    live.write_text("being written")
    counterpart = tmp_path / "counterpart.txt"  # not a temporary
    counterpart.write_text("keep")
    with output_lock(tmp_path, "test"):
        pass
    assert not stale.exists() and live.exists() and counterpart.exists()


def test_read_yaml_mapping_names_the_file(tmp_path):
    f = tmp_path / "x.yaml"
    f.write_text("a: 1\nb: [2, 3]\n")
    assert read_yaml_mapping(f) == {"a": 1, "b": [2, 3]}
    f.write_text("")
    assert read_yaml_mapping(f) == {}
    for text, needle in (("a: [1", "not valid YAML"), ("- 1\n- 2\n", "must hold a mapping")):
        f.write_text(text)
        with pytest.raises(ParamError, match=f"x.yaml.*{needle}"):
            read_yaml_mapping(f)
    with pytest.raises(ParamError, match="nothere.yaml: file not found"):
        read_yaml_mapping(tmp_path / "nothere.yaml")


def test_relative_paths_are_relative_to_the_repository(tmp_path):
    assert (REPO_ROOT / "lenslib" / "__init__.py").exists()
    assert resolve_path("params/claims.yaml") == REPO_ROOT / "params" / "claims.yaml"
    assert resolve_path(tmp_path) == tmp_path
    assert resolve_path("~/x") == resolve_path(os.path.expanduser("~/x"))

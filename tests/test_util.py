"""The private helpers: atomic writes, YAML mappings, repository paths."""

import os

import pytest

from lenslib import ParamError
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
        assert tmp.name == "a.bin.part.npz" and tmp.parent == target.parent
        tmp.write_bytes(b"second")
    assert target.read_bytes() == b"second"


def test_atomic_write_leftover_is_overwritten_and_unique_names(tmp_path):
    target = tmp_path / "c.txt"
    (tmp_path / "c.txt.part").write_text("left by a killed writer")
    with atomic_write(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new" and not (tmp_path / "c.txt.part").exists()
    with atomic_write(target, unique=True) as tmp:
        assert str(os.getpid()) in tmp.name and tmp.name.endswith(".part")
        tmp.write_text("again")
    assert target.read_text() == "again"


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

"""lenslib's imports run one way: a layer imports only from the layers below it, and no modules import
each other in a cycle. Every ``import`` and ``from ... import`` in every module is read with ``ast``,
including those inside functions (imported on demand, they still couple the modules)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "lenslib"

# bottom to top; modules in one layer but different subpackages must not import each other
LAYERS: list[set[str]] = [
    {"lenslib", "lenslib._util", "lenslib._lock", "lenslib._tqdm", "lenslib.survey", "lenslib.stats"},
    {"lenslib.parallel"},
    {"lenslib.data", "lenslib.injection"},
    {"lenslib.finder"},
    {"lenslib.experiments"},
    {"lenslib.repro"},
    {"lenslib.synthetic", "lenslib.paper"},
    {"lenslib.cli"},
    {"lenslib.__main__"},
]
TOP_MODULES = {"__init__.py", "__main__.py", "_util.py", "_lock.py", "_tqdm.py", "survey.py", "stats.py", "cli.py"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def unit(module: str) -> str:
    """The layering unit of a module: its subpackage (lenslib.data, ...) or the top-level module itself."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


def layer(module: str) -> int:
    u = unit(module)
    for k, names in enumerate(LAYERS):
        if u in names:
            return k
    raise AssertionError(f"{module}: its unit {u} is in no layer of LAYERS; add it")


def imports(module: str) -> set[str]:
    """The lenslib modules that ``module`` imports (resolving ``from lenslib.x import y`` to the module
    ``lenslib.x.y`` where y is a module, else to ``lenslib.x``)."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in MODULES:  # `import lenslib.data.cutouts.x` → the module part
                name = name.rpartition(".")[0]
            if name.startswith("lenslib") and name != module and not module.startswith(name + "."):
                out.add(name)  # a module's own parent packages are imported anyway
    return out


GRAPH = {m: imports(m) for m in MODULES}


def test_every_module_is_in_a_layer_and_the_top_level_is_small():
    for m in MODULES:
        layer(m)
    top = {p.name for p in PKG.glob("*.py")}
    assert top == TOP_MODULES, f"modules at the top of lenslib/: {sorted(top)}"
    subpackages = {p.parent.name for p in PKG.glob("*/__init__.py")}
    assert subpackages == {"parallel", "data", "injection", "finder", "experiments", "repro", "synthetic", "paper"}


def test_no_import_goes_up_or_sideways():
    bad = []
    for m, targets in GRAPH.items():
        for t in targets:
            if unit(t) == unit(m):
                continue
            if layer(t) >= layer(m):
                bad.append(f"{m} imports {t} (layer {layer(m)} → {layer(t)})")
    assert not bad, "imports against the layering:\n" + "\n".join(sorted(bad))


def test_the_injection_engine_does_not_need_the_data_layer():
    assert not {t for m, ts in GRAPH.items() if m.startswith("lenslib.injection") for t in ts
                if t.startswith("lenslib.data")}


def test_no_import_cycles():
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for t in sorted(GRAPH[m]):
            if state.get(t) == 1:
                cycles.append(" → ".join(path[path.index(t):] + [t]))
            elif t not in state:
                visit(t, path + [t])
        state[m] = 2

    for m in sorted(GRAPH):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


@pytest.mark.parametrize("source, bad", [
    ("from lenslib.repro.params import resolve_path", "lenslib.repro.params"),
    ("from lenslib.experiments import grid", "lenslib.experiments.grid"),
    ("import lenslib.finder.models", "lenslib.finder.models"),
    ("from ..finder.models import build_model", "lenslib.finder.models"),
])
def test_the_import_reader_sees_upward_imports(tmp_path, monkeypatch, source, bad):
    """The checker itself: an upward import planted in a data-layer module is found, in every form."""
    fake = PKG / "data" / "storage.py"
    planted = tmp_path / "storage.py"
    planted.write_text(fake.read_text() + f"\n\ndef _planted():\n    {source}\n")
    monkeypatch.setitem(MODULES, "lenslib.data.storage", planted)
    found = imports("lenslib.data.storage")
    assert bad in found and layer(bad) > layer("lenslib.data.storage")

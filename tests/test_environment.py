"""The two install descriptions, pyproject.toml (pip) and environment.yml (conda), list the same packages."""

import re
from pathlib import Path

import tomllib
import yaml

REPO = Path(__file__).resolve().parents[1]


def _name_spec(req: str) -> tuple[str, str]:
    m = re.match(r"^\s*([A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*(.*)$", req)
    return m.group(1).lower().replace("_", "-"), m.group(3).replace(" ", "")


def test_environment_yml_and_pyproject_agree():
    proj = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pip = dict(_name_spec(r) for r in proj["dependencies"] + proj["optional-dependencies"]["test"])
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    conda_to_pip = {"pytorch": "torch"}  # conda-forge names that differ from PyPI
    conda = dict(_name_spec(d) for d in env["dependencies"] if isinstance(d, str))
    conda = {conda_to_pip.get(k, k): v for k, v in conda.items()}
    conda.pop("python"), conda.pop("pip")
    assert conda == pip

"""What a reader sees of an executed notebook: boilerplate hidden, one box saying how to rerun the page.

:func:`tidy_notebook` runs on each notebook papermill executed (``lenslib.repro.runner.execute``):

- the ``parameters`` cell and papermill's ``injected-parameters`` cell are removed from view (tag
  ``remove-cell``: they stay in the notebook, the page does not show them);
- the start-up cell (``lenslib.repro.session.start``) shows its output only (the synthetic-survey banner);
- a collapsed box *Parameters of this run and how to rerun this page* follows the title, with the exact
  ``python -m lenslib`` and papermill commands and the parameters this run used.

Paths in the box are shown relative to the repository (a page must not show the build machine's folders).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nbformat

from lenslib._util import shown_path

__all__ = ["shown_path", "rerun_markdown", "tidy_notebook", "RERUN_TITLE"]

RERUN_TITLE = "Parameters of this run and how to rerun this page"
_HIDDEN = ("parameters", "injected-parameters")


def _profile_name(params: dict[str, Any]) -> str:
    return Path(str(params.get("profile", "demo"))).stem


def rerun_markdown(name: str, params: dict[str, Any], overrides: dict[str, Any] | None = None) -> str:
    """The collapsed box: commands to rerun ``notebooks/<name>.md`` with this profile, and the parameters."""
    profile = _profile_name(params)
    sets = "".join(f" --set {k}={json.dumps(shown_path(v)) if not isinstance(v, str) else shown_path(v)}"
                   for k, v in (overrides or {}).items())
    pm = "".join(f" -p {k} {json.dumps(shown_path(v)) if not isinstance(v, str) else shown_path(v)}"
                 for k, v in (overrides or {}).items())
    rows = "\n".join(f"| `{k}` | `{json.dumps(shown_path(v), ensure_ascii=False)}` |"
                     for k, v in sorted(params.items()))
    return f"""```{{dropdown}} {RERUN_TITLE}
This page is `notebooks/{name}.md`, executed by papermill with the profile **`{profile}`**
(`params/{profile}.yaml`).

Rerun this page only (then the book):

    python -m lenslib run --profile {profile}{sets} --only {name}

The same with papermill, by hand (papermill reads `.ipynb`; jupytext converts the MyST source):

    jupytext --to ipynb notebooks/{name}.md -o {name}.ipynb
    papermill {name}.ipynb {name}.out.ipynb -f params/{profile}.yaml{pm}

Or open it in Jupyter (jupytext opens the `.md` as a notebook) and run it top to bottom:
`jupyter lab notebooks/{name}.md`. It runs the default profile `demo` (computed on first use, then reused); to
see this build's numbers, set `profile = "{profile}"` and the parameters this run changed in its first cell.

| parameter | value in this run |
| --- | --- |
{rows}
```"""


def tidy_notebook(path: Path, name: str, params: dict[str, Any], overrides: dict[str, Any] | None = None) -> None:
    """Hide the parameter and start-up cells of the executed notebook at ``path`` and add the rerun box."""
    nb = nbformat.read(path, as_version=4)
    cells = [c for c in nb.cells if c.get("metadata", {}).get("lenslib") != "rerun"]
    for c in cells:
        tags = c.setdefault("metadata", {}).setdefault("tags", [])
        if any(t in tags for t in _HIDDEN) and "remove-cell" not in tags:
            tags.append("remove-cell")
        elif c.cell_type == "code" and c.source.strip() == "S.finish()":  # the closing bookkeeping cell
            if "remove-cell" not in tags:
                tags.append("remove-cell")
        elif c.cell_type == "code" and c.source.strip() == "S.paper_tables()":  # its tables, not its call
            if "remove-input" not in tags:
                tags.append("remove-input")
        elif c.cell_type == "code" and "lenslib.repro.session.start(" in c.source:
            tag = "remove-input" if c.get("outputs") else "remove-cell"
            if tag not in tags:
                tags.append(tag)
    box = nbformat.v4.new_markdown_cell(rerun_markdown(name, params, overrides))
    box.metadata["lenslib"] = "rerun"
    first_md = next((i for i, c in enumerate(cells) if c.cell_type == "markdown"), -1)
    cells.insert(first_md + 1, box)
    nb.cells = cells
    nbformat.write(nb, path)

"""Run the book: execute the notebooks of ``_toc.yml`` with papermill, then ``jupyter-book build``.

Notebooks are stored as jupytext MyST files in ``notebooks/``; each is executed into
``book/executed/<name>.ipynb`` (where ``_toc.yml`` points) with the validated profile as its
parameters. A failing notebook stops the run with the notebook and cell named; its executed
copy is kept for inspection, and what earlier notebooks wrote stays in place.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from tqdm.auto import tqdm

from lenslib import LenslibError
from lenslib._util import BUILD_DIR, EXECUTED_DIR, NOTEBOOKS_DIR, REPO_ROOT, TOC, resolve_path


class NotebookFailed(LenslibError):
    """A notebook raised while executing."""


class BookBuildFailed(LenslibError):
    """jupyter-book build exited with an error."""


def _toc_files(node: Any) -> list[str]:
    out = []
    if isinstance(node, dict):
        if "file" in node:
            out.append(node["file"])
        for key in ("parts", "chapters", "sections"):
            for child in node.get(key, []) or []:
                out += _toc_files(child)
    elif isinstance(node, list):
        for child in node:
            out += _toc_files(child)
    return out


def notebook_names(toc: Path = TOC) -> list[str]:
    """Names of the executed notebooks listed in ``_toc.yml``, in book order."""
    files = _toc_files(yaml.safe_load(toc.read_text()))
    prefix = EXECUTED_DIR.relative_to(REPO_ROOT).as_posix() + "/"
    return [f[len(prefix):] for f in files if f.startswith(prefix)]


INLINE_BACKEND = "module://matplotlib_inline.backend_inline"


@contextmanager
def _inline_figures() -> Iterator[None]:
    """Kernels started inside show their figures inline, as the book needs, even where ``MPLBACKEND``
    is set for headless scripts (the kernel inherits this process's environment)."""
    old = os.environ.get("MPLBACKEND")
    os.environ["MPLBACKEND"] = INLINE_BACKEND
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MPLBACKEND", None)
        else:
            os.environ["MPLBACKEND"] = old


def execute(name: str, params: dict[str, Any], kernel: str = "python3") -> Path:
    """Execute ``notebooks/<name>.md`` with papermill into ``book/executed/<name>.ipynb``."""
    import jupytext
    import papermill
    from papermill.exceptions import PapermillExecutionError

    src = NOTEBOOKS_DIR / f"{name}.md"
    if not src.exists():
        raise NotebookFailed(f"notebook source {src} does not exist (listed in {TOC.name})")
    out = EXECUTED_DIR / f"{name}.ipynb"
    out.parent.mkdir(parents=True, exist_ok=True)
    nb = jupytext.read(src)
    # lenslib.repro.session validates the parameters itself; papermill's "unknown parameter" notes are noise here
    logging.getLogger("papermill").setLevel(logging.ERROR)
    try:
        with _inline_figures():
            papermill.execute_notebook(nb, str(out), parameters=params, kernel_name=kernel, cwd=str(REPO_ROOT),
                                       progress_bar=False, log_output=False, report_mode=False)
    except PapermillExecutionError as exc:
        raise NotebookFailed(
            f"notebook {name} failed in cell {exc.cell_index} (execution count {exc.exec_count}): "
            f"{exc.ename}: {exc.evalue}\n  the executed notebook is kept at {out}"
        ) from None
    return out


def build_book(output_dir: Path | None = None) -> Path:
    """``jupyter-book build`` of the repository (execution off); copies the run's gallery into the site."""
    exe = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(exe) if exe.exists() else "jupyter-book", "build", str(REPO_ROOT), "--builder", "html"]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = (proc.stdout + proc.stderr).splitlines()
        errors = [ln for ln in lines if "error" in ln.lower() and not ln.lstrip().startswith("File ")][:10]
        raise BookBuildFailed(f"jupyter-book build failed (exit {proc.returncode}):\n"
                              + "\n".join(errors or lines[-20:]))
    html = BUILD_DIR / "html"
    if output_dir is not None and (output_dir / "gallery").is_dir():
        shutil.copytree(output_dir / "gallery", html / "gallery", dirs_exist_ok=True)
    if output_dir is not None and (output_dir / "paper").is_dir():  # the PDFs the book links, and thumbnails
        (html / "paper").mkdir(exist_ok=True)
        for f in [*(output_dir / "paper").glob("*.pdf"), *(output_dir / "paper").glob("*_p1.png")]:
            shutil.copy2(f, html / "paper" / f.name)
    return html


def select_notebooks(only: str | None = None) -> list[str]:
    """The notebooks a run executes: all of them, or ``only`` (an unknown name is an error, raised before any
    work starts)."""
    names = notebook_names()
    if only is None:
        return names
    if only not in names:
        raise NotebookFailed(f"--only {only!r}: no such notebook; notebooks are: {', '.join(names)}")
    return [only]


def run(params: dict[str, Any], only: str | None = None, book: bool = True, log=print) -> dict:
    """Execute the notebooks (all, or ``only`` one) and build the book. Returns timings.

    With ``recompute: true`` the experiments are computed (or resumed) first, and the notebooks read their
    artefacts (``<output_dir>/results``) instead of published ones."""
    from lenslib.repro.recompute import ensure_results

    names = select_notebooks(only)
    t0, steps = time.perf_counter(), {}
    params = ensure_results(params, log=log, timings=steps)
    recompute_s = time.perf_counter() - t0
    timings: dict[str, float] = {"recompute": recompute_s} if params["recompute"] else {}
    timings.update({f"recompute: {k}": v for k, v in steps.items()})
    for name in tqdm(names, desc=f"notebooks ({params['profile']})", unit="nb", file=sys.stderr):
        t0 = time.perf_counter()
        execute(name, params)
        timings[name] = time.perf_counter() - t0
    if book:
        missing = [n for n in notebook_names() if not (EXECUTED_DIR / f"{n}.ipynb").exists()]
        if missing:
            log(f"book not built: notebooks not executed yet: {', '.join(missing)}")
        else:
            t0 = time.perf_counter()
            html = build_book(resolve_path(params["output_dir"]))
            timings["jupyter-book build"] = time.perf_counter() - t0
            log(f"book: {html / 'index.html'}")
    log(f"outputs: {resolve_path(params['output_dir'])}")
    return timings

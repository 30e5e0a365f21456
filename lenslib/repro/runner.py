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

from lenslib import LenslibError
from lenslib._tqdm import tqdm
from lenslib._util import BUILD_DIR, EXECUTED_DIR, NOTEBOOKS_DIR, REPO_ROOT, TOC, resolve_path


class NotebookFailed(LenslibError):
    """A notebook raised while executing."""


class BookBuildFailed(LenslibError):
    """jupyter-book build exited with an error."""


def _toc_files(node: Any) -> list[str]:
    out = []
    if isinstance(node, dict):
        if "root" in node:
            out.append(node["root"])
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


#: the environment of the kernels that execute the book: figures inline (even where ``MPLBACKEND`` is set for
#: headless scripts), no progress bars (a page would show them as stderr; the run's own bar counts notebooks)
KERNEL_ENV = {"MPLBACKEND": INLINE_BACKEND, "TQDM_DISABLE": "1"}


@contextmanager
def _kernel_env() -> Iterator[None]:
    """Kernels inherit this process's environment: set :data:`KERNEL_ENV` while they run (and tell them which
    output folders this run holds the locks of, so that a kernel writing into them is not refused)."""
    from lenslib._lock import HELD_ENV, held_folders

    env = {**KERNEL_ENV, HELD_ENV: os.pathsep.join(held_folders())}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


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
        with _kernel_env():  # the kernel's own log (its "TCP without encryption" notice) is kept off the console
            papermill.execute_notebook(nb, str(out), parameters=params, kernel_name=kernel, cwd=str(REPO_ROOT),
                                       progress_bar=False, log_output=False, report_mode=False,
                                       extra_arguments=["--IPKernelApp.log_level=ERROR"])
    except PapermillExecutionError as exc:
        raise NotebookFailed(
            f"notebook {name} failed in cell {exc.cell_index} (execution count {exc.exec_count}): "
            f"{exc.ename}: {exc.evalue}\n  the executed notebook is kept at {out}"
        ) from None
    from lenslib.repro.pages import tidy_notebook

    tidy_notebook(out, name, params, _overrides(params))
    return out


#: jupyter-book's own build folder (doctrees and HTML of the latest build); each profile's book is copied out of it
WORK_DIR = BUILD_DIR / ".work"


def book_dir(profile: str) -> Path:
    """Where the book of a profile lands: ``_build/<profile>/`` (books of different profiles sit side by side)."""
    return BUILD_DIR / Path(str(profile)).stem


def _overrides(params: dict[str, Any]) -> dict[str, Any]:
    """The parameters of this run that differ from its profile file (the ``--set`` values), for the rerun box."""
    from lenslib.repro import params as P

    try:
        base = P.load(str(params.get("profile_file") or params["profile"]))
    except LenslibError:
        return {}
    return {k: v for k, v in params.items() if k not in ("profile", "profile_file") and base.get(k) != v}


def build_book(output_dir: Path | None = None, profile: str = "demo", banner: str | None = None) -> Path:
    """``jupyter-book build`` of the repository (execution off) into :func:`book_dir`; copies the run's gallery,
    tables, figures and PDFs into the site. ``banner`` is shown at the top of every page (which profile built the
    book). Returns the book's folder (open its ``index.html``)."""
    exe = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(exe) if exe.exists() else "jupyter-book", "build", str(REPO_ROOT), "--builder", "html",
           "--path-output", str(WORK_DIR)]
    env = {**os.environ, "LENSLIB_BOOK_BANNER": banner or f"This book shows profile “{Path(str(profile)).stem}”."}
    if WORK_DIR.exists():  # a fresh build: the banner and the pages of another profile must not be reused
        shutil.rmtree(WORK_DIR)
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        lines = (proc.stdout + proc.stderr).splitlines()
        errors = [ln for ln in lines if "error" in ln.lower() and not ln.lstrip().startswith("File ")][:10]
        raise BookBuildFailed(f"jupyter-book build failed (exit {proc.returncode}):\n"
                              + "\n".join(errors or lines[-20:]))
    html = book_dir(profile)
    if html.exists():
        shutil.rmtree(html)
    shutil.copytree(WORK_DIR / "_build" / "html", html)
    if output_dir is not None and (output_dir / "gallery").is_dir():
        shutil.copytree(output_dir / "gallery", html / "gallery", dirs_exist_ok=True)
    for sub in ("tables", "figures"):  # the pages' download links (lenslib.repro.views.DOWNLOADS)
        if output_dir is not None and (output_dir / sub).is_dir():
            shutil.copytree(output_dir / sub, html / "downloads" / sub, dirs_exist_ok=True)
    if output_dir is not None and (output_dir / "paper").is_dir():  # the PDFs the book links, and thumbnails
        (html / "paper").mkdir(exist_ok=True)
        for f in [*(output_dir / "paper").glob("*.pdf"), *(output_dir / "paper").glob("*_p1.png")]:
            shutil.copy2(f, html / "paper" / f.name)
    return html


#: the book's first page, executed last: it shows what the other chapters wrote (claims tally, PDFs)
FIRST_PAGE = "index"


def select_notebooks(only: str | None = None) -> list[str]:
    """The notebooks a run executes, in execution order (book order, the first page last): all of them, or
    ``only`` (an unknown name is an error, raised before any work starts)."""
    names = notebook_names()
    if only is None:
        return [n for n in names if n != FIRST_PAGE] + [n for n in names if n == FIRST_PAGE]
    if only not in names:
        raise NotebookFailed(f"--only {only!r}: no such notebook; notebooks are: {', '.join(names)}")
    return [only]


def run(params: dict[str, Any], only: str | None = None, book: bool = True, log=print) -> dict:
    """Execute the notebooks (all, or ``only`` one) and build the book. Returns timings.

    With ``recompute: true`` the experiments are computed (or resumed) first, and the notebooks read their
    artefacts (``<output_dir>/results``) instead of published ones. The run holds the locks of ``output_dir``
    and of ``book/executed/`` (one run at a time per checkout executes notebooks): a second run stops at once,
    naming the folder and the process."""
    from lenslib._lock import output_lock

    with output_lock(resolve_path(params["output_dir"]), "run"), output_lock(EXECUTED_DIR, "run"):
        return _run(params, only=only, book=book, log=log)


def _run(params: dict[str, Any], only: str | None, book: bool, log) -> dict:
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
            from lenslib.repro.views import profile_sentence

            html = build_book(resolve_path(params["output_dir"]), params["profile"], profile_sentence(params))
            timings["jupyter-book build"] = time.perf_counter() - t0
            log(f"book: {html / 'index.html'}")
    log(f"outputs: {resolve_path(params['output_dir'])}")
    return timings

"""What a notebook calls first: its parameters, the artefacts, and where its outputs go.

In a notebook::

    profile = "published"          # the papermill "parameters" cell
    # (papermill injects the profile's values here)
    S = lenslib.repro.session.start(globals(), "02_selection_function")

``start`` takes the names papermill injected (anything in the namespace that is not a module,
a function, a class or an IPython name), merges them over ``params/<profile>.yaml`` and
validates them, so an unknown or mistyped parameter stops the notebook with a clear message.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd

from lenslib._util import write_bytes_atomic
from lenslib.data.storage import Store
from lenslib.repro import params as P
from lenslib.repro import views
from lenslib.repro.provenance import write_reads

_IPYTHON_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "open"}

# Printed precision per table (decimals) for the LaTeX copies; the CSVs keep full precision.
TEX_DECIMALS = {"tier_a_recall": 1, "grid_thresholds": 2, "grid_theta_e": 2, "bright_arc": 1,
                "poisson_theta_e": 2, "poisson_paired": 3, "linear_probe": 3}


def _injected(namespace: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for name, value in namespace.items():
        if name.startswith("_") or name in _IPYTHON_NAMES:
            continue
        if isinstance(value, ModuleType) or inspect.isroutine(value) or inspect.isclass(value):
            continue
        out[name] = value
    return out


class Session:
    """Parameters, the artefact reader and the output folders of one notebook execution."""

    def __init__(self, params: dict[str, Any], notebook: str, store: Store | None = None):
        self.params = params
        self.notebook = notebook
        self.store = store or P.open_param_store(params, "results_uri")
        self.art = P.open_artefacts(params, self.store)
        self.out = P.resolve_path(params["output_dir"])
        for sub in ("tables", "figures", "provenance/reads"):
            (self.out / sub).mkdir(parents=True, exist_ok=True)

    def data_file(self, key: str) -> Path:
        """A local path for the file parameter ``key``: the file itself when it exists (relative to the
        repository), the copy a recompute into ``output_dir`` read (``finder_checkpoint``), else a copy of the
        key under ``data_uri`` (kept under ``<output_dir>/cache/``)."""
        value = self.params[key]
        local = P.resolve_path(value)
        if local.is_file():
            return local
        if key == "finder_checkpoint" and self.params.get("recompute"):
            from lenslib.repro.recompute import recomputed_checkpoint  # heavy imports: only where a run recomputes

            used = recomputed_checkpoint(self.params)
            if used is not None:
                return used
        data = P.open_param_store(self.params, "data_uri").read_bytes(value)
        return write_bytes_atomic(self.out / "cache" / value.lstrip("/"), data)

    # outputs ---------------------------------------------------------------
    def save_table(self, df: pd.DataFrame, table_id: str, decimals: int | None = None) -> pd.DataFrame:
        """Write ``tables/<id>.csv`` (full precision) and ``tables/<id>.tex`` (printed precision)."""
        df.to_csv(self.out / "tables" / f"{table_id}.csv", index=False)
        d = TEX_DECIMALS.get(table_id, 3) if decimals is None else decimals
        tex = views.latex_table(df, d)
        (self.out / "tables" / f"{table_id}.tex").write_text(tex, encoding="utf-8")
        self._touch_reads()
        return df

    def show_table(self, df: pd.DataFrame, table_id: str, decimals: int | None = None, caption: str = "",
                   max_rows: int = 400) -> None:
        """Save the table (:meth:`save_table`) and show it: no index, numbers at a readable precision, download
        links for the CSV and LaTeX copies (at most ``max_rows`` rows on the page; the files have all)."""
        self.save_table(df, table_id, decimals)
        _display_html(views.table_html(df, caption=caption, max_rows=max_rows) + views.downloads_html(
            [(f"tables/{table_id}.csv", "CSV"), (f"tables/{table_id}.tex", "LaTeX")]))

    def html(self, text: str, table_id: str | None = None) -> None:
        """Show an HTML fragment made by lenslib (with the download links of a saved table ``table_id``)."""
        if table_id:
            text += views.downloads_html([(f"tables/{table_id}.csv", "CSV"), (f"tables/{table_id}.tex", "LaTeX")])
        _display_html(text)

    def figure(self, fig, figure_id: str, caption: str = "", number: str = "") -> None:
        """Save the figure (:meth:`save_figure`), show it with its caption and download links, and close it
        (returns nothing, so a cell ending with it shows no file list)."""
        import matplotlib.pyplot as plt

        paths = self.save_figure(fig, figure_id)
        _display_figure(fig)
        plt.close(fig)
        _display_html(views.caption_html(number, caption) + views.downloads_html(
            [(f"figures/{p.name}", p.suffix.lstrip(".").upper()) for p in paths]))

    def paper_tables(self) -> None:
        """Where this page's numbers come from, then each paper table of this page with this run's values beside the
        printed ones (``params/paper_tables.yaml``; each number links to its claim on the claims page)."""
        from lenslib.repro import claims as C
        from lenslib.repro import paper_tables as T

        tables = T.tables_for_page(self.tables_file, self.notebook)
        wanted = T.needed_claims(tables)
        registry = [c for c in C.load_registry(P.resolve_path(self.params["claims_file"])) if c["id"] in wanted]
        results = T.results_by_id([C.evaluate(c, self.art) for c in registry])
        _display_html(views.source_box(self.params, list(results.values())))
        if tables:
            _display_html(T.legend_html() + "".join(T.render(t, results) for t in tables))

    def build_box(self) -> None:
        """The first page's box: this book's profile and commit, the paper's numbers tallied on this run (from the
        claims chapter's ``claims.json``) and the PDFs built beside the book."""
        from lenslib._util import git_commit

        claims_json = self.out / "claims.json"
        claims = json.loads(claims_json.read_text())["summary"] if claims_json.is_file() else None
        pdfs = [(f"paper/{n}.pdf", views.PDF_TITLES[n]) for n in views.built_pdfs(self.out / "paper")]
        _display_html(views.build_html(self.params, git_commit(), pdfs, claims))

    @property
    def tables_file(self) -> Path:
        return P.resolve_path(self.params["claims_file"]).parent / "paper_tables.yaml"

    def save_figure(self, fig, figure_id: str) -> list[Path]:
        """Write the figure in every format of ``figure_formats``."""
        paths = []
        for fmt in self.params["figure_formats"]:
            path = self.out / "figures" / f"{figure_id}.{fmt}"
            fig.savefig(path, dpi=self.params["figure_dpi"], bbox_inches="tight")
            paths.append(path)
        self._touch_reads()
        return paths

    def save_json(self, obj: Any, name: str) -> Path:
        path = self.out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(obj, indent=1, default=float))
        self._touch_reads()
        return path

    def finish(self) -> None:
        """Write the final read log of this notebook (call in the last cell)."""
        self._touch_reads()

    def _touch_reads(self) -> None:
        """Keep this notebook's read log current, so a later failure still leaves it."""
        write_reads(self.store, self.out / "provenance" / "reads" / f"{self.notebook}.json", self.notebook)


def start(namespace: Mapping[str, Any], notebook: str) -> Session:
    """Validate the notebook's (papermill-injected) parameters and open the artefacts."""
    injected = _injected(namespace)
    profile = injected.get("profile")
    if not isinstance(profile, str):
        raise P.ParamError(f"notebook {notebook}: parameter 'profile' must name a params file, got {profile!r}")
    path = P.profile_path(injected.get("profile_file") or profile)
    base = P.read_yaml_mapping(path)
    P.validate(base, source=str(path))
    merged = {**base, **injected}
    params = P.validate(merged, source=f"notebook {notebook} parameters (profile {path.name})")
    if params["recompute"] and params["results_uri"] is None:
        # opened in Jupyter, not run by `python -m lenslib run` (which computes first and injects results_uri):
        # compute the profile's experiments now, or find them done (the run resumes; nothing is computed twice)
        from lenslib.repro.recompute import completed_results, ensure_results

        done = completed_results(params)
        params = {**params, "results_uri": str(done)} if done else ensure_results(params)
    session = Session(params, notebook)
    session._touch_reads()
    if params["synthetic_world"]:
        _synthetic_banner(params)
    return session


SYNTHETIC_BANNER = ("**Synthetic survey — not DR10.** Every number and image on this page comes from lenslib's "
                    "synthetic survey (profile `{profile}`: {n_neg} negatives and {n_pos} lenses made under "
                    "`{data_uri}`, a finder trained on them), recomputed through the same code as the paper. The "
                    "paper's own values stand beside these on the *Claims* page; the *realism gate* page checks "
                    "the world's known truth.")


def _display_html(text: str) -> None:
    try:
        from IPython.display import HTML, display

        display(HTML(text))
    except ImportError:
        print(text)


def _display_figure(fig) -> None:
    try:
        from IPython.display import display

        display(fig)
    except ImportError:
        pass


def _synthetic_banner(params: dict[str, Any]) -> None:
    text = SYNTHETIC_BANNER.format(profile=params["profile"], n_neg=params["synthetic_negatives"],
                                   n_pos=params["synthetic_positives"], data_uri=params["data_uri"])
    try:
        from IPython.display import Markdown, display

        display(Markdown(f"> {text}"))
    except ImportError:
        print(text)

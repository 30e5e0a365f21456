"""Command line: ``python -m lenslib run|recompute|claims|audit|paper|params|verify|synth|train|score|extract``.

A user error or an environment fault (a missing file, a full or read-only disk, a folder in use) prints one
line naming the file or parameter and exits 1 (2 for a parameter); ``--debug`` (or ``LENSLIB_DEBUG=1``) shows
the traceback as well.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
import traceback


def _at_least(low: int):
    """An argparse type: an integer ≥ ``low`` (the error names the option through argparse)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be ≥ {low}, got {value}")
        return value
    parse.__name__ = f"integer ≥ {low}"
    return parse


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lenslib", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--debug", action="store_true", help="show the traceback of an error (also: LENSLIB_DEBUG=1)")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="execute the notebooks of a profile and build the book")
    r.add_argument("--profile", default="demo", help="params/<profile>.yaml (or a path to a params file); default: "
                                                     "demo, the synthetic survey (no data from outside)")
    r.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a parameter (repeatable)")
    r.add_argument("--only", metavar="NAME", help="execute only this notebook (e.g. 02_selection_function)")
    r.add_argument("--no-book", action="store_true", help="execute the notebooks but do not build the book")

    rc = sub.add_parser("recompute", help="run the paper's experiments from the engines (no notebooks, no book)")
    rc.add_argument("--profile", default="demo")
    rc.add_argument("--set", action="append", metavar="KEY=VALUE")

    c = sub.add_parser("claims", help="check the paper's numbers against values recomputed from the artefacts")
    c.add_argument("--results-uri", help="s3:// URI or local directory of the D06 artefacts")
    c.add_argument("--profile", default="demo")
    c.add_argument("--set", action="append", metavar="KEY=VALUE")
    c.add_argument("--claims", help="claims registry (default: the profile's claims_file)")

    a = sub.add_parser("audit", help="classify and check every number typed in the paper's LaTeX source")
    a.add_argument("--profile", default="demo")
    a.add_argument("--set", action="append", metavar="KEY=VALUE")
    a.add_argument("--tex", help="the LaTeX source (default: the profile's paper_tex)")
    a.add_argument("--lines", metavar="A-B", help="print only the numbers of these source lines")
    a.add_argument("--all", action="store_true", help="print every number, not only those that need attention")

    pp = sub.add_parser("paper", help="numbers.tex, the numbers audit, the reproduction report and the authors' "
                                      "paper rebuilt with this run's figures (PDFs need TeX)")
    pp.add_argument("--profile", default="demo")
    pp.add_argument("--set", action="append", metavar="KEY=VALUE")
    pp.add_argument("--tex", help="the authors' LaTeX source (default: the profile's paper_tex)")

    s = sub.add_parser("params", help="print the validated parameters of a profile as JSON")
    s.add_argument("--profile", default="demo")
    s.add_argument("--set", action="append", metavar="KEY=VALUE")

    v = sub.add_parser("verify", help="check a results folder: every file against its recorded SHA-256 (the "
                                      "folder's provenance.json, or the published D06 list) and every artefact's "
                                      "structure; exit 1 on any problem")
    v.add_argument("results", help="the results folder (a local directory or an s3:// URI)")
    v.add_argument("--checksums", help="a checksum list to check against instead (e.g. params/d06_checksums.json)")
    v.add_argument("--profile", default="demo", help="profile whose S3 settings are used for an s3:// folder")
    v.add_argument("--set", action="append", metavar="KEY=VALUE")

    g = sub.add_parser("synth", help="write a synthetic survey with known truth (cutouts, manifest, truth table, "
                                     "catalogue; the bucket's layout) to a directory")
    g.add_argument("--out", required=True, help="directory to write cutouts/, manifests/ and catalogs/ into")
    g.add_argument("--negatives", type=_at_least(1), default=400)
    g.add_argument("--positives", type=_at_least(0), default=200)
    g.add_argument("--seed", type=int, default=42)

    t = sub.add_parser("train", help="train a lens finder from a config (the authors' YAML format); resumes")
    t.add_argument("--config", required=True, help="training config YAML (dataset / augment / train / inject)")
    t.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override a config value")
    t.add_argument("--no-resume", action="store_true", help="start over even if train.out_dir holds last.pt")
    t.add_argument("--no-progress", action="store_true", help="no progress bars")

    sc = sub.add_parser("score", help="score the cutouts of a manifest with a checkpoint; writes parquet")
    sc.add_argument("--checkpoint", required=True)
    sc.add_argument("--manifest", required=True, help="manifest parquet (cutout_path, label, split ...)")
    sc.add_argument("--out", required=True, help="output parquet")
    sc.add_argument("--root", help="directory that relative cutout paths are under")
    sc.add_argument("--split", help="score only this split")
    sc.add_argument("--batch-size", type=_at_least(1), default=256)
    sc.add_argument("--arch", help="architecture of a bare state dict")
    sc.add_argument("--chunk-size", type=_at_least(1), default=4096, help="rows per shard (per task on Dask)")
    sc.add_argument("--executor", choices=["local", "dask"], default="local",
                    help="score here, or a task per chunk on a Dask cluster")
    sc.add_argument("--scheduler", help="address of a Dask scheduler (default with --executor dask: a local "
                                        "cluster)")

    x = sub.add_parser("extract", help="cut 101×101 g, r, z cutouts at many positions from DR10 coadd tiles, one "
                                       "task per brick; writes <out>/cutouts/, shards/ and extracted.parquet")
    x.add_argument("--positions", required=True, help="CSV or parquet with an id column, ra, dec (deg) and "
                                                      "optionally brick")
    x.add_argument("--tiles", required=True, help="coadd root (s3:// URI or directory holding <brick>/ folders)")
    x.add_argument("--bricks", help="survey-bricks FITS table, to find the brick of positions without one")
    x.add_argument("--out", required=True, help="output directory")
    x.add_argument("--id-column", default="id", help="column of positions that names each cutout (default: id)")
    x.add_argument("--executor", choices=["local", "dask"], default="local")
    x.add_argument("--scheduler", help="address of a Dask scheduler (default with --executor dask: a local "
                                       "cluster)")
    x.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def _extract(args) -> int:
    import pandas as pd

    from lenslib.data.extract import ExtractError, extract_cutouts
    from lenslib.parallel import make_executor

    path = str(args.positions)
    try:
        positions = pd.read_parquet(path) if path.endswith(".parquet") else pd.read_csv(path)
    except FileNotFoundError:
        raise ExtractError(f"--positions: {path}: no such file") from None
    except (OSError, ValueError) as exc:
        raise ExtractError(f"--positions: {path}: not a readable CSV or parquet table ({exc})") from None
    with make_executor(args.executor, args.scheduler) as executor:
        df = extract_cutouts(args.tiles, positions, args.out, bricks=args.bricks, id_column=args.id_column,
                             executor=executor, progress=not args.no_progress)
    failed = int(df["error"].notna().sum())
    print(f"{len(df) - failed} cutouts, {failed} positions without one (see the error column) → "
          f"{os.path.join(args.out, 'extracted.parquet')}")
    return 0


def _tools(args) -> int:
    from lenslib.repro import params as P

    if args.command == "synth":
        from lenslib.synthetic import SurveySpec, make_survey

        df = make_survey(args.out, SurveySpec(n_negatives=args.negatives, n_positives=args.positives, seed=args.seed),
                         progress=True)
        print(f"{len(df)} cutouts, manifests/synthetic.parquet (+ _truth, _spec) and catalogs/ written to {args.out}")
    elif args.command == "train":
        from lenslib.finder.config import read_config
        from lenslib.finder.training import train

        res = train(read_config(args.config, P.parse_set(args.set)), resume=not args.no_resume,
                    progress=not args.no_progress)
        print(f"best val AUC {res.best_auc:.4f} at epoch {res.best_epoch}; checkpoints in {res.out_dir}")
    else:
        from lenslib.data.manifests import read_manifest
        from lenslib.finder.checkpoints import load_checkpoint
        from lenslib.finder.scoring import score_manifest

        finder = load_checkpoint(args.checkpoint, arch=args.arch)
        df = read_manifest(args.manifest)
        if args.split:
            df = df[df["split"] == args.split]
        from lenslib.parallel import make_executor

        with make_executor(args.executor, args.scheduler) as executor:
            out = score_manifest(finder.model, df, args.out, spec=finder.spec, root=args.root,
                                 batch_size=args.batch_size, chunk_size=args.chunk_size, executor=executor)
        print(f"{len(out)} rows scored ({int(out['error'].notna().sum())} failed to load) → {args.out}")
    return 0


def _claims(args, params) -> int:
    from lenslib.paper.run import artefacts_for
    from lenslib.repro import claims
    from lenslib.repro.params import resolve_path

    if params["results_uri"] is None:  # a recompute profile: the artefacts it wrote
        params = {**params, "results_uri": str(resolve_path(params["output_dir"]) / "results")}
    results = claims.evaluate_all(resolve_path(args.claims or params["claims_file"]), artefacts_for(params))
    summary = claims.summary(results)
    json.dump({"results_uri": params["results_uri"], "summary": summary,
               "claims": [r.as_dict() for r in results]}, sys.stdout, indent=1)
    sys.stdout.write("\n")
    for r in results:
        if r.status in ("disagrees", "error"):
            print(f"claim {r.id}: {r.status}: {r.detail}", file=sys.stderr)
    return 0 if summary["ok"] else 1


def _audit(args, params) -> int:
    from lenslib.paper.audit import FAILING
    from lenslib.paper.run import run_audit

    report = run_audit(params, tex=args.tex)
    lo, hi = (int(x) for x in args.lines.split("-")) if args.lines else (0, 10**9)
    shown = [i for i in report["items"] if lo <= i["line"] <= hi
             and (args.all or args.lines or i["status"] in (*FAILING, "unchecked"))]
    for i in shown:
        print(f"{i['line']:4d}.{i['index']:<2d} {i['text']:>10s}  {i['status']:<17s} {i['cls']}:{i['target']}  "
              f"{i['detail']}", file=sys.stderr if i["status"] in FAILING else sys.stdout)
    print(json.dumps({**report["summary"], "report": report["path"]}, indent=1))
    return 0 if report["summary"]["ok"] else 1


def _verify(args, params) -> int:
    from lenslib.experiments.verify import verify_folder
    from lenslib.repro.params import open_param_store

    report = verify_folder(open_param_store({**params, "results_uri": args.results}, "results_uri"),
                           checksums=args.checksums)
    print(json.dumps(report.as_dict(), indent=1))
    for key in report.mismatched:
        print(f"verify: {key}: SHA-256 differs from {report.against}", file=sys.stderr)
    for key in report.missing:
        print(f"verify: {key}: missing (listed in {report.against})", file=sys.stderr)
    for key, err in report.structure.items():
        print(f"verify: {key}: {err}", file=sys.stderr)
    print(f"verify: {report.matched} of {report.checked} files match, {len(report.structure_checked)} artefacts "
          f"checked for structure: {'ok' if report.ok else 'PROBLEMS'}", file=sys.stderr)
    return 0 if report.ok else 1


def _environment_message(exc: OSError) -> str:
    """One line for an OS error: what happened, to which path, and what to do."""
    where = " → ".join(str(f) for f in (exc.filename, exc.filename2) if f) or "(no path given by the system)"
    what = exc.strerror or str(exc)
    hint = {errno.ENOSPC: "the disk is full: free space or choose another output_dir",
            errno.EDQUOT: "the disk quota is exceeded: free space or choose another output_dir",
            errno.EROFS: "the file system is read-only: choose another output_dir",
            errno.EACCES: "permission denied: choose a folder you can write, or fix its permissions",
            errno.EPERM: "operation not permitted: choose a folder you can write",
            errno.ENOENT: "no such file or directory: check the path"}.get(exc.errno, "")
    return f"{what}: {where}" + (f" ({hint})" if hint else "")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    debug = args.debug or os.environ.get("LENSLIB_DEBUG", "") not in ("", "0")
    try:
        return _main(args)
    except Exception as exc:
        from lenslib import LenslibError
        from lenslib.repro.params import ParamError

        if debug:
            traceback.print_exc()
        if isinstance(exc, LenslibError):
            print(f"lenslib: error: {exc}", file=sys.stderr)
            return 2 if isinstance(exc, ParamError) else 1
        if isinstance(exc, OSError):
            print(f"lenslib: error: {_environment_message(exc)}", file=sys.stderr)
            return 1
        if isinstance(exc, RuntimeError) and ("enforce fail" in str(exc) or "write" in str(exc).lower()):
            print(f"lenslib: error: could not write a file ({str(exc).splitlines()[0][:200]}); is the disk full or "
                  f"read-only?", file=sys.stderr)
            return 1
        print(f"lenslib: internal error: {type(exc).__name__}: {exc}\n(a bug in lenslib, not in your input: "
              f"rerun with --debug for the traceback and report it)", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("lenslib: interrupted; what was written is kept and a rerun resumes", file=sys.stderr)
        return 130


def _main(args) -> int:
    from lenslib.repro import params as P

    if args.command in ("synth", "train", "score"):
        return _tools(args)
    if args.command == "extract":
        return _extract(args)
    overrides = P.parse_set(args.set)
    if getattr(args, "results_uri", None):
        overrides["results_uri"] = args.results_uri
    params = P.load(args.profile, overrides)
    if args.command == "params":
        print(json.dumps(params, indent=1))
        return 0
    if args.command == "claims":
        return _claims(args, params)
    if args.command == "verify":
        return _verify(args, params)
    if args.command == "audit":
        return _audit(args, params)
    if args.command == "paper":
        from lenslib.paper.latex import INSTALL_HINT, TexMissing, tex_available
        from lenslib.paper.run import build_paper

        if not tex_available():
            raise TexMissing(INSTALL_HINT)
        status = build_paper(params, tex=args.tex)
        print(json.dumps(status, indent=1))
        return 0
    if args.command == "run":
        from lenslib.repro.runner import select_notebooks

        select_notebooks(args.only)  # an unknown name fails now, not after the world is made
    if params["synthetic_world"] and args.command in ("run", "recompute"):
        from lenslib.synthetic.demo import ensure_world

        ensure_world(params)
    if args.command == "recompute":
        from lenslib.repro.recompute import recompute

        recompute({**params, "recompute": True})
        return 0
    from lenslib.repro import runner

    runner.run(params, only=args.only, book=not args.no_book)
    return 0

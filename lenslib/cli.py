"""Command line: ``python -m lenslib run|claims|params``."""

from __future__ import annotations

import argparse
import json
import sys

from lenslib import LenslibError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lenslib", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="execute the notebooks of a profile and build the book")
    r.add_argument("--profile", default="published", help="params/<profile>.yaml (or a path to a params file)")
    r.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a parameter (repeatable)")
    r.add_argument("--only", metavar="NAME", help="execute only this notebook (e.g. 02_selection_function)")
    r.add_argument("--no-book", action="store_true", help="execute the notebooks but do not build the book")

    c = sub.add_parser("claims", help="check the paper's numbers against values recomputed from the artefacts")
    c.add_argument("--results-uri", help="s3:// URI or local directory of the D06 artefacts")
    c.add_argument("--profile", default="published")
    c.add_argument("--set", action="append", metavar="KEY=VALUE")
    c.add_argument("--claims", help="claims registry (default: the profile's claims_file)")

    s = sub.add_parser("params", help="print the validated parameters of a profile as JSON")
    s.add_argument("--profile", default="published")
    s.add_argument("--set", action="append", metavar="KEY=VALUE")
    return p


def _claims(args, params) -> int:
    from lenslib import claims
    from lenslib.artefacts import D06Artefacts
    from lenslib.params import resolve_path
    from lenslib.storage import open_store

    store = open_store(params["results_uri"], region=params["s3_region"], endpoint_url=params["s3_endpoint_url"],
                       anonymous=params["s3_anonymous"], max_attempts=params["s3_max_attempts"],
                       connect_timeout=params["s3_connect_timeout"])
    results = claims.evaluate_all(resolve_path(args.claims or params["claims_file"]), D06Artefacts(store))
    summary = claims.summary(results)
    json.dump({"results_uri": params["results_uri"], "summary": summary,
               "claims": [r.as_dict() for r in results]}, sys.stdout, indent=1)
    sys.stdout.write("\n")
    for r in results:
        if r.status in ("disagrees", "error"):
            print(f"claim {r.id}: {r.status}: {r.detail}", file=sys.stderr)
    return 0 if summary["ok"] else 1


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from lenslib import params as P

    try:
        overrides = P.parse_set(args.set)
        if getattr(args, "results_uri", None):
            overrides["results_uri"] = args.results_uri
        params = P.load(args.profile, overrides)
        if args.command == "params":
            print(json.dumps(params, indent=1))
            return 0
        if args.command == "claims":
            return _claims(args, params)
        from lenslib import runner

        runner.run(params, only=args.only, book=not args.no_book)
        return 0
    except LenslibError as exc:
        print(f"lenslib: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, P.ParamError) else 1

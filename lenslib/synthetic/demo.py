"""The demo world: a synthetic survey and a finder trained on it, laid out like the authors' bucket.

:func:`ensure_world` is what the ``demo`` profile runs before the recompute: with ``synthetic_world: true``
it writes the survey under ``data_uri`` (a local folder) unless the same survey is there already, trains the
finder of ``finder_config`` on it into ``finder_checkpoint`` (a key under ``data_uri``; a killed training
resumes from its ``last.pt``). Each step is skipped when its output is complete, so a rerun costs nothing;
when the survey or the finder is made anew, the recompute's ``results/`` and ``work/`` of an earlier world
are removed so nothing is resumed from them.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from lenslib import ParamError
from lenslib._util import resolve_path
from lenslib.finder.checkpoints import load_checkpoint
from lenslib.finder.config import read_config
from lenslib.finder.training import train
from lenslib.synthetic.survey import MANIFEST, SPEC, SurveySpec, make_survey, spec_record

MIN_VAL_LENSES, MIN_VAL_NEGATIVES = 10, 50  # what the six experiments need at the least


def survey_spec(params: dict[str, Any]) -> SurveySpec:
    """The survey of a profile's ``synthetic_*`` parameters."""
    return SurveySpec(n_negatives=params["synthetic_negatives"], n_positives=params["synthetic_positives"],
                      seed=params["synthetic_seed"], min_val_lenses=MIN_VAL_LENSES,
                      min_val_negatives=MIN_VAL_NEGATIVES)


def world_root(params: dict[str, Any]) -> Path:
    uri = params["data_uri"]
    if not uri or str(uri).startswith("s3://"):
        raise ParamError(f"parameter 'data_uri' must be a local folder for synthetic_world: true, got {uri!r}")
    return resolve_path(uri)


def _same_survey(root: Path, spec: SurveySpec) -> bool:
    try:
        return (root / MANIFEST).exists() and json.loads((root / SPEC).read_text()) == json.loads(
            json.dumps(spec_record(spec)))
    except (OSError, ValueError):
        return False


def _trained(path: Path, cfg) -> bool:
    """Whether ``path`` holds the finished training of ``cfg``. A run of another config is removed (it could
    not be resumed); an unfinished run of this one is left to resume."""
    last = path.parent / "last.pt"
    if not last.exists():
        return False
    try:
        saved = load_checkpoint(last).checkpoint
    except Exception:  # noqa: BLE001 - an unreadable last.pt: train again from the start
        shutil.rmtree(path.parent, ignore_errors=True)
        return False
    now = cfg.to_dict()
    if any((saved.get(s) or {}).get(k) != v for s in ("dataset", "augment", "train") for k, v in now[s].items()
           if (s, k) != ("train", "epochs")):
        shutil.rmtree(path.parent, ignore_errors=True)
        return False
    return path.exists() and saved.get("epoch", 0) >= cfg.train.epochs


def ensure_world(params: dict[str, Any], *, progress: bool = True, log=print) -> dict[str, float]:
    """Make the survey and train the finder of a ``synthetic_world`` profile if needed; wall time per step (s).
    Holds the lock of the world's folder while it works."""
    from lenslib._lock import output_lock

    with output_lock(world_root(params), "synthetic world"):
        return _ensure_world(params, progress=progress, log=log)


def _ensure_world(params: dict[str, Any], *, progress: bool, log) -> dict[str, float]:
    root, spec, times = world_root(params), survey_spec(params), {}
    t0 = time.perf_counter()
    ckpt = root / params["finder_checkpoint"]
    changed = False
    if not _same_survey(root, spec):
        log(f"synthetic survey: {spec.n_negatives} negatives + {spec.n_positives} lenses → {root}")
        shutil.rmtree(ckpt.parent, ignore_errors=True)  # a finder of another survey
        make_survey(root, spec, progress=progress)
        changed = True
    times["survey"] = time.perf_counter() - t0
    cfg = read_config(resolve_path(params["finder_config"]),
                      {"dataset.manifest_path": str(root / MANIFEST), "dataset.root": str(root),
                       "train.out_dir": str(ckpt.parent), "train.device": params["device"] or "auto"})
    t0 = time.perf_counter()
    if not _trained(ckpt, cfg):
        log(f"training the demo finder ({cfg.train.arch}, {cfg.train.epochs} epochs) → {ckpt}")
        train(cfg, progress=progress, log=None)
        changed = True
    times["training"] = time.perf_counter() - t0
    if changed:  # artefacts of an earlier world or finder must not be resumed from
        out = resolve_path(params["output_dir"])
        for sub in ("results", "work"):
            shutil.rmtree(out / sub, ignore_errors=True)
    return times

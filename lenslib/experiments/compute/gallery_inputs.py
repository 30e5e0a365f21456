"""§E.6 inputs: the validation Tier-A lenses with their scores, and grid injections re-rendered for display.

The grid keeps no cutouts (unless asked), but every injection is reproducible from its row of
``grid_no_poisson/injections.parquet`` (parameters, host, PSF): the gallery re-renders the first
``n_per_cell`` injections of the cells at θ_E = 0.75, 1.5 and 2.5″ and keeps those whose whole-image r
magnitude is in [16, 23], up to ``per_theta`` each. Unlike the authors' gallery (E.6 [BUG]), cells are
chosen by their own θ_E, so no injection of a neighbouring θ_E carries the wrong label.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lenslib.experiments.compute.gallery import total_r_mag, write_gallery_artefacts
from lenslib.experiments.compute.inputs import Inputs
from lenslib.injection import InjectionEngine, InjectionParams
from lenslib.injection.priors import PARAM_COLUMNS

THETAS = {"0.75": 0.75, "1.5": 1.5, "2.5": 2.5}


def params_from_frame(df: pd.DataFrame) -> InjectionParams:
    """The :class:`InjectionParams` of per-injection rows (as ``InjectionParams.to_frame`` wrote them)."""
    k = sum(1 for c in df.columns if c.startswith("clump") and c.endswith("_x") and c[5:-2].isdigit())
    clumps = np.stack([df[[f"clump{j}_x", f"clump{j}_y"]].to_numpy() for j in range(k)], axis=1) if k \
        else np.zeros((len(df), 0, 2))
    cols = {c: df[c].to_numpy(dtype=int if c == "n_clumps" else float) for c in PARAM_COLUMNS}
    return InjectionParams(**cols, clumps=clumps)


def gallery_injections(inputs: Inputs, results: Path, *, n_per_cell: int = 10, r_range=(16.0, 23.0),
                       per_theta: int = 50, sampling: str = "full") -> dict[str, list[dict]]:
    inj = pd.read_parquet(results / "grid_no_poisson" / "injections.parquet")
    key_of = dict(zip(inputs.manifest["cutout_path"].astype(str), inputs.manifest["cutout_key"], strict=True))
    engine = InjectionEngine(sampling=sampling, device=inputs.device)
    out: dict[str, list[dict]] = {}
    for label, te in THETAS.items():
        rows = inj[np.isclose(inj["theta_e"], te) & (inj["inj_idx"] < n_per_cell)].sort_values(["cell_idx", "inj_idx"])
        out[label] = []
        if rows.empty:
            continue
        hosts = pd.DataFrame({"cutout_key": [key_of.get(str(p), str(p)) for p in rows["cutout_path"]]})
        images, errors = inputs.load_images(hosts)
        ok = np.array([k not in errors for k in range(len(rows))])
        rows, images = rows[ok], images[ok]
        res = engine.inject(images, params_from_frame(rows), rows["host_psfsize_r"].to_numpy(),
                            rows["host_psfdepth_r"].to_numpy())
        img = res.injected.cpu().numpy()
        r = np.array([total_r_mag(im) for im in img])  # whole image, host + arc (E.6)
        keep = np.flatnonzero((r >= r_range[0]) & (r <= r_range[1]))[:per_theta]
        for k in keep:
            row = rows.iloc[k]
            out[label].append({"cutout_path": row["inj_id"], "image": img[k], "score": float(row["score"]),
                               "theta_e": float(row["theta_e"]), "cell_idx": int(row["cell_idx"]),
                               "inj_idx": int(row["inj_idx"])})
    return out


def real_lenses(inputs: Inputs, results: Path) -> list[dict]:
    """The validation Tier-A lenses in manifest order with their scores (from the Tier-A step)."""
    rows = inputs.rows("val", label=1, tier="A")
    scores = pd.read_parquet(results / "tier_a_scoring" / "real_lens_scores.parquet")
    by_id = dict(zip(scores["galaxy_id"], scores["score"], strict=True))
    images, errors = inputs.load_images(rows)
    out = []
    for k, (_, row) in enumerate(rows.iterrows()):
        s = by_id.get(row["galaxy_id"])
        if k in errors or s is None or not np.isfinite(s):
            continue
        out.append({"cutout_path": str(row["cutout_path"]), "image": images[k], "score": float(s),
                    "ra": float(row.get("ra", np.nan)), "dec": float(row.get("dec", np.nan)),
                    "galaxy_id": str(row["galaxy_id"])})
    return out


def run_gallery(inputs: Inputs, results: Path, *, catalogue: pd.DataFrame | None = None, sampling: str = "full",
                seed: int = 42) -> dict:
    """``gallery/`` and ``comparison_figure/`` (F.12–F.14) from the Tier-A scores and the no-Poisson grid."""
    return write_gallery_artefacts(results, real_lenses(inputs, results),
                                   gallery_injections(inputs, results, sampling=sampling), catalogue=catalogue,
                                   seed=seed)

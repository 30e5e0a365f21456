"""A small bucket in the authors' layout, for the recompute tests: a parity manifest whose ``cutout_path``
values are the authors' absolute paths, the cutouts under ``cutouts/{negatives,positives}/<timestamp>/``
(synthetic DR10-like hosts and lenses, plus the two real DR10 cutouts as validation negatives) and a finder
checkpoint saved in the authors' format under ``checkpoints/paperIV_efficientnet_v2_s_v4_finetune/best.pt``."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lenslib.data.manifests import write_manifest
from lenslib.finder.models import build_model
from lenslib.synthetic import SurveySpec, make_survey

AUTHORS_ROOT = "/lambda/nfs/darkhaloscope-training-dc/stronglens_calibration"
MANIFEST_KEY = "manifests/training_parity_70_30_v1.parquet"
CHECKPOINT_KEY = "checkpoints/paperIV_efficientnet_v2_s_v4_finetune/best.pt"


def make_bucket(root: Path, samples: Path | None, *, negatives: int = 150, positives: int = 60, seed: int = 7,
                arch: str = "bottlenecked_resnet", base_ch: int = 6) -> pd.DataFrame:
    """Write the bucket under ``root`` (= the ``stronglens_calibration/`` prefix); returns its manifest."""
    survey = root.parent / f"{root.name}_survey"
    df = make_survey(survey, SurveySpec(n_negatives=negatives, n_positives=positives, seed=seed))
    df["split"] = np.where(df["split"] == "train", "train", "val")  # the parity manifest is 70/30 train/val
    rng = np.random.default_rng(seed)
    pos = df["label"] == 1
    df.loc[pos, "tier"] = np.where(rng.random(int(pos.sum())) < 0.6, "A", "B")
    paths = []
    for _, row in df.iterrows():
        kind = "positives" if row["label"] == 1 else "negatives"
        key = f"cutouts/{kind}/20260208/{row['galaxy_id']}.npz"
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(survey / row["cutout_path"], root / key)
        paths.append(f"{AUTHORS_ROOT}/{key}")
    df["cutout_path"] = paths
    if samples is not None:  # the two real DR10 cutouts, as validation negatives
        real = []
        for name, psf, depth in (("sample_cutout.npz", 1.25, 2500.0), ("0003m005_293.npz", 1.45, 900.0)):
            key = f"cutouts/negatives/20260208/{Path(name).stem}.npz"
            shutil.copyfile(samples / name, root / key)
            real.append({**df.iloc[0].to_dict(), "galaxy_id": Path(name).stem, "cutout_path": f"{AUTHORS_ROOT}/{key}",
                         "label": 0, "tier": "N", "split": "val", "psfsize_r": psf, "psfdepth_r": depth,
                         "pool": "N1", "theta_e": np.nan})
        df = pd.concat([df, pd.DataFrame(real)], ignore_index=True)
    write_manifest(df.drop(columns=["theta_e"]), root / MANIFEST_KEY)
    torch.manual_seed(seed)
    model = build_model(arch, base_ch=base_ch)
    ckpt = {"epoch": 1, "model": model.state_dict(), "opt": {}, "sched": {}, "best_auc": 0.5,
            "dataset": {"preprocessing": "raw_robust", "crop": False},
            "train": {"arch": arch, "base_ch": base_ch},
            "preprocess_spec": {"mode": "raw_robust", "crop": False, "annulus_r_in": 20, "annulus_r_out": 32,
                                "clip_range": 10.0}}
    (root / CHECKPOINT_KEY).parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, root / CHECKPOINT_KEY)
    return df

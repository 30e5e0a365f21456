"""Lens-finder training on a synthetic mini-survey written to disk (real npz files, a real parquet
manifest): configs in the authors' format, augmentation, learning, schedules, accumulation, early
stopping, kill-and-resume, on-the-fly injection."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml

from lenslib.finder.checkpoints import load_checkpoint, read_checkpoint
from lenslib.finder.config import FinderConfigError, from_mapping, read_config
from lenslib.finder.datasets import FinderDataset, augment, augment_seed
from lenslib.finder.models import torchvision_available
from lenslib.finder.preprocess import raw_robust
from lenslib.finder.scoring import score_images
from lenslib.finder.training import OnTheFlyInjector, TrainingError, read_metrics, train
from lenslib.synthetic import SurveySpec, make_survey

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    root = tmp_path_factory.mktemp("survey")
    df = make_survey(root, SurveySpec(n_negatives=240, n_positives=120, seed=7, confuser_frac=0.0,
                                              source_r_mag=(19.0, 20.5)))
    return root, df


def small(survey, out_dir, **train):
    root, _ = survey
    t = {"arch": "bottlenecked_resnet", "base_ch": 8, "epochs": 4, "batch_size": 32, "effective_batch": 64,
         "lr": 0.003, "lr_schedule": "cosine", "warmup_epochs": 1, "out_dir": str(out_dir), "save_every": 2, **train}
    return {"dataset": {"manifest_path": str(root / "manifests" / "synthetic.parquet"), "root": str(root),
                        "cache_in_memory": True}, "train": t}


# --- configs -----------------------------------------------------------------------------------------

def test_the_authors_configs_read_unchanged(shared):
    r = read_config(shared("configs", "paperIV_bottlenecked_resnet.yaml"))
    assert (r.train.arch, r.train.base_ch, r.train.epochs, r.train.accumulation) == ("bottlenecked_resnet", 27, 160, 16)
    assert (r.train.lr_schedule, r.train.lr_step_epoch, r.train.lr_gamma) == ("step", 80, 0.5)
    assert r.dataset.manifest_path.endswith("training_parity_70_30_v1.parquet") and r.augment.rot90
    e = read_config(shared("configs", "paperIV_efficientnet_v2_s_v4_finetune.yaml"), {"train.epochs": 2})
    assert (e.train.arch, e.train.accumulation, e.train.lr, e.train.warmup_epochs, e.train.epochs) == \
        ("efficientnet_v2_s", 8, 5e-5, 3, 2)
    assert e.train.init_weights.endswith("paperIV_efficientnet_v2_s_v2/best.pt")
    assert e.preprocess_spec().annulus_r_in == 20.0 and e.preprocess_spec().clip_range == 10.0


@pytest.mark.parametrize("doc, overrides, needle", [
    ({"trian": {}}, None, "unknown section 'trian'"),
    ({"train": {"epoch": 3}}, None, "unknown key train.epoch"),
    ({"train": {"epochs": "ten"}}, None, "train.epochs: expected int"),
    ({"train": {"lr": True}}, None, "train.lr: expected float"),
    ({"train": {"batch_size": 48, "effective_batch": 100}}, None, "train.effective_batch (100) must be a multiple"),
    ({"train": {"arch": "vgg16"}}, None, "train.arch is 'vgg16'"),
    ({"train": {"lr_schedule": "linear"}}, None, "train.lr_schedule is 'linear'"),
    ({"train": {"pretrained": True}}, None, "never downloads weights"),
    ({"train": {"epochs": 0}}, None, "train.epochs must be >= 1"),
    ({"dataset": {"crop": True}}, None, "dataset.crop"),
    ({"dataset": {"annulus_r_in": 40, "annulus_r_out": 30}}, None, "annulus radii"),
    ({"inject": {"fraction": 1.5}}, None, "inject needs"),
    ({}, {"epochs": 3}, "expected 'section.key'"),
    ({}, {"train.nope": 1}, "override: unknown key train.nope"),
])
def test_bad_configs_say_which_key(doc, overrides, needle):
    with pytest.raises(FinderConfigError) as e:
        from_mapping(doc, "my.yaml", overrides)
    assert needle in str(e.value)


def test_bad_yaml_file_names_the_file(tmp_path):
    p = tmp_path / "broken.yaml"
    p.write_text("train: [unclosed\n")
    with pytest.raises(Exception, match="broken.yaml"):
        read_config(p)


# --- augmentation --------------------------------------------------------------------------------------

def test_augmentation_follows_the_spec_and_commutes_with_preprocessing(survey):
    root, df = survey
    ds = FinderDataset(df, root=root, augment_cfg=from_mapping({}).augment, seed=42)
    raw = ds.raw(3)
    ds.set_epoch(2)
    img, label, k = ds[3]
    rng = np.random.default_rng((42 * 1_000_003 + 3 + 2 * len(df)) & 0x7FFFFFFF)
    assert augment_seed(3, 2, len(df)) == (42 * 1_000_003 + 3 + 2 * len(df)) & 0x7FFFFFFF
    h, v, rot = rng.random() < 0.5, rng.random() < 0.5, int(rng.integers(0, 4))
    ref = raw[..., ::-1] if h else raw
    ref = ref[..., ::-1, :] if v else ref
    ref = np.rot90(ref, rot, axes=(-2, -1))
    np.testing.assert_array_equal(img.numpy(), ref)
    assert k == 3 and float(label) == df["label"].iloc[3]
    # epochs differ, runs do not
    seen = {tuple(ds[3][0].numpy()[0, 10, 10:14]) for ds.epoch in range(12)}
    assert len(seen) > 2
    ds.set_epoch(2)
    np.testing.assert_array_equal(ds[3][0].numpy(), img.numpy())
    # flips and quarter turns commute with raw_robust (the annulus is symmetric about (50, 50))
    for k in range(8):
        a = augment(raw, np.random.default_rng(k), ds.augment_cfg)
        np.testing.assert_allclose(raw_robust(a), augment(raw_robust(raw), np.random.default_rng(k), ds.augment_cfg),
                                   atol=1e-5)


# --- training ------------------------------------------------------------------------------------------

def test_a_small_model_learns_and_its_checkpoints_score_as_logged(survey, tmp_path):
    cfg = from_mapping(small(survey, tmp_path / "run", epochs=5), "test")
    res = train(cfg, progress=False, log=None)
    assert res.best_auc > 0.85, res.history
    assert len(res.history) == 5 and res.history["train_loss"].iloc[-1] < res.history["train_loss"].iloc[0]
    for name in ("best.pt", "last.pt", "epoch_002.pt", "epoch_004.pt", "metrics.jsonl"):
        assert (tmp_path / "run" / name).exists(), name
    hist = read_metrics(tmp_path / "run")
    assert list(hist["epoch"]) == [1, 2, 3, 4, 5] and hist["val_auc"].max() == pytest.approx(res.best_auc)

    ck = read_checkpoint(tmp_path / "run" / "best.pt")
    assert ck["epoch"] == res.best_epoch and ck["format"] == "lenslib.finder/1"
    assert {"model", "opt", "sched", "best_auc", "dataset", "train", "preprocess_spec"} <= set(ck)
    assert ck["train"]["arch"] == "bottlenecked_resnet" and ck["preprocess_spec"]["clip_range"] == 10.0
    finder = load_checkpoint(tmp_path / "run" / "best.pt")
    root, df = survey
    val = df[df["split"] == "val"]
    imgs = np.stack([np.nan_to_num(np.load(root / p)["cutout"].transpose(2, 0, 1)) for p in val["cutout_path"]])
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(val["label"], score_images(finder.model, imgs, finder.spec)) == pytest.approx(res.best_auc,
                                                                                                         abs=1e-9)


def test_warmup_then_cosine_learning_rates(survey, tmp_path, monkeypatch):
    cfg = from_mapping(small(survey, tmp_path / "run", epochs=3, warmup_epochs=2, lr=0.01), "test")
    lrs = train(cfg, progress=False, log=None).history["lr"].to_numpy()
    # e ≤ W: lr·(0.01 + 0.99·e/W); afterwards PyTorch's recursive cosine continues from the overridden value
    np.testing.assert_allclose(lrs, [0.01 * 0.505, 0.01, 0.01 * (1 + math.cos(2 * math.pi / 3))
                                     / (1 + math.cos(math.pi / 3))], rtol=1e-9)
    step = from_mapping(small(survey, tmp_path / "s", epochs=4, warmup_epochs=0, lr_schedule="step", lr_step_epoch=2,
                              lr_gamma=0.5, lr=0.004), "test")
    np.testing.assert_allclose(train(step, progress=False, log=None).history["lr"], [0.004, 0.004, 0.002, 0.002])


def test_gradient_accumulation_steps_every_k_batches_and_at_the_end(survey, tmp_path, monkeypatch):
    n_train = int((survey[1]["split"] == "train").sum())
    cfg = from_mapping(small(survey, tmp_path / "run", epochs=1, batch_size=16, effective_batch=48), "test")
    # a fake clock read at the epoch's start, the end of its training and the end of its validation
    ticks = iter([10.0, 13.2, 14.0])
    monkeypatch.setattr("lenslib.finder.training.time", SimpleNamespace(perf_counter=lambda: next(ticks)))
    res = train(cfg, progress=False, log=None)
    opt = read_checkpoint(tmp_path / "run" / "last.pt")["opt"]
    n_batches = n_train // 16
    assert n_batches % 3, "pick sizes where the last step is a partial accumulation"
    assert int(next(iter(opt["state"].values()))["step"]) == math.ceil(n_batches / 3)
    # images/s counts the images of the whole micro-batches (drop_last) over the training part of the epoch
    assert res.history["train_images_per_s"].iloc[0] == pytest.approx(n_batches * 16 / 3.2, rel=1e-12)
    assert res.history["seconds"].iloc[0] == pytest.approx(4.0, rel=1e-12)
    assert read_metrics(tmp_path / "run")["train_images_per_s"].iloc[0] == pytest.approx(n_batches * 5.0, rel=1e-12)


def test_early_stopping_after_patience_epochs(survey, tmp_path, monkeypatch):
    aucs = iter([0.6, 0.7, 0.65, 0.69, 0.9, 0.95])
    monkeypatch.setattr("lenslib.finder.training.roc_auc_score", lambda y, s: next(aucs))
    cfg = from_mapping(small(survey, tmp_path / "run", epochs=6, early_stopping_patience=2), "test")
    res = train(cfg, progress=False, log=None)
    assert res.stopped_early and list(res.history["epoch"]) == [1, 2, 3, 4] and res.best_epoch == 2
    assert read_checkpoint(tmp_path / "run" / "best.pt")["epoch"] == 2


def test_training_refuses_bad_data_and_a_foreign_run(survey, tmp_path):
    root, df = survey
    cfg = from_mapping(small(survey, tmp_path / "run", epochs=1), "test")
    with pytest.raises(TrainingError, match="val split needs lenses and non-lenses"):
        train(cfg, manifest=df[(df["split"] == "train") | (df["label"] == 0)], progress=False, log=None)
    with pytest.raises(TrainingError, match="fewer than one micro-batch"):
        train(cfg, manifest=df[(df["split"] == "val") | (df.index < 5)], progress=False, log=None)
    train(cfg, progress=False, log=None)
    other = from_mapping(small(survey, tmp_path / "run", epochs=2, lr=0.5), "test")
    with pytest.raises(TrainingError, match=r"different config \(train.lr\)"):
        train(other, progress=False, log=None)


def _cli_train(config: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    cmd = [sys.executable, "-m", "lenslib", "train", "--config", str(config), "--no-progress", *extra]
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def test_kill_and_resume_gives_the_weights_of_an_uninterrupted_run(survey, tmp_path):
    runs = {}
    for name in ("straight", "killed"):
        doc = small(survey, tmp_path / name, epochs=5, lr_schedule="step", lr_step_epoch=2, warmup_epochs=2)
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(doc))
        runs[name] = tmp_path / f"{name}.yaml"
    p = _cli_train(runs["straight"])
    assert p.wait(timeout=300) == 0, p.stdout.read()

    p = _cli_train(runs["killed"])
    metrics = tmp_path / "killed" / "metrics.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and p.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 2:
            p.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    assert p.wait(timeout=60) == -signal.SIGKILL, "the run finished before it could be killed"
    done = read_checkpoint(tmp_path / "killed" / "last.pt")["epoch"]
    assert 2 <= done < 5
    p = _cli_train(runs["killed"])
    out = p.communicate(timeout=300)[0]
    assert p.returncode == 0 and f"resuming from {tmp_path / 'killed' / 'last.pt'} (epoch {done}" in out, out

    for name in ("last.pt", "best.pt"):
        a = read_checkpoint(tmp_path / "straight" / name)
        b = read_checkpoint(tmp_path / "killed" / name)
        assert (a["best_auc"], a["best_epoch"]) == (b["best_auc"], b["best_epoch"]), name
        assert a["epoch"] == b["epoch"] and a["model"].keys() == b["model"].keys(), name
        for k, v in a["model"].items():
            assert torch.equal(v, b["model"][k]), (name, k)
    assert read_checkpoint(tmp_path / "killed" / "last.pt")["epoch"] == 5
    # every row of the metrics log, but the wall-clock timings, as in the uninterrupted run
    rows = {name: [json.loads(x) for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
            for name in runs}
    timing = {"train_images_per_s", "seconds"}
    assert [r["epoch"] for r in rows["killed"]] == [1, 2, 3, 4, 5]
    assert [{k: v for k, v in r.items() if k not in timing} for r in rows["straight"]] == \
        [{k: v for k, v in r.items() if k not in timing} for r in rows["killed"]]
    assert all(set(r) == set(rows["straight"][0]) for r in rows["killed"])
    # best_auc is the running maximum of val_auc, and best.pt is the epoch of its first maximum
    aucs = [r["val_auc"] for r in rows["killed"]]
    assert [r["best_auc"] for r in rows["killed"]] == [max(aucs[: k + 1]) for k in range(5)]
    assert read_checkpoint(tmp_path / "killed" / "best.pt")["epoch"] == aucs.index(max(aucs)) + 1


# --- on-the-fly injection -------------------------------------------------------------------------------

def test_on_the_fly_injection_is_seeded_and_only_touches_negatives(survey):
    root, df = survey
    cfg = from_mapping({"inject": {"enabled": True, "fraction": 0.5, "priors": "params/injection_priors.yaml"}})
    tr = df[df["split"] == "train"].reset_index(drop=True)
    ds = FinderDataset(tr, root=root)
    inj = OnTheFlyInjector(cfg.inject, tr["psfsize_r"].to_numpy(), torch.device("cpu"))
    x, y, idx = torch.utils.data.default_collate([ds[k] for k in range(24)])
    x1, y1 = inj(x, y, idx, epoch=3)
    x2, y2 = inj(x, y, idx, epoch=3)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    changed = (x1 != x).flatten(1).any(1)
    assert torch.equal(changed, (y1 == 1) & (y == 0)) and 3 <= int(changed.sum()) <= 16
    assert torch.equal(x1[y == 1], x[y == 1])
    x3, _ = inj(x, y, idx, epoch=4)
    assert not torch.equal(x3, x1)


def test_training_on_injected_positives_finds_the_survey_lenses(survey, tmp_path):
    root, df = survey
    only_neg_train = df[(df["split"] == "val") | (df["label"] == 0)]
    doc = small(survey, tmp_path / "run", epochs=4)
    doc["inject"] = {"enabled": True, "fraction": 0.5, "theta_e_min": 1.0, "theta_e_max": 2.5,
                     "source_r_mag_min": 19.0, "source_r_mag_max": 21.0}
    res = train(from_mapping(doc, "test"), manifest=only_neg_train, progress=False, log=None)
    assert res.best_auc > 0.75, res.history


def test_backbone_freezing_trains_only_the_head_then_everything(survey, tmp_path):
    from lenslib.finder.models import build_model

    cfg = from_mapping(small(survey, tmp_path / "run", epochs=2, warmup_epochs=0, freeze_backbone_epochs=1,
                             save_every=1), "test")
    res = train(cfg, progress=False, log=None)
    torch.manual_seed(cfg.train.seed)
    init = dict(build_model("bottlenecked_resnet", base_ch=8).named_parameters())
    e1 = read_checkpoint(tmp_path / "run" / "epoch_001.pt")["model"]
    e2 = read_checkpoint(tmp_path / "run" / "epoch_002.pt")["model"]
    for name, p in init.items():
        frozen_then = torch.equal(e1[name], p.detach())
        assert frozen_then == (not name.startswith("fc.")), name
        assert not torch.equal(e2[name], e1[name]), name
    # unfreezing makes a fresh AdamW and fast-forwards the cosine schedule by one epoch: lr·(1 + cos(π/2))/2
    np.testing.assert_allclose(res.history["lr"], [0.003, 0.0015], rtol=1e-9)



@pytest.mark.parametrize(("arch", "per_group", "epochs", "batch"), [
    ("efficientnet_v2_s", 4, 1, 4),  # lenslib's own EfficientNetV2-S (no torchvision); 20 M parameters: a tiny run
    pytest.param("resnet18", 12, 2, 8, marks=pytest.mark.skipif(
        not torchvision_available(), reason="torchvision is not installed (CI: no wheel matches torch 2.13.0)")),
])
def test_large_architectures_train_freeze_and_reload(survey, tmp_path, arch, per_group, epochs, batch):
    root, df = survey
    few = df.groupby(["split", "label"]).head(per_group)
    cfg = from_mapping(small(survey, tmp_path / "run", arch=arch, epochs=epochs, batch_size=batch,
                             effective_batch=2 * batch, freeze_backbone_epochs=1, warmup_epochs=0, save_every=1),
                       "test")
    res = train(cfg, manifest=few, progress=False, log=None)
    e1 = read_checkpoint(tmp_path / "run" / "epoch_001.pt")["model"]
    head = "classifier.1.weight" if arch == "efficientnet_v2_s" else "fc.weight"
    torch.manual_seed(cfg.train.seed)
    from lenslib.finder.models import build_model

    init = build_model(arch).state_dict()
    first_conv = "features.0.0.weight" if arch == "efficientnet_v2_s" else "conv1.weight"
    assert torch.equal(e1[first_conv], init[first_conv]) and not torch.equal(e1[head], init[head])
    finder = load_checkpoint(tmp_path / "run" / "best.pt")
    assert finder.arch == arch and finder.epoch == res.best_epoch

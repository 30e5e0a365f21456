"""Scoring: manifest → parquet with failures recorded and resume, embeddings, FPR thresholds, checkpoints
in the authors' layout, the CLI, and CPU/GPU agreement of preprocessing where a GPU exists."""

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import lenslib.finder.scoring as scoring
from lenslib.data.cutouts import load_cutouts
from lenslib.finder.checkpoints import load_checkpoint, spec_from_checkpoint
from lenslib.finder.models import BottleneckedResNet, ModelError
from lenslib.finder.preprocess import PreprocessSpec, raw_robust
from lenslib.finder.scoring import ScoringError, embed, fpr_thresholds, score_images, score_manifest
from lenslib.synthetic import SurveySpec, make_survey

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    root = tmp_path_factory.mktemp("survey")
    return root, make_survey(root, SurveySpec(n_negatives=50, n_positives=20, seed=3))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return BottleneckedResNet(base_ch=8).eval()


def test_fpr_thresholds_follow_the_kth_highest_rule():
    rng = np.random.default_rng(1)
    s = rng.uniform(size=1000)
    tau = fpr_thresholds(np.r_[s, np.nan], [0.01, 0.0001, 0.5])
    srt = np.sort(s)[::-1]
    assert tau[0.01] == srt[9] and (s >= tau[0.01]).sum() == 10  # k = ceil(0.01·1000) = 10
    assert tau[0.0001] == srt[0]  # k = max(1, ceil(0.1)) = 1
    assert tau[0.5] == srt[499]
    assert fpr_thresholds([0.2, 0.9], [0.9]) == {0.9: 0.0}  # k = 2 ≥ N → 0
    with pytest.raises(ScoringError, match="no finite negative scores"):
        fpr_thresholds([np.nan], [0.1])
    with pytest.raises(ScoringError, match="target FPR"):
        fpr_thresholds(s, [1.5])


def test_sigmoid_in_float64_keeps_scores_near_one_apart():
    p = scoring.sigmoid64([20.0, 21.0, -800.0, 800.0])
    assert p[0] < p[1] < 1.0 and p[2] == 0.0 and p[3] == 1.0


def test_embeddings_are_the_features_the_head_reads(model, survey):
    root, df = survey
    imgs = load_cutouts(df["cutout_path"].tolist()[:10], root=root)
    e = embed(model, imgs, batch_size=4)
    x = raw_robust(torch.from_numpy(imgs))
    with torch.no_grad():
        np.testing.assert_allclose(e.penultimate, model.embed(x).double().numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(e.logits, model.fc(torch.from_numpy(e.penultimate).float()).squeeze(1).numpy(),
                                   rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(e.blocks["layer2"], model.layer2(model.layer1(model.stem(x))).mean((-2, -1)).numpy(),
                                   rtol=1e-4, atol=1e-6)
    assert {k: v.shape for k, v in e.blocks.items()} == {"stem": (10, 8), "layer1": (10, 16), "layer2": (10, 32),
                                                        "layer3": (10, 64), "layer4": (10, 64)}
    np.testing.assert_allclose(e.scores, score_images(model, imgs), rtol=1e-6)
    assert set(embed(model, imgs[:2], blocks=["layer4"]).blocks) == {"layer4"}
    with pytest.raises(ScoringError, match="unknown block"):
        embed(model, imgs[:2], blocks=["features_3"])


def test_score_manifest_records_bad_files_and_resumes(model, survey, tmp_path, monkeypatch):
    root, df = survey
    df = df.copy()
    bad = root / "cutouts" / "broken.npz"
    bad.write_bytes(b"not an npz")
    df.loc[5, "cutout_path"] = "cutouts/broken.npz"
    out = tmp_path / "scores.parquet"
    real = scoring.load_cutouts
    calls = []

    def dies_in_third_chunk(paths, **kw):
        calls.append(len(paths))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(paths, **kw)

    monkeypatch.setattr(scoring, "load_cutouts", dies_in_third_chunk)
    with pytest.raises(KeyboardInterrupt):
        score_manifest(model, df, out, root=root, chunk_size=16, progress=False)
    assert not out.exists() and len(list((tmp_path / "scores.parquet.parts").glob("part_*.parquet"))) == 2
    calls2 = []
    monkeypatch.setattr(scoring, "load_cutouts", lambda paths, **kw: calls2.append(len(paths)) or real(paths, **kw))
    res = score_manifest(model, df, out, root=root, chunk_size=16, progress=False)
    assert calls2 == [16, 16, 6]  # only the three missing chunks of 70 rows are loaded
    assert not (tmp_path / "scores.parquet.parts").exists()
    back = pd.read_parquet(out)
    assert len(back) == 70 and list(back["galaxy_id"]) == list(df["galaxy_id"]) and back.equals(res)
    assert "broken.npz" in back.loc[5, "error"] and np.isnan(back.loc[5, "score"])
    assert back["error"].drop(index=5).isna().all()
    imgs = load_cutouts(df["cutout_path"].tolist()[:5], root=root)
    np.testing.assert_allclose(back["score"][:5], score_images(model, imgs), rtol=1e-6)
    np.testing.assert_allclose(back["score"], scoring.sigmoid64(back["logit"]))


def test_a_resumed_scoring_never_mixes_in_chunks_of_another_model_or_manifest(model, survey, tmp_path,
                                                                             monkeypatch):
    """Killed after two chunks with one model, rerun into the same file with another: the other model's chunks are
    discarded (and the rerun says so), so every score is the new model's."""
    root, df = survey
    out = tmp_path / "scores.parquet"
    real = scoring.load_cutouts
    calls = []

    def dies_in_third_chunk(paths, **kw):
        calls.append(len(paths))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(paths, **kw)

    monkeypatch.setattr(scoring, "load_cutouts", dies_in_third_chunk)
    with pytest.raises(KeyboardInterrupt):
        score_manifest(model, df, out, root=root, chunk_size=16, progress=False)
    monkeypatch.setattr(scoring, "load_cutouts", real)
    torch.manual_seed(1)
    other = BottleneckedResNet(base_ch=8).eval()
    said = []
    res = score_manifest(other, df, out, root=root, chunk_size=16, progress=False, log=said.append)
    fresh = score_manifest(other, df, tmp_path / "fresh.parquet", root=root, chunk_size=16, progress=False)
    pd.testing.assert_frame_equal(res, fresh)
    assert len(said) == 1 and "2 chunk(s)" in said[0] and "discarded" in said[0]
    assert not np.allclose(res["score"][:16], score_manifest(model, df.iloc[:16], tmp_path / "a.parquet", root=root,
                                                               progress=False)["score"])
    # the same holds for another manifest (rows reordered) and another preprocessing
    fp = scoring.scoring_fingerprint
    base = fp(model, df[["cutout_path"]], PreprocessSpec(), root, 16)
    assert base == fp(model, df[["cutout_path"]].copy(), PreprocessSpec(), root, 16)
    assert base != fp(model, df[["cutout_path"]].iloc[::-1], PreprocessSpec(), root, 16)
    assert base != fp(other, df[["cutout_path"]], PreprocessSpec(), root, 16)
    assert base != fp(model, df[["cutout_path"]], PreprocessSpec(clip_range=20.0), root, 16)
    assert base != fp(model, df[["cutout_path"]], PreprocessSpec(), root, 32)


def test_checkpoints_in_the_authors_layout_and_bare_state_dicts(tmp_path):
    torch.manual_seed(1)
    m = BottleneckedResNet(27)
    authors = {"epoch": 1, "model": m.state_dict(), "best_auc": 0.97,
               "train": {"arch": "bottlenecked_resnet", "base_ch": 27},
               "dataset": {"preprocessing": "raw_robust", "annulus_r_in": 0.0, "annulus_r_out": 0.0}}
    torch.save(authors, tmp_path / "best.pt")
    f = load_checkpoint(tmp_path / "best.pt")
    assert f.arch == "bottlenecked_resnet" and f.epoch == 1 and f.spec == PreprocessSpec()
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in f.model.state_dict().items())
    assert spec_from_checkpoint({"preprocess_spec": {"clip_range": 20.0, "annulus_r_in": 32.5,
                                                     "annulus_r_out": 45.0}}) == PreprocessSpec("raw_robust", 32.5,
                                                                                                  45.0, 20.0)
    torch.save({f"module.{k}": v for k, v in m.state_dict().items()}, tmp_path / "bare.pt")
    assert load_checkpoint(tmp_path / "bare.pt", arch="bottlenecked_resnet", base_ch=27).arch == "bottlenecked_resnet"
    with pytest.raises(ModelError, match="bare state dict says nothing of its architecture"):
        load_checkpoint(tmp_path / "bare.pt")
    with pytest.raises(ModelError, match="weights do not fit bottlenecked_resnet \\(base_ch 16\\)"):
        load_checkpoint(tmp_path / "best.pt", base_ch=16)
    with pytest.raises(ModelError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ModelError, match="junk.pt: not a readable torch checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")


def test_cli_synth_and_score(tmp_path, model):
    p = subprocess.run([sys.executable, "-m", "lenslib", "synth", "--out", str(tmp_path / "s"), "--negatives", "12",
                        "--positives", "6"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    torch.save({"epoch": 3, "model": model.state_dict(), "train": {"arch": "bottlenecked_resnet", "base_ch": 8}},
               tmp_path / "m.pt")
    p = subprocess.run([sys.executable, "-m", "lenslib", "score", "--checkpoint", str(tmp_path / "m.pt"),
                        "--manifest", str(tmp_path / "s" / "manifests" / "synthetic.parquet"), "--root",
                        str(tmp_path / "s"), "--out", str(tmp_path / "o.parquet"), "--split", "val"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    out = pd.read_parquet(tmp_path / "o.parquet")
    assert (out["split"] == "val").all() and out["score"].between(0, 1).all() and len(out) > 0
    p = subprocess.run([sys.executable, "-m", "lenslib", "train", "--config", str(tmp_path / "none.yaml")],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and "none.yaml: file not found" in p.stderr


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_preprocessing_and_scores_agree_on_cpu_and_gpu(model, survey):
    root, df = survey
    imgs = load_cutouts(df["cutout_path"].tolist(), root=root)
    imgs[0, 1, :5] = np.nan
    cpu = raw_robust(torch.from_numpy(imgs))
    gpu = raw_robust(torch.from_numpy(imgs).cuda()).cpu()
    np.testing.assert_allclose(gpu.numpy(), cpu.numpy(), atol=1e-5)
    s_cpu = score_images(model, imgs)
    s_gpu = score_images(model.cuda(), imgs)
    model.cpu()
    np.testing.assert_allclose(s_gpu, s_cpu, atol=1e-4)
    assert math.isfinite(float(gpu.abs().max()))

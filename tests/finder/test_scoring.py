"""Scoring: manifest → parquet with failures recorded and resume (kills mid-chunk and mid-write, another chunk size,
damaged or foreign shards), embeddings, FPR thresholds, checkpoints in the authors' layout, the CLI, and CPU/GPU
agreement of preprocessing where a GPU exists."""

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from scipy.special import expit
from torch import nn

import lenslib.finder.scoring as scoring
from lenslib.data.cutouts import load_cutouts
from lenslib.data.manifests import read_manifest
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


class MeanModel(nn.Module):
    """A cheap finder whose logit of an image depends on that image alone, bit for bit, whatever the batch."""

    def __init__(self, w=(0.7, -1.3, 2.1), b=0.2):
        super().__init__()
        self.w, self.b = nn.Parameter(torch.tensor(w)), nn.Parameter(torch.tensor(b))

    def forward(self, x):
        return (x.mean((2, 3)) * self.w).sum(1, keepdim=True) + self.b


@pytest.fixture(scope="module")
def cheap():
    return MeanModel()


@pytest.fixture(scope="module")
def fresh(cheap, survey, tmp_path_factory):
    """An uninterrupted scoring of the survey by the cheap model."""
    root, df = survey
    return score_manifest(cheap, df, tmp_path_factory.mktemp("fresh") / "s.parquet", root=root, chunk_size=16,
                          progress=False)


def direct_scores(model, images):
    """Logits of the model run by torch in float64 here, and their scores by scipy's expit."""
    with torch.no_grad():
        logits = model.double()(raw_robust(torch.from_numpy(images)).double()).squeeze(1).numpy()
    model.float()
    return logits, expit(logits)


def killed_at_call(monkeypatch, k):
    """Make the k-th read of a chunk's cutouts raise KeyboardInterrupt (the chunks before it are written); returns
    the list of the paths read."""
    real, seen = scoring.load_cutouts, []

    def reads(paths, **kw):
        seen.append(list(paths))
        if len(seen) == k:
            raise KeyboardInterrupt
        return real(paths, **kw)

    monkeypatch.setattr(scoring, "load_cutouts", reads)
    return seen


def shard_files(parts):
    return sorted(f.name for f in parts.glob("part_*.parquet"))


def test_fpr_thresholds_follow_the_kth_highest_rule():
    rng = np.random.default_rng(1)
    s = rng.uniform(size=1000)
    tau = fpr_thresholds(np.r_[s, np.nan], [0.01, 0.0001, 0.5])
    srt = np.sort(s)[::-1]
    assert tau[0.01] == srt[9] and (s >= tau[0.01]).sum() == 10  # k = ceil(0.01·1000) = 10
    assert tau[0.0001] == srt[0]  # k = max(1, ceil(0.1)) = 1
    assert tau[0.5] == srt[499]
    assert fpr_thresholds([0.2, 0.9], [0.9]) == {0.9: 0.0}  # k = 2 ≥ N → 0
    with pytest.raises(ScoringError, match="^no finite negative scores to derive FPR thresholds from$"):
        fpr_thresholds([np.nan], [0.1])
    for f in (1.5, 1.0, 0.0, -0.1):
        with pytest.raises(ScoringError, match=rf"^target FPR must be in \(0, 1\), got {f}$"):
            fpr_thresholds(s, [0.1, f])
    assert list(fpr_thresholds(s, [1e-12, 0.999999])) == [1e-12, 0.999999]
    assert fpr_thresholds([0.3, None, 0.9, 0.5], [0.4]) == {0.4: 0.5}  # None (a missing score) counts as NaN


def test_sigmoid_in_float64_keeps_scores_near_one_apart():
    z = np.r_[20.0, 21.0, -800.0, 800.0, np.linspace(-40, 40, 81), np.nan]
    p = scoring.sigmoid64(z.astype(np.float32).tolist())
    assert p.dtype == np.float64 and p[0] < p[1] < 1.0 and p[2] == 0.0 and p[3] == 1.0
    np.testing.assert_allclose(p[:-1], expit(z[:-1]), rtol=1e-14, atol=0)
    assert np.isnan(p[-1])


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
    good = back.drop(index=5)
    logits, scores = direct_scores(model, load_cutouts(good["cutout_path"].tolist(), root=root))
    np.testing.assert_allclose(good["logit"], logits, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(good["score"], scores, rtol=1e-6, atol=1e-9)
    assert back["logit"].dtype == back["score"].dtype == np.float64 and np.isnan(back.loc[5, "logit"])
    keep = [c for c in scoring.KEEP_COLUMNS if c in df.columns and c != "cutout_path"]
    assert pq.read_schema(out).names == ["cutout_path", *keep, "logit", "score", "error"]  # no index column


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
    assert base != fp(model, df[["cutout_path"]], PreprocessSpec(), root / "elsewhere", 16)
    assert base != fp(model, df[["cutout_path", "galaxy_id"]], PreprocessSpec(), root, 16)
    assert base == fp(model, df[["cutout_path"]], PreprocessSpec(), root, 32) == fp(model, df[["cutout_path"]],
                                                                                   PreprocessSpec(), root)


def one_tensor(name, t):
    m = nn.Module()
    m.register_buffer(name, t)
    return m


def test_the_fingerprint_tells_weights_apart_by_name_shape_and_dtype_even_with_the_same_bytes(survey):
    _, df = survey
    rows, spec = df[["cutout_path"]], PreprocessSpec()
    fps = {scoring.scoring_fingerprint(m, rows, spec, None) for m in
           [one_tensor("a", torch.zeros(2, 3)), one_tensor("b", torch.zeros(2, 3)), one_tensor("a", torch.zeros(3, 2)),
            one_tensor("a", torch.zeros(6, dtype=torch.int32))]}
    assert len(fps) == 4
    assert scoring.scoring_fingerprint(one_tensor("a", torch.zeros(2, 3)), rows, spec, None) in fps


def test_a_kill_while_a_shard_is_written_leaves_no_partial_shard_and_the_resume_is_the_fresh_result(
        cheap, survey, fresh, tmp_path, monkeypatch):
    root, df = survey
    out, parts = tmp_path / "s.parquet", tmp_path / "s.parquet.parts"
    real, writes = pq.write_table, []

    def dies_half_way_through_the_third(table, where, **kw):
        writes.append(Path(where))
        if len(writes) == 1:  # the job holds the folder's lock, under its name
            assert json.loads((parts / ".lenslib.lock").read_text())["job"] == "scoring"
        real(table, where, **kw)
        if len(writes) == 3:
            data = Path(where).read_bytes()
            Path(where).write_bytes(data[:len(data) // 2])
            raise KeyboardInterrupt

    monkeypatch.setattr(scoring.pq, "write_table", dies_half_way_through_the_third)
    with pytest.raises(KeyboardInterrupt):
        score_manifest(cheap, df, out, root=root, chunk_size=16, batch_size=4, progress=False)
    assert writes[2].name != scoring.part_name(32, 16) and writes[2].parent == parts  # written to a temporary
    assert shard_files(parts) == [scoring.part_name(0, 16), scoring.part_name(16, 16)] and not out.exists()
    assert not writes[2].exists()  # the temporary went with the exception
    for name in shard_files(parts):
        assert len(pq.read_table(parts / name)) == 16
    monkeypatch.setattr(scoring.pq, "write_table", real)
    seen = killed_at_call(monkeypatch, 0)
    said = []
    res = score_manifest(cheap, df, out, root=root, chunk_size=16, batch_size=4, progress=False, log=said.append)
    assert [len(p) for p in seen] == [16, 16, 6] and said == []
    pd.testing.assert_frame_equal(res, fresh)
    pd.testing.assert_frame_equal(pd.read_parquet(out), fresh)


def test_resuming_with_other_chunk_sizes_scores_each_row_once_and_gives_the_fresh_result(cheap, survey, fresh,
                                                                                         tmp_path, monkeypatch):
    root, df = survey
    out, parts = tmp_path / "s.parquet", tmp_path / "s.parquet.parts"
    paths = df["cutout_path"].tolist()
    read = []
    for chunk_size in (16, 10):  # killed after two chunks each time
        seen = killed_at_call(monkeypatch, 3)
        with pytest.raises(KeyboardInterrupt):
            score_manifest(cheap, df, out, root=root, chunk_size=chunk_size, batch_size=4, progress=False)
        read += [p for chunk in seen[:2] for p in chunk]
    assert shard_files(parts) == [scoring.part_name(s0, c) for s0, c in [(0, 16), (16, 16), (32, 10), (42, 10)]]
    seen = killed_at_call(monkeypatch, 0)
    said = []
    res = score_manifest(cheap, df, out, root=root, chunk_size=7, batch_size=4, progress=False, log=said.append)
    assert [len(c) for c in seen] == [7, 7, 4] and said == []
    assert read + [p for chunk in seen for p in chunk] == paths  # every row read once, in order
    pd.testing.assert_frame_equal(res, fresh)
    assert not parts.exists()


def test_resuming_with_a_larger_chunk_size_than_the_shards(cheap, survey, fresh, tmp_path, monkeypatch):
    root, df = survey
    out, parts = tmp_path / "s.parquet", tmp_path / "s.parquet.parts"
    killed_at_call(monkeypatch, 4)
    with pytest.raises(KeyboardInterrupt):
        score_manifest(cheap, df, out, root=root, chunk_size=5, batch_size=4, progress=False)
    (parts / scoring.part_name(5, 5)).unlink()  # a hole: rows 5..9
    seen = killed_at_call(monkeypatch, 0)
    res = score_manifest(cheap, df, out, root=root, chunk_size=100, batch_size=4, progress=False)
    assert [len(c) for c in seen] == [5, 55]
    assert seen[0] == df["cutout_path"].tolist()[5:10] and seen[1] == df["cutout_path"].tolist()[15:]
    pd.testing.assert_frame_equal(res, fresh)


def _rewrite(path, table):
    pq.write_table(table, path)


def _damage(kind, parts, other_parts):
    """Spoil the shard of rows 16..31 (or add a stray file) in one way; returns the name of the spoilt file."""
    name = scoring.part_name(16, 16)
    f = parts / name
    t = pq.read_table(f)
    if kind == "truncated":
        f.write_bytes(f.read_bytes()[:300])
    elif kind == "another model's":
        f.write_bytes((other_parts / name).read_bytes())
    elif kind == "no fingerprint":
        _rewrite(f, t.replace_schema_metadata({k: v for k, v in t.schema.metadata.items()
                                               if k != scoring.SHARD_KEY}))
    elif kind == "other ids":
        ids = pa.array([f"x{k}" for k in range(16)])
        _rewrite(f, t.set_column(t.column_names.index("galaxy_id"), "galaxy_id", ids))
    elif kind == "a missing column":
        _rewrite(f, t.drop(["error"]))
    elif kind == "fewer rows":
        _rewrite(f, t.slice(0, 15))
    elif kind == "beyond the manifest":
        name = scoring.part_name(64, 16)
        (parts / name).write_bytes(f.read_bytes())
    elif kind == "an empty range":
        name = scoring.part_name(16, 0)
        (parts / name).write_bytes(f.read_bytes())
    elif kind == "named by chunk index":
        name = "part_1.parquet"
        (parts / name).write_bytes(f.read_bytes())
    return name


DAMAGES = {"truncated": "unreadable", "another model's": "written by another job",
           "no fingerprint": "written by another job", "other ids": "its ids are not those of the manifest rows 16..31",
           "a missing column": "columns ['cutout_path', ", "fewer rows": "15 rows, its name says 16",
           "beyond the manifest": "rows 64..79 are not in the manifest of 70 rows",
           "an empty range": "its name says it holds no rows",
           "named by chunk index": "its name does not say which rows it holds"}


@pytest.mark.parametrize("kind", DAMAGES)
def test_a_damaged_or_foreign_shard_is_rescored_not_trusted(kind, cheap, survey, fresh, tmp_path, monkeypatch):
    root, df = survey
    out, parts = tmp_path / "s.parquet", tmp_path / "s.parquet.parts"
    torch.manual_seed(5)
    other = MeanModel(b=0.3)
    for m, o in [(cheap, out), (other, tmp_path / "other.parquet")]:
        killed_at_call(monkeypatch, 3)
        with pytest.raises(KeyboardInterrupt):
            score_manifest(m, df, o, root=root, chunk_size=16, batch_size=4, progress=False)
    name = _damage(kind, parts, tmp_path / "other.parquet.parts")
    seen = killed_at_call(monkeypatch, 0)
    said = []
    res = score_manifest(cheap, df, out, root=root, chunk_size=16, batch_size=4, progress=False, log=said.append)
    assert len(said) == 1 and f"{name}: {DAMAGES[kind]}" in said[0] and "1 shard(s)" in said[0], said
    rescored = kind not in ("beyond the manifest", "an empty range", "named by chunk index")
    assert [len(c) for c in seen] == ([16, 16, 16, 6] if rescored else [16, 16, 6])
    pd.testing.assert_frame_equal(res, fresh)
    assert not parts.exists()


def test_shards_that_overlap_a_kept_one_are_dropped(cheap, survey, fresh, tmp_path, monkeypatch):
    root, df = survey
    out, parts = tmp_path / "s.parquet", tmp_path / "s.parquet.parts"
    killed_at_call(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        score_manifest(cheap, df, out, root=root, chunk_size=16, batch_size=4, progress=False)
    t = pq.read_table(parts / scoring.part_name(0, 16))
    pq.write_table(t.slice(0, 8), parts / scoring.part_name(0, 8))  # valid, inside rows 0..15
    pq.write_table(t.slice(8, 8), parts / scoring.part_name(8, 8))  # valid, overlaps 0..15
    seen = killed_at_call(monkeypatch, 0)
    said = []
    res = score_manifest(cheap, df, out, root=root, chunk_size=16, batch_size=4, progress=False, log=said.append)
    assert [len(c) for c in seen] == [16, 16, 6] and said == []
    pd.testing.assert_frame_equal(res, fresh)


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
    manifest = read_manifest(tmp_path / "s" / "manifests" / "synthetic.parquet")
    val = manifest[manifest["split"] == "val"]
    here = score_manifest(load_checkpoint(tmp_path / "m.pt").model, val, tmp_path / "here.parquet",
                          root=tmp_path / "s", progress=False)
    assert len(out) == len(val) > 0 and (out["split"] == "val").all()
    assert out["galaxy_id"].tolist() == val["galaxy_id"].tolist() == here["galaxy_id"].tolist()
    assert out["cutout_path"].tolist() == here["cutout_path"].tolist() and out["error"].isna().all()
    np.testing.assert_allclose(out["score"], here["score"], rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(out["logit"], here["logit"], rtol=1e-6, atol=1e-9)
    assert f"{len(val)} rows scored (0 failed to load)" in p.stdout
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


class Blocks(nn.Module):
    """A model that has only the attributes given (the layouts feature_blocks and the pooling look-up know)."""

    def __init__(self, **mods):
        super().__init__()
        for k, v in mods.items():
            setattr(self, k, v)


def test_feature_blocks_and_pooling_of_each_known_layout():
    feats = nn.Sequential(nn.Identity(), nn.ReLU(), nn.Tanh())
    got = scoring.feature_blocks(Blocks(features=feats, stem=nn.ReLU()))  # EfficientNet: features win
    assert list(got) == ["features_0", "features_1", "features_2"] and all(got[f"features_{i}"] is feats[i]
                                                                           for i in range(3))
    layers = {f"layer{k}": nn.Linear(k, k) for k in range(1, 5)}
    stem, mp = nn.ReLU(), nn.MaxPool2d(2)
    for model, first in [(Blocks(stem=stem, maxpool=mp, features=nn.ReLU(), **layers), stem),
                         (Blocks(maxpool=mp, **layers), mp)]:  # lenslib's ResNets; torchvision's (maxpool as stem)
        got = scoring.feature_blocks(model)
        assert list(got) == ["stem", "layer1", "layer2", "layer3", "layer4"] and got["stem"] is first
        assert all(got[k] is v for k, v in layers.items())
    with pytest.raises(ScoringError, match="no known feature blocks in Blocks"):
        scoring.feature_blocks(Blocks(**layers))
    avg, pool = nn.AdaptiveAvgPool2d(1), nn.AdaptiveMaxPool2d(1)
    assert scoring._pool_module(Blocks(avgpool=avg, pool=pool)) is avg
    assert scoring._pool_module(Blocks(pool=pool)) is pool
    with pytest.raises(ScoringError, match=r"no global pooling layer \(avgpool/pool\) in Blocks"):
        scoring._pool_module(Blocks(stem=stem))


def test_embeddings_written_to_npz_read_back(model, survey, tmp_path):
    root, df = survey
    imgs = load_cutouts(df["cutout_path"].tolist()[:3], root=root)
    e = embed(model, imgs, blocks=["layer1", "stem"])
    e.to_npz(tmp_path / "e.npz", prefix="x_")
    with np.load(tmp_path / "e.npz") as z:
        assert sorted(z.files) == ["x_emb", "x_layer1", "x_logits", "x_scores", "x_stem"]
        for k, v in [("x_emb", e.penultimate), ("x_logits", e.logits), ("x_scores", e.scores),
                     ("x_layer1", e.blocks["layer1"]), ("x_stem", e.blocks["stem"])]:
            np.testing.assert_array_equal(z[k], v)
    e.to_npz(tmp_path / "f.npz")
    with np.load(tmp_path / "f.npz") as z:
        assert sorted(z.files) == ["emb", "layer1", "logits", "scores", "stem"]
    assert embed(model, imgs, blocks=False).blocks == {} and embed(model, imgs, blocks=None).blocks == {}


def test_predict_logits_in_eval_mode_in_order_and_the_mode_is_restored(model, survey):
    root, df = survey
    imgs = load_cutouts(df["cutout_path"].tolist()[:10], root=root)
    labels = np.arange(10) % 2
    data = [(torch.from_numpy(imgs[i]), int(labels[i]), f"id{i}") for i in range(10)]
    model.train()
    try:
        lg, y = scoring.predict_logits(model, data, batch_size=4)
        assert model.training
        model.eval()
        logits, _ = direct_scores(model, imgs)
    finally:
        model.eval()
    assert lg.dtype == np.float64 and lg.shape == (10,)
    np.testing.assert_allclose(lg, logits, rtol=1e-5, atol=1e-6)
    with torch.no_grad():  # in batches of the size asked for, to the bit
        x = raw_robust(torch.from_numpy(imgs))
        by4 = torch.cat([model(x[i:i + 4]) for i in range(0, 10, 4)]).squeeze(1).double().numpy()
    np.testing.assert_array_equal(lg, by4)
    np.testing.assert_array_equal(y, labels)
    lg2, _ = scoring.predict_logits(model, data, spec=PreprocessSpec(clip_range=0.5), batch_size=3)
    assert not model.training and not np.allclose(lg2, lg)


def test_a_model_without_parameters_is_run_on_the_cpu(survey):
    class NoWeights(nn.Module):
        def forward(self, x):
            return x.mean((1, 2, 3))[:, None]

    root, df = survey
    imgs = load_cutouts(df["cutout_path"].tolist()[:5], root=root)
    want = expit(raw_robust(torch.from_numpy(imgs)).double().mean((1, 2, 3)).numpy())
    np.testing.assert_allclose(score_images(NoWeights(), imgs, batch_size=2), want, rtol=1e-6)
    assert scoring._device(NoWeights()) == torch.device("cpu")
    np.testing.assert_allclose(score_images(NoWeights(), torch.from_numpy(imgs)), want, rtol=1e-6)
    assert score_images(NoWeights(), imgs[:0]).shape == (0,)


def test_progress_bar_and_messages_go_to_stderr(cheap, survey, fresh, tmp_path, monkeypatch, capsys):
    root, df = survey
    out, parts = tmp_path / "s.parquet", tmp_path / "s.parquet.parts"
    killed_at_call(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        score_manifest(cheap, df, out, root=root, chunk_size=16, progress=False)
    assert capsys.readouterr().err == ""
    (parts / scoring.part_name(16, 16)).write_bytes(b"junk")
    monkeypatch.setattr(scoring, "load_cutouts", load_cutouts)
    res = score_manifest(cheap, df, out, root=root, chunk_size=16)  # a bar by default
    err = capsys.readouterr().err
    assert f"1 shard(s) in {parts} cannot be reused" in err and "part_0000000016_16.parquet: unreadable" in err
    assert re.search(r"scoring: +23%\|.*\| 16/70 ", err) and re.search(r"scoring: +100%\|.*\| 70/70 ", err)
    assert "row/s" in err or "s/row" in err
    pd.testing.assert_frame_equal(res, fresh)


def test_an_empty_manifest_gives_an_empty_table_and_bad_arguments_are_refused(cheap, survey, tmp_path):
    root, df = survey
    res = score_manifest(cheap, df.iloc[:0], tmp_path / "e.parquet", root=root, progress=False)
    keep = [c for c in scoring.KEEP_COLUMNS if c in df.columns and c != "cutout_path"]
    assert len(res) == 0 and list(res.columns) == ["cutout_path", *keep, "logit", "score", "error"]
    for kw in [{"batch_size": 0}, {"chunk_size": 0}]:
        with pytest.raises(ScoringError, match="batch_size and chunk_size must be ≥ 1"):
            score_manifest(cheap, df, tmp_path / "x.parquet", root=root, progress=False, **kw)
    assert len(df.columns) > 12
    with pytest.raises(ScoringError) as exc:
        score_manifest(cheap, df, tmp_path / "x.parquet", root=root, path_col="path", progress=False)
    assert str(exc.value) == f"the manifest has no column 'path' (columns: {list(df.columns)[:12]})"
    small = df.iloc[:3].astype({"galaxy_id": "string"})
    one = score_manifest(cheap, small, tmp_path / "one.parquet", root=root, batch_size=1, chunk_size=1,
                         progress=False)  # the smallest sizes are allowed
    assert one["galaxy_id"].dtype == "string" and one["galaxy_id"].tolist() == small["galaxy_id"].tolist()
    assert one["score"].notna().all()


def test_a_kill_after_the_last_shard_keeps_every_shard_down_to_a_one_row_last_one(cheap, survey, tmp_path,
                                                                                 monkeypatch):
    root, df = survey
    df = df.iloc[:10]
    out, parts = tmp_path / "s.parquet", tmp_path / "s.parquet.parts"

    def killed(*a, **kw):
        raise KeyboardInterrupt

    with monkeypatch.context() as mp:
        mp.setattr(scoring.pd, "concat", killed)
        with pytest.raises(KeyboardInterrupt):
            score_manifest(cheap, df, out, root=root, chunk_size=3, progress=False)
    assert shard_files(parts) == [scoring.part_name(s0, c) for s0, c in [(0, 3), (3, 3), (6, 3), (9, 1)]]
    (parts / scoring.part_name(3, 3)).unlink()
    seen = killed_at_call(monkeypatch, 0)
    res = score_manifest(cheap, df, out, root=root, chunk_size=2, progress=False)
    assert seen == [df["cutout_path"].tolist()[3:5], df["cutout_path"].tolist()[5:6]]
    fresh = score_manifest(cheap, df, tmp_path / "fresh.parquet", root=root, chunk_size=10, progress=False)
    pd.testing.assert_frame_equal(res, fresh)


def test_a_chunk_of_only_unreadable_files_still_has_float_logits(cheap, survey, tmp_path):
    root, df = survey
    bad = df.iloc[:3].assign(cutout_path=["none1.npz", "none2.npz", "none3.npz"])
    none = score_manifest(cheap, bad, tmp_path / "none.parquet", root=root, progress=False)
    assert none["logit"].dtype == none["score"].dtype == np.float64 and none["logit"].isna().all()
    res = score_manifest(cheap, pd.concat([bad, df.iloc[3:5]], ignore_index=True), tmp_path / "s.parquet",
                         root=root, chunk_size=3, progress=False)
    assert res["logit"].dtype == res["score"].dtype == np.float64
    assert res["logit"][:3].isna().all() and res["score"][:3].isna().all() and res["error"][:3].notna().all()
    assert res["score"][3:].notna().all() and res["error"][3:].isna().all()


def test_the_store_is_what_the_cutouts_are_read_from(cheap, survey, tmp_path, monkeypatch):
    root, df = survey
    store, stores = object(), []

    def reads(paths, store=None, **kw):
        stores.append(store)
        return load_cutouts(paths, **kw)

    monkeypatch.setattr(scoring, "load_cutouts", reads)
    res = score_manifest(cheap, df.iloc[:6], tmp_path / "s.parquet", root=root, store=store, chunk_size=4,
                         progress=False)
    assert stores == [store, store] and res["score"].notna().all()


def test_a_resume_with_another_preprocessing_or_data_root_starts_clean(cheap, survey, tmp_path, monkeypatch):
    root, df = survey
    link = tmp_path / "same-data"
    link.symlink_to(root)
    out = tmp_path / "s.parquet"
    for spec, where in [(PreprocessSpec(clip_range=0.5), root), (PreprocessSpec(), link)]:
        killed_at_call(monkeypatch, 3)
        with pytest.raises(KeyboardInterrupt):
            score_manifest(cheap, df, out, spec=PreprocessSpec(), root=root, chunk_size=16, progress=False)
        said = []
        seen = killed_at_call(monkeypatch, 0)
        res = score_manifest(cheap, df, out, spec=spec, root=where, chunk_size=16, progress=False, log=said.append)
        assert len(said) == 1 and "2 chunk(s)" in said[0] and "discarded" in said[0]
        assert [len(c) for c in seen] == [16, 16, 16, 16, 6]
        fresh = score_manifest(cheap, df, tmp_path / "fresh.parquet", spec=spec, root=where, chunk_size=16,
                               progress=False)
        pd.testing.assert_frame_equal(res, fresh)


class _PicklingExecutor:
    """An executor that is not local: it runs each task here on a pickled copy of the context, as a Dask
    worker would receive it (the Dask cluster itself is tested in tests/parallel/test_dask.py)."""

    kind = "dask"

    def __init__(self):
        self.items: list = []
        self.calls: list = []

    def map(self, fn, context, items, *, desc="tasks", progress=True):
        import pickle

        ctx = pickle.loads(pickle.dumps(context))
        self.items += list(items)
        self.calls.append((desc, progress))
        return [fn(ctx, item) for item in items]


def test_scoring_as_tasks_on_a_pickled_context_equals_scoring_here(tmp_path):
    from lenslib.data.cutouts import save_cutout
    from lenslib.data.storage import open_store
    from lenslib.finder.models import build_model
    from lenslib.finder.scoring import score_manifest

    rng = np.random.default_rng(4)
    paths = []
    for k in range(11):
        save_cutout(tmp_path / "c" / f"g{k}.npz", rng.normal(0, 0.02, (101, 101, 3)).astype(np.float32), {})
        paths.append(f"c/g{k}.npz")
    (tmp_path / "c" / "g5.npz").write_bytes(b"broken")
    manifest = pd.DataFrame({"cutout_path": paths, "galaxy_id": [f"g{k}" for k in range(11)]})
    torch.manual_seed(0)
    model = build_model("bottlenecked_resnet", base_ch=6).eval()
    here = score_manifest(model, manifest, tmp_path / "here.parquet", root=tmp_path, chunk_size=4, progress=False)
    ex = _PicklingExecutor()
    tasks = score_manifest(model, manifest, tmp_path / "tasks.parquet", root=tmp_path, chunk_size=4, progress=False,
                           executor=ex)
    assert ex.items == [(0, 4), (4, 4), (8, 3)] and ex.calls == [("scoring", False)]
    pd.testing.assert_frame_equal(tasks, here)
    assert (tmp_path / "tasks.parquet").read_bytes() == (tmp_path / "here.parquet").read_bytes()
    assert tasks["error"].notna().tolist() == [k == 5 for k in range(11)]
    ex2 = _PicklingExecutor()  # through a store, which the context reopens from its URI after pickling
    store = score_manifest(model, manifest, tmp_path / "store.parquet", store=open_store(str(tmp_path)),
                           chunk_size=4, progress=False, executor=ex2)
    assert ex2.items == [(0, 4), (4, 4), (8, 3)]
    pd.testing.assert_frame_equal(store, here)


def test_a_scoring_task_whose_shard_exists_does_not_redo_it(tmp_path):
    from lenslib.data.cutouts import save_cutout
    from lenslib.finder.models import build_model
    from lenslib.finder.scoring import ScoringContext, part_name, score_chunk_task, scoring_fingerprint

    rng = np.random.default_rng(5)
    for k in range(3):
        save_cutout(tmp_path / f"g{k}.npz", rng.normal(0, 0.02, (101, 101, 3)).astype(np.float32), {})
    ids = pd.DataFrame({"cutout_path": [f"g{k}.npz" for k in range(3)]})
    model = build_model("bottlenecked_resnet", base_ch=6).eval()
    from lenslib.finder.preprocess import PreprocessSpec

    fp = scoring_fingerprint(model, ids, PreprocessSpec(), tmp_path)
    ctx = ScoringContext(model, ids, PreprocessSpec(), tmp_path, None, "cutout_path", 2, 1, tmp_path / "parts", fp)
    assert score_chunk_task(ctx, (1, 2)) == part_name(1, 2)
    shard = tmp_path / "parts" / part_name(1, 2)
    got = pd.read_parquet(shard)
    assert got["cutout_path"].tolist() == ["g1.npz", "g2.npz"] and got["score"].between(0, 1).all()
    mtime = shard.stat().st_mtime_ns
    score_chunk_task(ctx, (1, 2))
    assert shard.stat().st_mtime_ns == mtime

"""The `paper` profile end to end on a small bucket in the authors' layout, served by a real S3 endpoint:
every artefact has the D06 schema, the counts recount from the per-injection rows, the bright arcs are
paired, a killed run resumes to the same artefacts, and bad inputs are named."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lenslib.data.storage import open_store
from lenslib.experiments.artefacts import D06Artefacts
from lenslib.experiments.compute import grid
from lenslib.experiments.compute.inputs import RecomputeError, open_inputs
from lenslib.survey import depth_mag
from tests.conftest import BUCKET, copy_project
from tests.paper_bucket import CHECKPOINT_KEY, MANIFEST_KEY, make_bucket

pytestmark = pytest.mark.slow

SMALL = ["grid_injections_per_cell=4", "fpr_negatives=120", "tier_a_negatives=60", "bright_arc_hosts=6",
         "probe_samples=12", "probe_permutations=20", "probe_bootstraps=50", "probe_umap=false", "device=cpu"]
PREFIX = "stronglens_calibration/"
ENV = {"SOURCE_DATE_EPOCH": "1767225600"}  # fixed timestamps: byte-identical artefacts


def sets(*pairs: str) -> list[str]:
    return [a for p in pairs for a in ("--set", p)]


def lenslib(cwd: Path, *args: str, timeout: int = 900, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lenslib", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **ENV, **(env or {})})


@pytest.fixture(scope="module")
def bucket(tmp_path_factory, shared) -> Path:
    root = tmp_path_factory.mktemp("bucket") / "stronglens_calibration"
    make_bucket(root, shared("dr10_samples"))
    return root


@pytest.fixture(scope="module")
def paper_run(tmp_path_factory, bucket, s3_endpoint):
    """`python -m lenslib run --profile paper` against the bucket on 127.0.0.1, small sizes, the whole book."""
    client = s3_endpoint["client"]
    for path in sorted(bucket.rglob("*")):
        if path.is_file():
            client.put_object(Bucket=BUCKET, Key=PREFIX + path.relative_to(bucket).as_posix(), Body=path.read_bytes())
    project = copy_project(tmp_path_factory.mktemp("paper"))
    out = project.parent / "out"
    p = lenslib(project, "run", "--profile", "paper",
                *sets(f"data_uri=s3://{BUCKET}/{PREFIX}", f"s3_endpoint_url={s3_endpoint['endpoint_url']}",
                      "s3_anonymous=true", f"output_dir={out}", *SMALL))
    assert p.returncode == 0, (p.stdout[-2000:], p.stderr[-4000:])
    return project, out / "results", p


def _kind(v) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    return type(v).__name__


DATA_KEY = re.compile(r"^(p>|lensed_|\d|REAL_|INJ_)")


def schema(obj):
    """Keys and value kinds, recursively; mappings keyed by data (bins, thresholds, θ_E) become {"*": ...}."""
    if isinstance(obj, dict):
        out = {k: schema(v) for k, v in obj.items() if not DATA_KEY.match(str(k))}
        data = [schema(v) for k, v in obj.items() if DATA_KEY.match(str(k))]
        if data:
            merged: dict = {}
            for v in data:
                merged = _merge(merged, v)
            out["*"] = merged
        return out
    if isinstance(obj, list):
        return [schema(obj[0])] if obj else []
    return _kind(obj)


def _merge(a, b):
    if isinstance(a, dict) and isinstance(b, dict):
        return {k: _merge(a.get(k, {}), b.get(k, {})) if k in a and k in b else a.get(k, b.get(k)) for k in {*a, *b}}
    return b if a in ({}, None) else a


def same_schema(ours, theirs, where: str = "") -> list[str]:
    """Differences between two schemas; ``NoneType`` matches anything (nullable fields), empty containers too."""
    if "NoneType" in (ours, theirs) or ours in ({}, []) or theirs in ({}, []):
        return []
    if isinstance(theirs, dict) and isinstance(ours, dict):
        out = [f"{where}: keys {sorted(set(theirs) - set(ours))} missing, {sorted(set(ours) - set(theirs))} extra"] \
            if set(ours) != set(theirs) else []
        for k in set(ours) & set(theirs):
            out += same_schema(ours[k], theirs[k], f"{where}/{k}")
        return out
    if isinstance(theirs, list) and isinstance(ours, list):
        return same_schema(ours[0], theirs[0], where + "[]") if ours and theirs else []
    return [] if ours == theirs else [f"{where}: {ours} vs D06 {theirs}"]


JSON_ARTEFACTS = ["tier_a_scoring/real_lens_scoring_results.json", "grid_no_poisson/selection_function_meta.json",
                  "grid_poisson/selection_function_meta.json", "poisson_diagnostics/d06_poisson_diagnostics.json",
                  "linear_probe/feature_space_results.json", "linear_probe/permutation_bootstrap_results.json",
                  "gallery/gallery_data.json", "gallery/missed_tier_a.json",
                  "comparison_figure/comparison_audit_v2.json",
                  *[f"ba_{v}/bright_arc_results.json" for v in ("baseline", "poisson", "clip20", "poisson_clip20",
                                                                 "unrestricted", "gain_1e12")]]


@pytest.mark.parametrize("key", JSON_ARTEFACTS)
def test_every_json_artefact_has_the_d06_schema(paper_run, d06, key):
    _, results, _ = paper_run
    ours, theirs = json.loads((results / key).read_text()), json.loads((d06 / key).read_text())
    assert not same_schema(schema(ours), schema(theirs)), same_schema(schema(ours), schema(theirs))


def test_provenance_has_the_d06_layout_and_hashes_every_input(paper_run, d06, bucket):
    _, results, _ = paper_run
    prov = json.loads((results / "provenance.json").read_text())
    theirs = json.loads((d06 / "provenance.json").read_text())
    assert set(theirs) <= set(prov) and {"git_commit", "device", "packages", "sources"} <= set(prov)
    import hashlib

    for name, key in (("manifest", MANIFEST_KEY), ("checkpoint", CHECKPOINT_KEY)):
        entry = prov["files"][f"inputs/{name}"]
        assert entry == {"sha256": hashlib.sha256((bucket / key).read_bytes()).hexdigest(),
                         "size_bytes": (bucket / key).stat().st_size}
    assert "lenslib/experiments/compute/grid.py" in prov["files"]


def test_grid_csv_has_the_d06_columns_and_recounts_from_the_injections(paper_run, d06):
    _, results, _ = paper_run
    theirs = pd.read_csv(d06 / "grid_poisson" / "selection_function.csv", nrows=50)
    for cond in ("no_poisson", "poisson"):
        csv = pd.read_csv(results / f"grid_{cond}" / "selection_function.csv")
        assert list(csv.columns) == list(theirs.columns)
        assert dict(csv.dtypes.astype(str)) == dict(theirs.dtypes.astype(str))
        inj = pd.read_parquet(results / f"grid_{cond}" / "injections.parquet")
        meta = json.loads((results / f"grid_{cond}" / "selection_function_meta.json").read_text())
        n_cells = 11 * 7 * 5
        n_nonempty = inj["cell_idx"].nunique()
        assert len(csv) == n_cells * 5 + n_nonempty * 5 * 7 and meta["n_cells"] == n_cells
        assert meta["total_injections_ok"] == len(inj) and (inj.groupby("cell_idx").size() == 4).all()
        # an independent recount: every (cell, threshold) "all" row from the per-injection scores
        cells = grid.GridSpec().cells().set_index("cell_idx")
        inj = inj.join(cells[["psf_fwhm", "depth_5sig"]], on="cell_idx")
        for (t, _kind), rows in csv[(csv["source_mag_bin"] == "all") & (csv["n_injections"] > 0)].groupby(
                ["threshold", "threshold_type"]):
            recount = inj.assign(hit=inj["score"] >= t).groupby(["theta_e", "psf_fwhm", "depth_5sig"])["hit"].agg(
                ["size", "sum"])
            got = rows.set_index(["theta_e", "psf_fwhm", "depth_5sig"])[["n_injections", "n_detected"]]
            assert np.array_equal(got.sort_index().to_numpy(), recount.sort_index().to_numpy())
        lensed = csv[(csv["source_mag_bin"] == "lensed_20-22") & (csv["threshold"] == 0.3)]
        mag = inj["lensed_r_mag"]
        assert lensed["n_injections"].sum() == int(((mag >= 20) & (mag < 22)).sum())
    a = pd.read_parquet(results / "grid_no_poisson" / "injections.parquet")
    b = pd.read_parquet(results / "grid_poisson" / "injections.parquet")
    same = ["inj_id", "host_galaxy_id", "inj_seed", "beta_frac", "re_arcsec", "r_mag"]
    pd.testing.assert_frame_equal(a[same], b[same])  # the conditions share hosts, geometry and seeds


def test_bright_arcs_are_paired_across_bins_and_variants(paper_run):
    _, results, _ = paper_run
    t = {v: pd.read_parquet(results / f"ba_{v}" / "injection_metadata_scored.parquet")
         for v in ("baseline", "poisson", "clip20", "poisson_clip20", "unrestricted", "gain_1e12")}
    hosts = t["baseline"].groupby("mag_bin")["host_cutout_path"].apply(tuple)
    assert hosts.nunique() == 1 and len(hosts) == 8  # the same hosts in every bin
    for v, df in t.items():
        assert df[["mag_bin", "host_idx", "host_cutout_path", "injection_seed"]].equals(
            t["baseline"][["mag_bin", "host_idx", "host_cutout_path", "injection_seed"]]), v
    geometry = ["beta_frac", "source_re", "lens_q", "lens_shear_g1", "target_mag"]
    for v in ("poisson", "clip20", "poisson_clip20", "gain_1e12"):
        assert t[v][geometry].equals(t["baseline"][geometry]), v
    assert not t["unrestricted"]["beta_frac"].equals(t["baseline"]["beta_frac"])
    assert t["unrestricted"]["source_re"].equals(t["baseline"]["source_re"])
    for v in t:  # the summary recounts from the per-injection scores
        doc = json.loads((results / f"ba_{v}" / "bright_arc_results.json").read_text())
        for b, r in doc["results_by_bin"].items():
            s = t[v].loc[t[v]["mag_bin"] == b, "cnn_score"]
            assert r["n_scored"] == len(s) and math.isclose(r["detection_rate_p03"], float((s >= 0.3).mean()))


def test_result_notebooks_and_claims_run_on_the_recomputed_artefacts(paper_run):
    project, results, run = paper_run
    for nb in ("01_tier_a_recall", "02_selection_function", "03_poisson_noise", "04_bright_arcs",
               "05_linear_probe", "06_gallery", "07_claims", "08_provenance"):
        page = (project / "_build" / "paper" / "book" / "executed" / f"{nb}.html").read_text()
        assert "Traceback" not in page, nb
    p = lenslib(project, "claims", "--profile", "paper", "--results-uri", str(results))
    doc = json.loads(p.stdout)
    assert doc["summary"]["n_claims"] >= 81 and doc["summary"]["error"] == 0, \
        [c for c in doc["claims"] if c["status"] == "error"][:3]
    art = D06Artefacts(open_store(str(results)))
    from lenslib.experiments import grid as grid_tables
    from lenslib.experiments import poisson as poisson_tables
    from lenslib.experiments import tier_a as tier_a_tables

    assert tier_a_tables.recall_table(art)["n_total"].iloc[0] == json.loads(
        (results / "tier_a_scoring" / "real_lens_scoring_results.json").read_text())["real_lens"]["n_total"]
    assert grid_tables.marginal(art, "no_poisson", 0.3)["n_injections"] == len(
        pd.read_parquet(results / "grid_no_poisson" / "injections.parquet"))
    assert len(poisson_tables.paired_table(art)) == 8
    from lenslib.experiments import probe as probe_tables  # the probe's numbers, refitted from embeddings.npz

    fs = json.loads((results / "linear_probe" / "feature_space_results.json").read_text())
    assert probe_tables.recomputed_probe_auc(art, "mean") == pytest.approx(fs["linear_probe"]["cv_auc_mean"])
    assert probe_tables.recomputed_frechet(art, "real_vs_low_bf") == pytest.approx(
        fs["frechet_distance"]["real_vs_low_bf"], rel=1e-6)
    assert "injections+scores/s" in run.stdout + run.stderr
    # the finder chapter described the checkpoint the recompute read, from its copy: no second download
    out = results.parent
    page = (project / "_build" / "paper" / "book" / "executed" / "methods_model.html").read_text()
    assert "Traceback" not in page and list((out / "work" / "cache" / "checkpoints").glob("*/best.pt"))
    assert not (out / "cache" / CHECKPOINT_KEY).exists()


def _recompute(cwd: Path, out: Path, data: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "lenslib", "recompute", "--profile", "paper",
           *sets(f"data_uri={data}", f"output_dir={out}", *SMALL, "grid_shard_injections=60", *extra)]
    return subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **ENV})


def test_a_killed_recompute_resumes_to_identical_artefacts(tmp_path, bucket):
    repo = Path(__file__).resolve().parents[2]
    whole = _recompute(repo, tmp_path / "whole", bucket)
    assert whole.wait(600) == 0, whole.stdout.read()[-3000:]
    killed = _recompute(repo, tmp_path / "killed", bucket)
    shards = tmp_path / "killed" / "results" / "grid_poisson" / "shards"
    t0 = time.time()
    while not (shards.exists() and len(list(shards.glob("*.parquet"))) >= 2) and time.time() - t0 < 300:
        time.sleep(0.2)
    killed.send_signal(signal.SIGKILL)
    killed.wait(60)
    n_before = len(list(shards.glob("*.parquet")))
    assert 2 <= n_before and not (tmp_path / "killed" / "results" / "grid_poisson" / "selection_function.csv").exists()
    again = _recompute(repo, tmp_path / "killed", bucket)
    assert again.wait(600) == 0, again.stdout.read()[-3000:]
    for key in ("grid_no_poisson/selection_function.csv", "grid_poisson/selection_function.csv",
                "grid_poisson/injections.parquet", "grid_poisson/selection_function_meta.json",
                "tier_a_scoring/real_lens_scoring_results.json", "ba_poisson/bright_arc_results.json",
                "poisson_diagnostics/d06_poisson_diagnostics.json", "linear_probe/feature_space_results.json"):
        assert (tmp_path / "killed" / "results" / key).read_bytes() == (tmp_path / "whole" / "results" / key
                                                                      ).read_bytes(), key


def _inputs(data: Path, tmp_path: Path, **kw):
    return open_inputs(open_store(str(data)), manifest=kw.get("manifest", MANIFEST_KEY),
                       checkpoint=kw.get("checkpoint", CHECKPOINT_KEY), priors="params/injection_priors.yaml",
                       cache_dir=tmp_path / "cache", device="cpu")


def test_bad_manifests_and_checkpoints_are_named(bucket, tmp_path):
    df = pd.read_parquet(bucket / MANIFEST_KEY)
    df.drop(columns=["psfsize_r"]).to_parquet(tmp_path / "nocol.parquet")
    with pytest.raises(RecomputeError, match=r"nocol\.parquet.*lacks column\(s\) \['psfsize_r'\]"):
        _inputs(bucket, tmp_path, manifest=str(tmp_path / "nocol.parquet"))
    df[~((df["split"] == "val") & (df["label"] == 0))].to_parquet(tmp_path / "noneg.parquet")
    with pytest.raises(RecomputeError, match=r"noneg\.parquet.*no validation negatives"):
        _inputs(bucket, tmp_path, manifest=str(tmp_path / "noneg.parquet"))
    import torch

    ck = torch.load(bucket / CHECKPOINT_KEY, weights_only=False)
    ck["train"] = {"arch": "bottlenecked_resnet", "base_ch": 16}  # says base_ch 16; the weights are base_ch 6
    torch.save(ck, tmp_path / "other.pt")
    with pytest.raises(RecomputeError, match=r"finder_checkpoint.*other\.pt.*do not fit"):
        _inputs(bucket, tmp_path, checkpoint=str(tmp_path / "other.pt"))
    ck["train"] = {"arch": "efficientnet_v2_s"}  # a checkpoint that says it is another architecture
    torch.save(ck, tmp_path / "effnet.pt")
    with pytest.raises(RecomputeError, match=r"finder_checkpoint.*effnet\.pt.*do not fit efficientnet_v2_s"):
        _inputs(bucket, tmp_path, checkpoint=str(tmp_path / "effnet.pt"))
    with pytest.raises(RecomputeError, match=r"'finder_checkpoint'.*nothere\.pt"):
        _inputs(bucket, tmp_path, checkpoint="checkpoints/nothere.pt")


def test_a_cutout_that_fails_is_recorded_and_replaced(bucket, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(bucket, data)
    inputs = _inputs(data, tmp_path)
    spec = grid.GridSpec(injections_per_cell=20, shard_injections=100_000)
    pool = inputs.rows("val", label=0)
    cell = pd.Series(list(zip(grid.snap(pool["psfsize_r"].to_numpy(), spec.psf_fwhm),
                              grid.snap(depth_mag(pool["psfdepth_r"].to_numpy()), spec.depth_5sig), strict=True)))
    size = cell.map(cell.value_counts()).to_numpy()
    victim = pool["cutout_key"].iloc[int(np.flatnonzero((size >= 2) & (size <= 4))[0])]  # a host with 1–3 others
    (data / victim).write_bytes(b"PK\x03\x04 not a zip")
    tau = {1e-3: 0.9}
    grid.run_grid(inputs, tmp_path / "res", tmp_path / "work", tau, spec, progress=False, log=lambda *a: None)
    meta = json.loads((tmp_path / "res" / "grid_no_poisson" / "selection_function_meta.json").read_text())
    inj = pd.read_parquet(tmp_path / "res" / "grid_no_poisson" / "injections.parquet")
    assert meta["total_injections_failed"] >= 1 and any(Path(victim).name in f["cutout_path"] and "not a readable"
                                                        in f["error"] for f in meta["failure_log_sample"])
    assert (inj.groupby("cell_idx").size() == 20).all()  # the failed attempts were replaced
    assert not inj["cutout_path"].str.endswith(Path(victim).name).any()
    csv = pd.read_csv(tmp_path / "res" / "grid_no_poisson" / "selection_function.csv")
    n_thresholds = len(meta["thresholds"])
    assert csv.loc[csv["source_mag_bin"] == "all", "n_failed"].sum() == meta["total_injections_failed"] * n_thresholds


def test_sizes_of_zero_and_a_missing_checkpoint_say_what_to_do(tmp_path, bucket):
    repo = Path(__file__).resolve().parents[2]
    p = lenslib(repo, "recompute", "--profile", "paper", *sets(f"data_uri={bucket}", "grid_injections_per_cell=0"))
    assert p.returncode == 2 and "'grid_injections_per_cell' must be > 0" in p.stderr
    p = lenslib(repo, "recompute", "--profile", "paper", *sets(f"data_uri={bucket}", f"output_dir={tmp_path}",
                                                                  "finder_checkpoint=checkpoints/none/best.pt"))
    assert p.returncode == 1 and "python -m lenslib train" in p.stderr and "checkpoints/none/best.pt" in p.stderr


def test_the_book_reuses_the_recomputes_checkpoint_only_when_it_is_the_same_file(tmp_path):
    import hashlib

    from lenslib.experiments.compute.inputs import cached_checkpoint
    from lenslib.repro import params as P
    from lenslib.repro.recompute import recomputed_checkpoint

    out = tmp_path / "out"
    params = P.load("paper", {"output_dir": str(out), "data_uri": str(tmp_path / "bucket")})
    assert recomputed_checkpoint(params) is None  # no data root, no recompute
    (tmp_path / "bucket").mkdir()
    assert recomputed_checkpoint(params) is None  # no recompute yet
    data = b"a checkpoint"
    sha = hashlib.sha256(data).hexdigest()
    copy = cached_checkpoint(out / "work" / "cache", sha)
    copy.parent.mkdir(parents=True)
    copy.write_bytes(data)
    (out / "results").mkdir(parents=True)
    source = f"{tmp_path / 'bucket'}/{params['finder_checkpoint']}"

    def provenance(src: str, digest: str) -> None:
        (out / "results" / "provenance.json").write_text(json.dumps(
            {"sources": {"checkpoint": src}, "files": {"inputs/checkpoint": {"sha256": digest, "size_bytes": 12}}}))

    provenance(source, sha)
    assert recomputed_checkpoint(params) == copy
    provenance(source + ".other", sha)  # the recompute read another file
    assert recomputed_checkpoint(params) is None
    provenance(source, "0" * 64)  # its copy is not the file it hashed
    assert recomputed_checkpoint(params) is None
    provenance(source, sha)
    copy.write_bytes(b"tampered")
    assert recomputed_checkpoint(params) is None
    (out / "results" / "provenance.json").write_text("{not json")
    assert recomputed_checkpoint(params) is None

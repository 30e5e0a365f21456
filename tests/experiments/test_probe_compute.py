"""The compute side of the linear probe (§E.4) writes the D06 layout, and the book's readers recompute its numbers.

Synthetic populations with a known separation stand in for the CNN embeddings; the written files are compared
key by key with the authors' D06 files, and the book's functions (:mod:`lenslib.experiments.probe`) are run on the
written folder as they are on the published one."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from matplotlib.figure import Figure
from sklearn.metrics import roc_auc_score

from lenslib import LenslibError
from lenslib.data.storage import ArtefactMissing, open_store
from lenslib.experiments import probe
from lenslib.experiments.artefacts import D06Artefacts
from lenslib.experiments.compute import probe as cp

N = {"real_tier_a": 60, "inj_low_bf": 150, "inj_high_bf": 80, "negatives": 80}
SHIFT = {"real_tier_a": 0.6, "inj_low_bf": 0.0, "inj_high_bf": 0.2, "negatives": -0.4}
BLOCK_DIMS = {"features_0": 3, "features_1": 6, "features_2": 10, "features_3": 70}  # 70 > 60 real rows → NaN
D = 12
N_PERM, N_BOOT = 50, 200


def make_populations(seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    pops = {}
    for p, n in N.items():
        d = {"penultimate": rng.normal(size=(n, D)) + SHIFT[p],
             "scores": 1 / (1 + np.exp(-rng.normal(SHIFT[p] * 3, 1, size=n)))}
        for b, dim in BLOCK_DIMS.items():
            d[b] = rng.normal(size=(n, dim)) + SHIFT[p]
        pops[p] = d
    return pops


def make_tier_b(seed: int = 1, n: int = 70) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"penultimate": rng.normal(size=(n, D)) + 0.3, "scores": rng.uniform(size=n)}


GROUPS_A = [f"A{i}" for i in range(N["real_tier_a"])]
GROUPS_B = [f"B{i // 2}" for i in range(70)]  # pairs of Tier-B rows share a galaxy_id


def run(out, pops=None, **kw):
    args = dict(n_permutations=N_PERM, n_bootstrap=N_BOOT, umap=False, progress=False)
    args.update(kw)
    return cp.write_probe_artefacts(out, make_populations() if pops is None else pops, **args)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """One full run (with the Tier-B control and the UMAP), shared by the schema and book-side tests."""
    out = tmp_path_factory.mktemp("recompute")
    res = run(out, tier_b=make_tier_b(), tier_a_groups=GROUPS_A, tier_b_groups=GROUPS_B, umap=True,
              checkpoint="checkpoints/best.pt")
    return out, res


@pytest.fixture(scope="module")
def wart(written):
    return D06Artefacts(open_store(str(written[0])))


def schema(obj):
    """Keys and value types of a JSON document, recursively (lists by their element types)."""
    if isinstance(obj, dict):
        return {k: schema(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return ["list", sorted({json.dumps(schema(v), sort_keys=True) for v in obj})]
    if obj is None or isinstance(obj, bool):
        return repr(obj) if obj is None else "bool"
    return type(obj).__name__


def load_json(path):
    return json.loads(path.read_text())


@pytest.mark.parametrize("name", ["feature_space_results.json", "permutation_bootstrap_results.json"])
def test_json_has_exactly_the_d06_keys_and_types(shared, written, name):
    d06 = load_json(shared("d06", "linear_probe", name))
    mine = load_json(written[0] / "linear_probe" / name)
    assert schema(mine) == schema(d06)
    assert list(mine) == list(d06)  # the same order too


def test_feature_space_json_values(written):
    fs = load_json(written[0] / "linear_probe" / "feature_space_results.json")
    assert [fs[f"n_{p}"] for p in cp.POPULATIONS] == list(N.values())
    assert fs["checkpoint"] == "checkpoints/best.pt" and fs["gain_e_per_nmgy"] is None
    assert 0.8 < fs["linear_probe"]["cv_auc_mean"] <= 1  # shifted by 0.6 in 12 dimensions
    per = fs["frechet_distance_per_layer"]
    assert list(per) == list(cp.BLOCKS)
    assert all(np.isfinite(per[b]) for b in ("features_0", "features_1", "features_2"))
    assert all(np.isnan(per[f"features_{k}"]) for k in range(3, 8))  # d ≥ n, or not given
    assert "NaN" in (written[0] / "linear_probe" / "feature_space_results.json").read_text()
    pops = make_populations()
    assert fs["median_scores"] == {p: float(np.median(pops[p]["scores"])) for p in cp.POPULATIONS}


def test_checkpoint_has_the_d06_keys_dtypes_and_shapes(shared, written):
    with np.load(shared("d06", "linear_probe", "checkpoint.npz"), allow_pickle=True) as z:
        ref = {k: z[k] for k in z.files}
    with np.load(written[0] / "linear_probe" / "checkpoint.npz", allow_pickle=True) as z:
        mine = {k: z[k] for k in z.files}
    assert sorted(mine) == sorted(ref)
    n = N["real_tier_a"] + N["inj_low_bf"]
    lengths = {"perm_aucs": (N_PERM,), "y_prob": (n,)}  # these depend on the inputs
    for k, a in ref.items():
        assert mine[k].dtype == a.dtype, k
        assert mine[k].shape == lengths.get(k, a.shape), k
    assert [type(v) for v in mine["rng_state"]] == [type(v) for v in ref["rng_state"]]
    assert mine["rng_state"][1].dtype == np.uint32 and mine["rng_state"][1].shape == (624,)
    assert int(mine["completed_perm"]) == N_PERM


def test_book_functions_reproduce_the_written_numbers(written, wart):
    out = written[0] / "linear_probe"
    pb = load_json(out / "permutation_bootstrap_results.json")
    with np.load(out / "checkpoint.npz", allow_pickle=True) as z:
        ck = {k: z[k] for k in z.files}
    y = np.r_[np.ones(N["real_tier_a"]), np.zeros(N["inj_low_bf"])]
    assert probe.n_real(wart) == N["real_tier_a"]
    assert probe.pooled_auc(wart) == pytest.approx(roc_auc_score(y, ck["y_prob"]), abs=0)
    assert probe.pooled_auc(wart) == float(ck["observed_auc"])
    assert np.array_equal(probe.fold_aucs(wart), pb["observed_auc_folds"])
    assert probe.fold_auc_mean(wart) == pytest.approx(pb["observed_auc_mean"], abs=1e-15)
    assert probe.fold_auc_std(wart) == pytest.approx(pb["observed_auc_std"], abs=1e-15)
    assert probe.permutation_p(wart) == pb["permutation_test"]["p_value"]
    assert probe.permutation_exceeding(wart) == pb["permutation_test"]["n_exceeding"]
    assert float(np.max(ck["perm_aucs"])) == pb["permutation_test"]["max_perm_auc"]
    boot = probe.bootstrap(wart, N_BOOT)  # replayed from rng_state with the book's vectorised AUC
    ci = pb["bootstrap_ci"]
    assert boot["n_valid"] == ci["n_valid"]
    for mine, theirs in (("ci95_lo", "ci_95_lower"), ("ci95_hi", "ci_95_upper"), ("mean", "mean"), ("std", "std")):
        assert boot[mine] == pytest.approx(ci[theirs], rel=1e-12, abs=1e-15), mine
    assert len(probe.summary_table(wart)) > 10


def test_book_recomputes_the_feature_space_numbers_from_the_embeddings(written, wart):
    fs = load_json(written[0] / "linear_probe" / "feature_space_results.json")
    assert probe.has_embeddings(wart)
    assert probe.recomputed_probe_auc(wart, "mean") == fs["linear_probe"]["cv_auc_mean"]
    assert probe.recomputed_probe_auc(wart, "std") == fs["linear_probe"]["cv_auc_std"]
    for pair in ("real_vs_low_bf", "real_vs_high_bf"):
        assert probe.recomputed_frechet(wart, pair) == pytest.approx(fs["frechet_distance"][pair], rel=1e-12)
    rec = probe.recomputed_frechet_blocks(wart)
    for b, v in fs["frechet_distance_per_layer"].items():
        assert rec[b] == pytest.approx(v, rel=1e-12, nan_ok=True), b
    assert probe.recomputed_frechet_ratio(wart, "features_2", "features_0") == pytest.approx(
        probe.frechet_ratio(wart, "features_2", "features_0"), rel=1e-12)
    for p in cp.POPULATIONS:
        assert probe.recomputed_median(wart, p) == fs["median_scores"][p]
    t = probe.recomputed_table(wart)
    assert np.allclose(t["recomputed"], t["written"], rtol=1e-12, equal_nan=True)


def test_embeddings_file_keys(written):
    with np.load(written[0] / "linear_probe" / "embeddings.npz") as z:  # no pickles: allow_pickle stays False
        keys = set(z.files)
        assert z["groups_tier_b"][0] == "B0"
    expected = {f"{kind}_{p}" for p in cp.POPULATIONS for kind in ("emb", "scores")}
    expected |= {f"blocks_{p}_{b}" for p in cp.POPULATIONS for b in BLOCK_DIMS}
    expected |= {"emb_tier_b", "scores_tier_b", "groups_tier_a", "groups_tier_b"}
    assert keys == expected


def test_tier_ab_results(written, wart):
    tab = load_json(written[0] / "linear_probe" / "tier_ab_probe_results.json")
    assert list(tab) == ["timestamp_utc", "checkpoint", "n_tier_a", "n_tier_b", "seed", "cv_method", "n_folds",
                         "n_unique_groups", "linear_probe_tier_ab", "score_stats"]
    assert (tab["cv_method"], tab["n_folds"], tab["n_unique_groups"]) == ("GroupKFold", 5, 60 + 35)
    lp = tab["linear_probe_tier_ab"]
    assert lp["cv_auc_mean"] == pytest.approx(np.mean(lp["cv_fold_aucs"])) and len(lp["cv_fold_aucs"]) == 5
    assert probe.recomputed_tier_ab_auc(wart, "mean") == lp["cv_auc_mean"]
    assert probe.recomputed_tier_ab_auc(wart, "std") == lp["cv_auc_std"]
    assert probe.recomputed_tier_b_median(wart) == tab["score_stats"]["tier_b"]["median"]
    assert probe.tier_ab_reported(wart, "score_stats.tier_b.median") == float(np.median(make_tier_b()["scores"]))
    # without groups: StratifiedKFold(5)
    plain = cp.tier_ab_probe(make_populations()["real_tier_a"], make_tier_b())
    assert (plain["cv_method"], plain["n_unique_groups"]) == ("StratifiedKFold", None)


def test_umap_written_and_recomputed(written, wart):
    res = written[1]["umap"]
    assert res["method"] == "umap" and res["params"]["metric"] == "cosine" and res["n"] == sum(N.values())
    stored = probe.stored_umap(wart)
    assert stored["coords"].shape == (sum(N.values()), 2)
    assert list(dict.fromkeys(stored["labels"])) == list(cp.POPULATIONS)  # order: real, low, high, negatives
    again = probe.umap_from_embeddings(wart)
    assert np.allclose(again["coords"], stored["coords"], atol=1e-5)
    assert np.array_equal(again["labels"], stored["labels"]) and np.array_equal(again["scores"], stored["scores"])
    assert probe.umap_n_points(wart) == sum(N.values())
    fig = Figure()
    axes = fig.subplots(1, 2)
    probe.fig2_umap(stored["coords"], stored["labels"], stored["scores"], axes)
    assert len(axes[0].collections) == 4 and axes[0].get_xlabel() == "UMAP-1"
    assert len(axes[1].collections) == 2 and axes[1].get_title() == "CNN Score"


def test_umap_falls_back_to_pca(monkeypatch, tmp_path):
    emb = {p: v["penultimate"] for p, v in make_populations().items()}
    monkeypatch.setitem(sys.modules, "umap", None)  # import umap → ImportError
    res = cp.umap_coordinates(emb)
    assert res["method"] == "pca" and res["coords"].shape == (sum(N.values()), 2)
    assert cp.umap_coordinates(emb, use_umap=False)["method"] == "pca"
    assert cp.write_umap_artefact(tmp_path, make_populations())["method"] == "pca"  # the fallback is recorded
    art = D06Artefacts(open_store(str(tmp_path)))
    assert probe.stored_umap(art)["method"] == "pca" and probe.stored_umap(art)["params"]["n_components"] == 2


# --- Fréchet distance: closed forms ------------------------------------------------------------------------


def test_frechet_distance_closed_forms():
    rng = np.random.default_rng(5)
    mu1, mu2 = rng.normal(size=4), rng.normal(size=4)
    v1, v2 = rng.uniform(0.5, 2, 4), rng.uniform(0.5, 2, 4)
    # commuting (diagonal) covariances: ‖Δμ‖² + Σ (σ1 − σ2)²
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)
    assert cp.frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expected, rel=1e-10)
    assert cp.frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([3.0]), np.array([[1.0]])) == (
        pytest.approx(4 + 1))
    a = rng.normal(size=(30, 3)) @ rng.normal(size=(3, 3))
    assert cp.frechet_between(a, a) == pytest.approx(0, abs=1e-9)


def test_frechet_of_shifted_samples_is_the_squared_shift():
    """Identical sample covariances (one sample shifted): FD = ‖μ1 − μ2‖², penultimate and per block."""
    rng = np.random.default_rng(7)
    shift = rng.normal(size=D)
    base = rng.normal(size=(40, D)) @ rng.normal(size=(D, D))
    blk = rng.normal(size=(40, 3))
    pops = make_populations()
    pops["real_tier_a"] = {"penultimate": base, "scores": rng.uniform(size=40), "features_0": blk}
    pops["inj_low_bf"] = {"penultimate": base + shift, "scores": rng.uniform(size=40), "features_0": blk + shift[:3]}
    fs = cp.feature_space_results(cp.validate_populations(pops))
    assert fs["frechet_distance"]["real_vs_low_bf"] == pytest.approx(shift @ shift, rel=1e-7)
    assert fs["frechet_distance_per_layer"]["features_0"] == pytest.approx(shift[:3] @ shift[:3], rel=1e-7)
    assert np.isnan(fs["frechet_distance_per_layer"]["features_1"])  # not given for these populations


def test_other_block_names_follow_the_d06_keys(tmp_path):
    """A ResNet finder's blocks (stem, layer1 …) are kept, stored and recomputed after features_0 … 7."""
    pops = make_populations()
    rng = np.random.default_rng(11)
    for p, n in N.items():
        pops[p] = {"penultimate": pops[p]["penultimate"], "scores": pops[p]["scores"],
                   "stem": rng.normal(size=(n, 4)) + SHIFT[p], "layer1": rng.normal(size=(n, 5))}
    run(tmp_path, pops, n_permutations=5, n_bootstrap=10)
    fs = load_json(tmp_path / "linear_probe" / "feature_space_results.json")
    assert list(fs["frechet_distance_per_layer"]) == list(cp.BLOCKS)  # the authors' keys, nothing else
    assert all(np.isnan(fs["frechet_distance_per_layer"][b]) for b in cp.BLOCKS)
    other = load_json(tmp_path / "linear_probe" / "frechet_other_blocks.json")["frechet_distance_per_layer"]
    assert list(other) == ["stem", "layer1"]
    art = D06Artefacts(open_store(str(tmp_path)))
    assert probe.recomputed_frechet_block(art, "stem") == pytest.approx(other["stem"])
    assert set(probe.population(art, "negatives")) == {"penultimate", "scores", "stem", "layer1"}


# --- kill and resume -----------------------------------------------------------------------------------------


class Killed(Exception):
    pass


def _kill_at(k):
    def cb(done):
        if done == k:
            raise Killed(done)
    return cb


def _files(out):
    lp = out / "linear_probe"
    return (lp / "checkpoint.npz").read_bytes(), (lp / "permutation_bootstrap_results.json").read_bytes()


def test_kill_and_resume_gives_the_uninterrupted_files(tmp_path):
    run(tmp_path / "straight", checkpoint_every=10)
    with pytest.raises(Killed):
        run(tmp_path / "killed", checkpoint_every=10, on_permutation=_kill_at(23))
    with np.load(tmp_path / "killed" / "linear_probe" / "checkpoint.npz", allow_pickle=True) as z:
        assert int(z["completed_perm"]) == 20  # the last atomic write before the kill
        assert not (tmp_path / "killed" / "linear_probe" / "checkpoint.npz.part").exists()
    seen = []
    run(tmp_path / "killed", checkpoint_every=10, on_permutation=seen.append)
    assert seen[0] == 21  # resumed, not restarted
    assert _files(tmp_path / "killed") == _files(tmp_path / "straight")  # byte-identical


def test_extending_and_cutting_back_the_permutations(tmp_path):
    run(tmp_path / "straight")
    run(tmp_path / "grown", n_permutations=20)
    run(tmp_path / "grown")  # 20 → 50
    assert _files(tmp_path / "grown") == _files(tmp_path / "straight")
    run(tmp_path / "short", n_permutations=30)
    run(tmp_path / "straight", n_permutations=30)  # 50 → 30: the RNG state is replayed
    assert _files(tmp_path / "straight") == _files(tmp_path / "short")


def test_a_checkpoint_of_other_inputs_is_refused(tmp_path):
    run(tmp_path, n_permutations=10)
    with pytest.raises(cp.ProbeCheckpointMismatch, match="other inputs"):
        run(tmp_path, make_populations(seed=3), n_permutations=10)
    with pytest.raises(cp.ProbeCheckpointMismatch, match="seed 7"):
        run(tmp_path, n_permutations=10, seed=7)
    run(tmp_path, make_populations(seed=3), n_permutations=10, resume=False)


# --- bad inputs ------------------------------------------------------------------------------------------------


def _bad(mutate):
    pops = make_populations()
    mutate(pops)
    return pops


@pytest.mark.parametrize("mutate, match", [
    (lambda p: p.pop("negatives"), r"missing population\(s\) \['negatives'\]"),
    (lambda p: p["inj_high_bf"].pop("scores"), "'inj_high_bf': missing key 'scores'"),
    (lambda p: p["real_tier_a"].update(penultimate=np.zeros(60)), r"'real_tier_a' key 'penultimate': must have shape"),
    (lambda p: p["negatives"].update(scores=np.zeros(79)), "'negatives' key 'scores': has 79 rows"),
    (lambda p: p["inj_low_bf"]["features_2"].__setitem__((3, 1), np.nan),
     "'inj_low_bf' key 'features_2': 1 non-finite"),
    (lambda p: p["inj_low_bf"].update(penultimate=np.ones((150, D + 1))), "'inj_low_bf' key 'penultimate': dimension"),
    (lambda p: p["negatives"].update(features_1=np.ones((80, 2))), "'negatives' key 'features_1': dimension 2"),
    (lambda p: p["real_tier_a"].update({k: v[:4] for k, v in p["real_tier_a"].items()}),
     "'real_tier_a': 4 row.*at least 5"),
    (lambda p: p["inj_low_bf"].update(layer1=np.ones((140, 3))), "'inj_low_bf' key 'layer1': has 140 rows"),
    (lambda p: p["inj_low_bf"].update({"layer/1": np.ones((150, 3))}), "block name 'layer/1'"),
    (lambda p: p["negatives"].update(scores=np.array(["a"] * 80)), "'negatives' key 'scores': must hold real"),
])
def test_bad_inputs_are_named(tmp_path, mutate, match):
    with pytest.raises(cp.ProbeInputError, match=match) as exc:
        run(tmp_path, _bad(mutate))
    assert isinstance(exc.value, LenslibError)
    assert not (tmp_path / "linear_probe").exists()  # validated before anything is written


def test_bad_tier_b_inputs(tmp_path):
    with pytest.raises(cp.ProbeInputError, match="give both or neither"):
        run(tmp_path, tier_b=make_tier_b(), tier_a_groups=GROUPS_A)
    with pytest.raises(cp.ProbeInputError, match="tier_b_groups: must have one entry per row"):
        run(tmp_path, tier_b=make_tier_b(), tier_a_groups=GROUPS_A, tier_b_groups=GROUPS_B[:-1])
    with pytest.raises(cp.ProbeInputError, match="'tier_b': 3 row"):
        run(tmp_path, tier_b=make_tier_b(n=3))
    blocks_too = {**make_tier_b(), "features_0": np.ones((70, 3))}  # a Tier-B population's blocks are ignored
    run(tmp_path / "b", tier_b=blocks_too, n_permutations=5, n_bootstrap=10)
    with np.load(tmp_path / "b" / "linear_probe" / "embeddings.npz") as z:
        assert "emb_tier_b" in z.files and not any("tier_b_features" in k for k in z.files)
    run(tmp_path / "b", n_permutations=5, n_bootstrap=10)  # rerun without the control: its stale result goes
    assert not (tmp_path / "b" / "linear_probe" / "tier_ab_probe_results.json").exists()
    run(tmp_path, tier_a_groups=GROUPS_A, n_permutations=5)  # groups without a Tier-B control: ignored
    assert not (tmp_path / "linear_probe" / "tier_ab_probe_results.json").exists()


# --- the published D06 folder: no embeddings ------------------------------------------------------------------


def test_d06_has_no_embeddings_and_says_so(art):
    assert not probe.has_embeddings(art)
    assert probe.n_real(art) == 112
    assert probe.pooled_auc(art) == float(art.probe_checkpoint()["observed_auc"])
    for fn in (probe.recomputed_probe_fold_aucs, probe.recomputed_frechet_blocks, probe.umap_from_embeddings,
               probe.recomputed_tier_ab_fold_aucs, probe.umap_n_points):
        with pytest.raises(ArtefactMissing, match="linear_probe/embeddings.npz"):
            fn(art)
    with pytest.raises(ArtefactMissing, match="tier_ab_probe_results.json"):
        probe.tier_ab_results(art)

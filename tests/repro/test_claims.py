"""Claims registry: the published numbers are reproduced, and a changed artefact is caught."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lenslib.repro import claims

REPO = Path(__file__).resolve().parents[2]
REGISTRY = REPO / "params" / "claims.yaml"
KEY_NUMBERS = ["grid_p03_no_poisson_pct", "grid_p03_poisson_pct", "probe_auc_mean", "probe_auc_std",
               "tier_a_recall_p03_pct", "grid_p03_no_poisson_detected", "grid_p03_poisson_detected"]


def test_all_claims_agree_or_are_explained(art):
    results = {r.id: r for r in claims.evaluate_all(REGISTRY, art)}
    s = claims.summary(list(results.values()))
    assert s["ok"] and s["disagrees"] == 0 and s["error"] == 0
    for k in KEY_NUMBERS:
        assert results[k].status == "agrees", results[k]
    assert results["probe_tier_ab_auc"].status == "not_recomputable"
    assert "embeddings" in results["probe_tier_ab_auc"].detail
    assert results["frechet_ratio_3_0"].status == "known_discrepancy"


def test_tolerance_is_half_a_printed_unit():
    assert claims.half_unit({"paper": 5.18, "decimals": 2}) == pytest.approx(0.005)
    assert claims.half_unit({"paper": 3.24e-4, "sig": 3}) == pytest.approx(5e-7)
    assert claims.half_unit({"paper": 0.451, "sig": 3}) == pytest.approx(5e-4)


def test_wrong_paper_value_disagrees(art):
    c = {"id": "x", "text": "t", "paper": 5.20, "decimals": 2, "compute": "experiments.grid.marginal_pct",
         "args": {"condition": "no_poisson", "threshold": 0.3}}
    r = claims.evaluate(c, art)
    assert r.status == "disagrees" and r.computed == pytest.approx(5.179, abs=1e-3)


@pytest.mark.parametrize("bad, msg", [
    ({"id": "a", "text": "t", "paper": 1}, "exactly one of 'compute' or 'not_recomputable'"),
    ({"id": "a", "text": "t", "paper": 1, "compute": "experiments.grid.marginal_pct"}, "'decimals' or 'sig'"),
    ({"id": "a", "text": "t", "paper": 1, "compute": "x", "decimals": 1, "colour": 1}, "unknown field"),
])
def test_malformed_registry(tmp_path, bad, msg):
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump({"claims": [bad]}))
    with pytest.raises(claims.ClaimsFileError, match=msg):
        claims.load_registry(f)


def test_unknown_compute_function():
    with pytest.raises(claims.ClaimsFileError, match="has no function 'nope'"):
        claims.resolve("experiments.grid.nope")


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "lenslib", "claims", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def test_cli_json_and_exit_zero(d06):
    p = _cli("--results-uri", str(d06))
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["summary"]["ok"] and out["summary"]["agrees"] >= 70
    byid = {c["id"]: c for c in out["claims"]}
    assert byid["grid_p03_no_poisson_pct"]["computed"] == pytest.approx(100 * 5697 / 110000)


def test_cli_fails_on_tampered_artefact(d06, tmp_path):
    copy = tmp_path / "d06"
    shutil.copytree(d06, copy)
    csv = copy / "grid_no_poisson" / "selection_function.csv"
    lines = csv.read_text().splitlines()
    # add 100 detections to the first non-empty "all" row at threshold 0.3
    for i, line in enumerate(lines):
        f = line.split(",")
        if i and f[3] == "0.3" and f[6] == "all" and int(f[7]) > 0:
            f[8] = str(int(f[8]) + 100)
            lines[i] = ",".join(f)
            break
    csv.write_text("\n".join(lines) + "\n")
    p = _cli("--results-uri", str(copy))
    assert p.returncode == 1
    # the edited count no longer matches its completeness: the structure check names the file and the row
    assert "claim grid_p03_no_poisson_pct: error" in p.stderr and "selection_function.csv: row" in p.stderr
    assert "is not n_detected / n_injections" in p.stderr
    # edited consistently (count and completeness), the numbers read, and the claim disagrees
    lines = csv.read_text().splitlines()
    for i, line in enumerate(lines):
        f = line.split(",")
        if i and f[3] == "0.3" and f[6] == "all" and int(f[7]) > 0 and int(f[8]) >= 100:
            f[10] = repr(int(f[8]) / int(f[7]))
            lines[i] = ",".join(f)
            break
    csv.write_text("\n".join(lines) + "\n")
    p = _cli("--results-uri", str(copy))
    assert p.returncode == 1 and "claim grid_p03_no_poisson_pct: disagrees" in p.stderr, p.stderr[-800:]


def test_cli_bad_parameter_exit_2():
    p = _cli("--set", "figure_dpi=high")
    assert p.returncode == 2 and "'figure_dpi' must be int" in p.stderr

"""Claims registry: the published numbers are reproduced, and a changed artefact is caught."""

import json
import math
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from lenslib import LenslibError
from lenslib.experiments.artefacts import NotInTheseArtefacts
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


# --- the tolerance logic and the registry checks, without the artefacts -------------------------------------------

@pytest.mark.parametrize("claim, half", [
    ({"paper": 5697, "decimals": 0}, 0.5),
    ({"paper": 89.3, "decimals": 1}, 0.05),
    ({"paper": 0.997, "decimals": 3}, 0.0005),
    ({"paper": 1200, "decimals": -2}, 50.0),
    ({"paper": 1234, "sig": 2}, 50.0),
    ({"paper": 100, "sig": 1}, 50.0),
    ({"paper": 0.001, "sig": 1}, 0.0005),
    ({"paper": -0.0451, "sig": 3}, 0.00005),
    ({"paper": 9.99, "sig": 3}, 0.005),
    ({"paper": 0, "sig": 2}, 0.05),
    ({"paper": "2.5", "sig": "2"}, 0.05),
    ({"paper": 3.24e-4, "sig": 3, "decimals": 6}, 5e-7),
])
def test_half_unit_hand_computed(claim, half):
    """Half a unit in the last printed place, hand-computed: decimals win over sig; sig counts from the leading
    digit, for negative, exact-power-of-ten and zero values."""
    assert claims.half_unit(claim) == pytest.approx(half, rel=1e-12)


@settings(max_examples=80, deadline=None, derandomize=True)
@given(st.integers(1, 6), st.integers(-8, 8), st.integers(1, 10 ** 6 - 1), st.booleans())
def test_half_unit_matches_decimal_exponent(sig, exponent, mantissa, negative):
    """For a value printed with ``sig`` significant figures, the half unit is 0.5 · 10^(e − sig + 1), e the
    exponent of its leading digit (Python's Decimal.adjusted(), not a logarithm)."""
    digits = str(mantissa).rjust(sig, "1")[:sig]
    d = Decimal(f"{'-' if negative else ''}{digits[0]}.{digits[1:]}E{exponent}")
    want = 0.5 * 10.0 ** (d.adjusted() - sig + 1)
    assert claims.half_unit({"paper": float(d), "sig": sig}) == pytest.approx(want, rel=1e-9)


def _claim(**kw):
    return {"id": "c", "text": "a claim", "paper": 5.18, "decimals": 2, "compute": "experiments.grid.marginal_pct",
            **kw}


@pytest.fixture
def computed(monkeypatch):
    """Make every claim compute ``value`` (or raise it, if it is an exception); records the calls."""
    calls = []

    def use(value):
        def fn(art, **args):
            calls.append((art, args))
            if isinstance(value, BaseException):
                raise value
            return value
        monkeypatch.setattr(claims, "resolve", lambda spec: fn)
        return calls
    return use


@pytest.mark.parametrize("value, status", [
    (5.18, "agrees"), (5.185, "agrees"), (5.175, "agrees"), (5.1849, "agrees"), (5.1751, "agrees"),
    (5.1851, "disagrees"), (5.1749, "disagrees"), (5.19, "disagrees"), (-5.18, "disagrees"),
    (float("nan"), "disagrees"), (float("inf"), "disagrees"), (float("-inf"), "disagrees"),
])
def test_evaluate_tolerance_boundaries(computed, value, status):
    """A claim agrees within half a printed unit, inclusive (5.18 at 2 dp: 5.175 … 5.185), and never for a
    non-finite value."""
    computed(value)
    r = claims.evaluate(_claim(), object())
    assert r.status == status
    assert r.computed == value or (math.isnan(value) and math.isnan(r.computed))


@pytest.mark.parametrize("paper, decimals", [(0.0, 0), (2.0, 0), (-3.0, 0), (0.0, 2)])
def test_evaluate_boundary_slack_is_inclusive(computed, paper, decimals):
    """The half-unit tolerance carries a relative slack of 1e-9 (for rounding of the computed value): a value
    whose distance to the paper value is exactly half a unit times (1 + 1e-9) still agrees, one at twice the
    slack does not, on either side."""
    half = 0.5 * 10.0 ** -decimals
    for sign in (1, -1):
        edge = half * (1 + 1e-9)
        assert abs((paper + sign * edge) - paper) == edge  # the distance is represented exactly
        computed(paper + sign * edge)
        assert claims.evaluate(_claim(paper=paper, decimals=decimals), None).status == "agrees"
        computed(paper + sign * half * (1 + 2e-9))
        assert claims.evaluate(_claim(paper=paper, decimals=decimals), None).status == "disagrees"


def test_evaluate_sig_claim_and_result_fields(computed):
    """A 3-sf claim: tolerance 5e-7 at 3.24e-4; the result carries id, text, paper, unit, precision, kind,
    source and a detail with the call, the value and the tolerance; args reach the function with the artefacts."""
    calls = computed(3.2449e-4)
    art = object()
    c = {"id": "s", "text": "sign test", "paper": 3.24e-4, "sig": 3, "compute": "experiments.poisson.sign_test_p",
         "args": {"mag_bin": "21-22"}, "unit": "p", "kind": "reported", "source": "Table 7"}
    r = claims.evaluate(c, art)
    assert calls == [(art, {"mag_bin": "21-22"})]
    assert r.as_dict() == {
        "id": "s", "text": "sign test", "paper": 3.24e-4, "unit": "p", "precision": "3 sf", "computed": 3.2449e-4,
        "status": "agrees", "kind": "reported", "source": "Table 7",
        "detail": ("experiments.poisson.sign_test_p({'mag_bin': '21-22'}) = 0.00032449; "
                   "|Δ| = 4.9e-07 vs tolerance 5e-07")}
    computed(3.2451e-4)
    assert claims.evaluate(c, art).status == "disagrees"


def test_evaluate_defaults_note_and_known_discrepancy(computed):
    """Defaults: unit "", kind recomputed, source "", no args; a note is appended; a known discrepancy is
    reported as such while it disagrees (with its explanation), and as agrees once it matches."""
    calls = computed(5.3)
    r = claims.evaluate(_claim(note="see §4"), "ART")
    assert calls == [("ART", {})]
    assert (r.unit, r.kind, r.source, r.precision, r.status) == ("", "recomputed", "", "2 dp", "disagrees")
    assert r.detail == "experiments.grid.marginal_pct() = 5.3; |Δ| = 0.12 vs tolerance 0.005. see §4"
    r = claims.evaluate(_claim(known_discrepancy="the paper rounds wrongly"), None)
    assert r.status == "known_discrepancy"
    assert r.detail.endswith("vs tolerance 0.005. Known discrepancy: the paper rounds wrongly")
    computed(5.18)
    r = claims.evaluate(_claim(known_discrepancy="the paper rounds wrongly"), None)
    assert r.status == "agrees" and "Known discrepancy" not in r.detail


def test_evaluate_not_recomputable_and_errors(computed):
    """not_recomputable claims are not computed; an object missing from these artefacts is not_recomputable;
    lenslib errors and lookup / value / arithmetic errors are reported as errors naming the cause; anything
    else (a bug) propagates."""
    calls = computed(1.0)
    r = claims.evaluate({"id": "n", "text": "t", "paper": 0.778, "not_recomputable": "needs embeddings"}, None)
    assert (r.status, r.computed, r.detail, r.precision) == ("not_recomputable", None, "needs embeddings", "")
    assert calls == []
    computed(NotInTheseArtefacts("no lens REAL_200"))
    r = claims.evaluate(_claim(), None)
    assert (r.status, r.computed, r.detail) == ("not_recomputable", None, "on these artefacts: no lens REAL_200")
    computed(LenslibError("file missing"))
    r = claims.evaluate(_claim(), None)
    assert (r.status, r.computed, r.detail) == ("error", None, "file missing")
    for exc, name in ((KeyError("x"), "KeyError"), (ValueError("bad"), "ValueError"),
                      (ZeroDivisionError("0"), "ZeroDivisionError"), (IndexError("i"), "IndexError")):
        computed(exc)
        r = claims.evaluate(_claim(args={"threshold": 0.3}), None)
        assert (r.status, r.computed) == ("error", None)
        assert r.detail == f"experiments.grid.marginal_pct({{'threshold': 0.3}}): {name}: {exc}"
    computed(ValueError("bad"))
    assert claims.evaluate(_claim(), None).detail == "experiments.grid.marginal_pct(): ValueError: bad"
    computed(TypeError("bug"))
    with pytest.raises(TypeError, match="bug"):
        claims.evaluate(_claim(), None)


def _result(status):
    return claims.ClaimResult(id=status, text="", paper=1.0, unit="", precision="", computed=None, status=status,
                              kind="recomputed", source="", detail="")


@pytest.mark.parametrize("statuses, ok", [
    ([], True),
    (["agrees", "agrees"], True),
    (["agrees", "known_discrepancy", "not_recomputable"], True),
    (["agrees", "disagrees"], False),
    (["error"], False),
    (["known_discrepancy", "error", "disagrees", "disagrees"], False),
])
def test_summary_counts_every_status(statuses, ok):
    """summary counts each status (hand-counted here) and is ok only without disagreements and errors."""
    s = claims.summary([_result(x) for x in statuses])
    assert s == {"n_claims": len(statuses), **{x: statuses.count(x) for x in claims.STATUSES}, "ok": ok}


def _write(tmp_path, data, name="c.yaml"):
    f = tmp_path / name
    f.write_text(yaml.safe_dump(data))
    return f


def test_registry_include_and_evaluate_all(tmp_path, computed):
    """Included files' claims follow the main list, in order; evaluate_all evaluates each of them."""
    _write(tmp_path, {"claims": [_claim(id="b"), _claim(id="c")]}, "more.yaml")
    f = _write(tmp_path, {"include": ["more.yaml"], "claims": [_claim(id="a")]})
    assert [c["id"] for c in claims.load_registry(f)] == ["a", "b", "c"]
    computed(5.18)
    rs = claims.evaluate_all(f, None)
    assert [(r.id, r.status) for r in rs] == [("a", "agrees"), ("b", "agrees"), ("c", "agrees")]
    assert [c["id"] for c in claims.load_registry(_write(tmp_path, {"claims": [_claim(id="z")]}))] == ["z"]
    ok = {"id": "k", "text": "t", "paper": 1, "sig": 2, "compute": "x.y", "kind": "reported"}
    assert claims.load_registry(_write(tmp_path, {"claims": [ok]}))[0]["kind"] == "reported"


@pytest.mark.parametrize("data, msg", [
    ({"claims": []}, "expected a top-level 'claims:' list"),
    ({"claims": {"a": 1}}, "expected a top-level 'claims:' list"),
    ({"other": 1}, "expected a top-level 'claims:' list"),
    ({"claims": ["x"]}, r"claim #1 \('x'\): must be a mapping"),
    ({"claims": [{"text": "t", "paper": 1, "compute": "a.b", "decimals": 1}]}, r"claim #1 \('\?'\): missing 'id'"),
    ({"claims": [{"id": "a", "paper": 1, "compute": "a.b", "decimals": 1}]}, r"claim #1 \('a'\): missing 'text'"),
    ({"claims": [{"id": "a", "text": "t", "compute": "a.b", "decimals": 1}]}, "missing 'paper'"),
    ({"claims": [_claim(id="a"), _claim(id="a")]}, r"claim #2 \('a'\): duplicate id"),
    ({"claims": [_claim(not_recomputable="why")]}, "give exactly one of 'compute' or 'not_recomputable'"),
    ({"claims": [_claim(sig=3)]}, r"give exactly one of 'decimals' or 'sig' \(printed precision\)"),
    ({"claims": [_claim(kind="guessed")]}, "kind must be 'recomputed' or 'reported'"),
    ({"claims": [_claim(colour=1, shade=2)]}, r"unknown field\(s\) \['colour', 'shade'\]"),
])
def test_malformed_registry_messages(tmp_path, data, msg):
    """Each malformation is refused with a message naming the file, the claim's number and id and the problem."""
    f = _write(tmp_path, data)
    with pytest.raises(claims.ClaimsFileError, match=msg) as exc:
        claims.load_registry(f)
    assert str(f) in str(exc.value)


def test_registry_without_precision_is_fine_when_not_recomputable(tmp_path):
    """A not_recomputable claim needs no printed precision."""
    f = _write(tmp_path, {"claims": [{"id": "n", "text": "t", "paper": 1, "not_recomputable": "why"}]})
    assert claims.load_registry(f)[0]["id"] == "n"


def test_registry_file_errors(tmp_path):
    """A missing registry or included file, or an included file without a claims list, is a ClaimsFileError."""
    with pytest.raises(claims.ClaimsFileError, match="claims registry .*nope.yaml: file not found"):
        claims.load_registry(tmp_path / "nope.yaml")
    f = _write(tmp_path, {"include": ["gone.yaml"], "claims": [_claim()]})
    with pytest.raises(claims.ClaimsFileError, match="gone.yaml: file not found"):
        claims.load_registry(f)
    _write(tmp_path, {"claims": {"x": 1}}, "bad.yaml")
    f = _write(tmp_path, {"include": ["bad.yaml"], "claims": [_claim()]})
    with pytest.raises(claims.ClaimsFileError, match=r"bad.yaml \(included by c.yaml\): expected a 'claims:' list"):
        claims.load_registry(f)


def test_resolve():
    """resolve names lenslib functions only, and says which part of the spec is wrong."""
    from lenslib.experiments import grid

    assert claims.resolve("experiments.grid.marginal_pct") is grid.marginal_pct
    with pytest.raises(claims.ClaimsFileError, match="compute 'marginal_pct': expected module.function inside"):
        claims.resolve("marginal_pct")
    with pytest.raises(claims.ClaimsFileError, match="compute 'experiments.': expected module.function"):
        claims.resolve("experiments.")
    with pytest.raises(claims.ClaimsFileError, match="compute 'experiments.nope.f': there is no module "
                                                     "lenslib.experiments.nope"):
        claims.resolve("experiments.nope.f")
    with pytest.raises(claims.ClaimsFileError, match="compute 'experiments.grid.nope': lenslib.experiments.grid "
                                                     "has no function 'nope'"):
        claims.resolve("experiments.grid.nope")

"""Fault suite, bad results folders: the published files checked by SHA-256, every artefact checked for
structure (what a checksum cannot catch), `verify`, and the book's commands on a damaged folder."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from lenslib.data.storage import ArtefactMissing, open_store
from lenslib.experiments.artefacts import ArtefactChecksumError, D06Artefacts
from lenslib.experiments.checks import ArtefactFormatError
from lenslib.experiments.verify import ChecksumFileError, artefact_checksums, read_checksums, verify_folder
from lenslib.repro import params as P
from tests.faults.conftest import cli, one_clear_line

GRID = "grid_poisson/selection_function.csv"
TIER_A = "tier_a_scoring/real_lens_scoring_results.json"
BA = "ba_baseline/bright_arc_results.json"


@pytest.fixture
def copy(d06, tmp_path):
    """A copy of the authors' D06 folder to damage."""
    dest = tmp_path / "d06"
    shutil.copytree(d06, dest)
    return dest


def _published(folder, **over):
    return P.load("published", {"results_uri": str(folder), "output_dir": str(folder.parent / "out"), **over})


def _truncate(path, n_bytes):
    path.write_bytes(path.read_bytes()[:n_bytes])


def _off(folder) -> D06Artefacts:
    return D06Artefacts(open_store(str(folder)), on_mismatch="off")


def test_the_shipped_checksums_are_those_of_the_real_files(d06):
    report = verify_folder(open_store(str(d06)))
    assert report.ok and report.checked == report.matched == 293 and "published D06" in report.against
    assert len(report.structure_checked) == 15 and not report.structure


def test_a_truncated_grid_csv_stops_the_published_profile_naming_the_file(copy):
    before = (copy / GRID).stat().st_size
    _truncate(copy / GRID, 300_000)
    art = P.open_artefacts(_published(copy))
    with pytest.raises(ArtefactChecksumError, match=r"grid_poisson/selection_function\.csv: SHA-256 .* not the "
                                                    r"recorded"):
        art.grid("poisson")
    assert (copy / GRID).stat().st_size == 300_000 < before  # nothing was "repaired" behind the user's back


def test_with_verify_warn_the_truncation_is_still_caught_by_the_structure_check(copy, capsys):
    _truncate(copy / GRID, 300_000)
    art = P.open_artefacts(_published(copy, results_verify="warn"))
    with pytest.warns(UserWarning, match="SHA-256"), pytest.raises(ArtefactFormatError, match=r"grid_poisson.*cells"):
        art.grid("poisson")
    assert "WARNING" in capsys.readouterr().err and art.mismatches == [GRID]


def test_a_results_file_of_ones_own_reads_with_a_loud_warning(copy, capsys):
    d = json.loads((copy / BA).read_text())
    d["results_by_bin"]["18-19"]["median_score"] = 0.5  # a plausible result of another run
    (copy / BA).write_text(json.dumps(d))
    art = P.open_artefacts(_published(copy, results_verify="warn"))
    with pytest.warns(UserWarning):
        assert art.bright_arc("baseline")["results_by_bin"]["18-19"]["median_score"] == 0.5
    assert BA in capsys.readouterr().err
    assert P.open_artefacts(_published(copy, results_verify="off")).bright_arc("baseline")  # silent


def _edit_grid(folder, edit):
    df = pd.read_csv(folder / GRID, dtype={"source_mag_bin": str, "threshold_type": str})
    df = edit(df)
    df.to_csv(folder / GRID, index=False)


@pytest.mark.parametrize("edit, says", [
    (lambda df: df.assign(n_detected=df["n_detected"].where(df.index != 5000, 10**6)), "n_detected .* > n_injections"),
    (lambda df: df.assign(n_injections=df["n_injections"].where(df.index != 10, -3)), "non-negative integers"),
    (lambda df: df.assign(completeness=df["completeness"].where(df.index != 5000, 0.99)), "is not n_detected"),
    (lambda df: df.drop(index=df.index[(df.theta_e == 1.5) & (df.psf_fwhm == 1.2) & (df.depth_5sig == 23.5)]),
     "cells, the meta JSON's axes give 385"),
    (lambda df: df.drop(index=df.index[(df.theta_e == 1.5) & (df.psf_fwhm == 1.2) & (df.depth_5sig == 23.5)
                                       & (df.threshold == 0.5) & (df.source_mag_bin == "all")]),
     "exactly one 'all' row"),
    (lambda df: df.drop(index=df.index[(df.theta_e == 1.5) & (df.psf_fwhm == 1.2) & (df.depth_5sig == 23.5)
                                       & (df.threshold == 0.5) & (df.source_mag_bin == "23-24")]),
     "different source-magnitude bins"),
    (lambda df: df[df["threshold"] != 0.7], "has thresholds"),
    (lambda df: df.iloc[0:0], "no rows"),
])
def test_a_grid_csv_whose_numbers_do_not_add_up_names_the_file_and_field(copy, edit, says):
    _edit_grid(copy, edit)
    with pytest.raises(ArtefactFormatError, match=says) as exc:
        _off(copy).grid("poisson")
    assert GRID in str(exc.value)


def test_a_grid_meta_whose_total_differs(copy):
    meta = copy / "grid_poisson/selection_function_meta.json"
    m = json.loads(meta.read_text())
    m["total_injections_ok"] += 7
    meta.write_text(json.dumps(m))
    with pytest.raises(ArtefactFormatError, match="total_injections_ok"):
        _off(copy).grid("poisson")


@pytest.mark.parametrize("edit, says", [
    (lambda d: d["real_lens"].update(n_valid="112"), r"\[real_lens\]: field 'n_valid' must be a count"),
    (lambda d: d["real_lens"].update(n_valid=500), "n_valid 500 > n_total"),
    (lambda d: d["real_lens"]["recall_at_thresholds"].update({"p>0.3": 1.7}), "fraction in"),
    (lambda d: d.update(recall_by_tier=[1, 2]), "'recall_by_tier' must be an object"),
    (lambda d: d["recall_by_tier"]["tier_A"]["p>0.3"].update(n_detected=999), "n_detected 999 is not a count"),
    (lambda d: d.pop("negatives"), r"missing key\(s\) \['negatives'\]"),
])
def test_a_tier_a_json_with_wrong_types_or_counts(copy, edit, says):
    d = json.loads((copy / TIER_A).read_text())
    edit(d)
    (copy / TIER_A).write_text(json.dumps(d))
    with pytest.raises(ArtefactFormatError, match=says) as exc:
        _off(copy).tier_a_scoring()
    assert TIER_A in str(exc.value)


@pytest.mark.parametrize("edit, says", [
    (lambda d: d["results_by_bin"].pop("22-23"), r"lacks the magnitude bin\(s\) \['22-23'\]"),
    (lambda d: d["results_by_bin"]["18-19"].update(detection_rate_p03=1.5), "detection_rate_p03"),
    (lambda d: d["results_by_bin"]["18-19"].update(n_scored=-1), "n_scored"),
])
def test_a_bright_arc_json_with_wrong_bins_or_rates(copy, edit, says):
    d = json.loads((copy / BA).read_text())
    edit(d)
    (copy / BA).write_text(json.dumps(d))
    with pytest.raises(ArtefactFormatError, match=says):
        _off(copy).bright_arc("baseline")


def test_truncated_json_and_a_json_list_and_a_missing_file(copy):
    _truncate(copy / TIER_A, 200)
    with pytest.raises(ArtefactFormatError, match=r"real_lens_scoring_results\.json: not valid JSON"):
        _off(copy).tier_a_scoring()
    (copy / "poisson_diagnostics/d06_poisson_diagnostics.json").write_text("[1, 2]")
    with pytest.raises(ArtefactFormatError, match="expected a JSON object"):
        _off(copy).poisson_diagnostics()
    (copy / BA).unlink()
    with pytest.raises(ArtefactMissing, match=r"ba_baseline/bright_arc_results\.json.*needed for the bright-arc"):
        _off(copy).bright_arc("baseline")


def test_verify_lists_what_differs_is_missing_or_is_malformed(copy):
    _truncate(copy / GRID, 300_000)
    (copy / BA).unlink()
    r = verify_folder(open_store(str(copy)))
    assert not r.ok and r.mismatched == [GRID] and r.missing == [BA] and r.matched == 291
    assert set(r.structure) == {GRID} and "cells" in r.structure[GRID]


def test_verify_cli_exit_codes(copy, d06):
    good = cli("verify", str(d06))
    assert good.returncode == 0 and json.loads(good.stdout)["matched"] == 293
    _truncate(copy / GRID, 300_000)
    bad = cli("verify", str(copy))
    assert bad.returncode == 1 and json.loads(bad.stdout)["mismatched"] == [GRID]
    one_clear_line(bad, GRID, "SHA-256 differs", "PROBLEMS")


def test_a_recompute_folder_is_verified_against_its_own_provenance(tmp_path):
    res = tmp_path / "results"
    (res / "tier_a_scoring").mkdir(parents=True)
    (res / "tier_a_scoring/real_lens_scores.parquet").write_bytes(b"scores")
    (res / "notes.json").write_text("{}")
    (res / "provenance.json").write_text(json.dumps({"files": {}, "artefacts": artefact_checksums(res)}))
    assert set(artefact_checksums(res)) == {"tier_a_scoring/real_lens_scores.parquet", "notes.json"}
    r = verify_folder(open_store(str(res)))
    assert r.ok and r.matched == 2 and "provenance.json" in r.against
    (res / "notes.json").write_text('{"edited": 1}')
    (res / "tier_a_scoring/real_lens_scores.parquet").unlink()
    r = verify_folder(open_store(str(res)))
    assert r.mismatched == ["notes.json"] and r.missing == ["tier_a_scoring/real_lens_scores.parquet"]


def test_a_checksum_list_that_cannot_be_read(tmp_path):
    with pytest.raises(ChecksumFileError, match="results_checksums"):
        read_checksums(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text('{"files": [1]}')
    with pytest.raises(ChecksumFileError, match="not a checksum list"):
        read_checksums(tmp_path / "bad.json")


def test_claims_on_a_truncated_folder_is_an_error_not_a_pandas_traceback(copy):
    _truncate(copy / GRID, 300_000)
    p = cli("claims", "--profile", "published", "--results-uri", str(copy), "--set", f"output_dir={copy.parent}/o")
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert "grid_poisson/selection_function.csv" in p.stderr and "SHA-256" in p.stderr
    assert "ValueError" not in p.stderr

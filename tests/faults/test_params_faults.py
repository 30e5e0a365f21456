"""Fault suite, bad parameters: every profile key, the files they come from, --set, the CLI's sizes."""

from __future__ import annotations

import json

import pytest

from lenslib.repro import params as P
from tests.faults.conftest import cli, one_clear_line

BASE = "profile: t\nresults_uri: runs/x\noutput_dir: runs/t\n"


def _profile(tmp_path, extra: str = "", *, raw: bytes | None = None):
    f = tmp_path / "t.yaml"
    f.write_bytes(raw if raw is not None else (BASE + extra).encode())
    return f


@pytest.mark.parametrize("extra, name, says", [
    ("resuls_uri: typo\n", "resuls_uri", "unknown parameter"),
    ("figure_dpi: high\n", "figure_dpi", "must be int"),
    ("s3_endpoint_url: localhost:9000\n", "s3_endpoint_url", "not an http(s)://host"),
    ("s3_endpoint_url: 'http://127.0.0.1:port'\n", "s3_endpoint_url", "malformed port"),
    ("s3_connect_timeout: -1\n", "s3_connect_timeout", "must be in (0, 3600]"),
    ("s3_max_attempts: 0\n", "s3_max_attempts", "must be > 0"),
    ("claims_file: ''\n", "claims_file", "must not be empty"),
    ("results_verify: sometimes\n", "results_verify", "must be 'error', 'warn' or 'off'"),
    ("grid_max_retries: -1\n", "grid_max_retries", "must be ≥ 0"),
    ("fpr_targets: [0.5, 1.5]\n", "fpr_targets", "not in (0, 1)"),
    ("gate_theta_e: [2.5, 0.8]\n", "gate_theta_e", "[low, high]"),
    ("figure_formats: [tiff]\n", "figure_formats", "unsupported format"),
])
def test_a_bad_value_names_the_parameter_and_the_file(tmp_path, extra, name, says):
    f = _profile(tmp_path, extra)
    with pytest.raises(P.ParamError) as exc:
        P.load(str(f))
    assert name in str(exc.value) and says in str(exc.value) and "t.yaml" in str(exc.value)


@pytest.mark.parametrize("key, value, says", [
    ("output_dir", "", "must not be empty"),
    ("output_dir", ".", "must not be the repository root"),
    ("results_uri", "s3://", "no bucket name"),
    ("results_uri", "http://example.org/d06", "only s3:// URIs and local paths"),
    ("data_uri", " ", "must not be empty"),
])
def test_paths_and_uris_are_checked_before_anything_is_written(tmp_path, key, value, says):
    f = _profile(tmp_path)
    with pytest.raises(P.ParamError, match=key) as exc:
        P.load(str(f), {key: value})
    assert says in str(exc.value)


def test_a_profile_that_is_not_utf8_names_the_file(tmp_path):
    f = _profile(tmp_path, raw=BASE.encode() + b"description: caf\xe9\n")
    with pytest.raises(P.ParamError, match=r"t\.yaml: not UTF-8 text.*save it as UTF-8"):
        P.load(str(f))


@pytest.mark.parametrize("raw, says", [
    (b"- a\n- b\n", "must hold a mapping"),
    (b"profile: [unclosed\n", "not valid YAML"),
])
def test_a_profile_that_is_not_a_mapping_of_yaml_names_the_file(tmp_path, raw, says):
    with pytest.raises(P.ParamError, match=says):
        P.load(str(_profile(tmp_path, raw=raw)))


def test_a_profile_that_is_a_directory_or_unknown(tmp_path):
    d = tmp_path / "d.yaml"
    d.mkdir()
    with pytest.raises(P.ParamError, match="is a directory"):
        P.read_yaml_mapping(d)
    with pytest.raises(P.ParamError, match=r"unknown profile 'nosuch'.*profiles: .*demo"):
        P.load("nosuch")


def test_a_profile_outside_params_is_recorded_so_its_notebooks_read_the_same_file(tmp_path):
    f = _profile(tmp_path, "figure_dpi: 77\n")
    params = P.load(str(f))
    assert params["profile_file"] == str(f.resolve())
    # what a notebook does with the injected values: it finds the same file, not params/t.yaml
    from lenslib.repro.session import _injected  # noqa: F401 - the session reads profile_file
    assert P.profile_path(params["profile_file"]) == f
    assert P.load("published").get("profile_file") is None  # a profile in params/ needs no record


@pytest.mark.parametrize("item, says", [("output_dir", "expected key=value"), ("=3", "expected key=value"),
                                        ("figure_formats=[pdf", "not valid YAML")])
def test_set_items_that_cannot_be_read(item, says):
    with pytest.raises(P.ParamError, match=says):
        P.parse_set([item])


def test_cli_empty_output_dir_stops_with_exit_2_before_writing(tmp_path):
    p = cli("params", "--profile", "published", "--set", "output_dir=")
    assert p.returncode == 2
    one_clear_line(p, "output_dir", "must not be empty")


def test_cli_params_prints_json_of_a_good_profile():
    p = cli("params", "--profile", "published")
    assert p.returncode == 0 and json.loads(p.stdout)["results_checksums"] == "params/d06_checksums.json"


@pytest.mark.parametrize("args, says", [
    (["synth", "--out", "x", "--negatives", "-5"], "--negatives: must be ≥ 1, got -5"),
    (["synth", "--out", "x", "--negatives", "0"], "--negatives: must be ≥ 1, got 0"),
    (["synth", "--out", "x", "--positives", "-1"], "--positives: must be ≥ 0"),
    (["score", "--checkpoint", "c", "--manifest", "m", "--out", "o", "--batch-size", "0"], "--batch-size: must be ≥ 1"),
    (["score", "--checkpoint", "c", "--manifest", "m", "--out", "o", "--batch-size", "many"], "not an integer"),
])
def test_cli_sizes_are_checked(args, says):
    p = cli(*args)
    assert p.returncode == 2 and says in p.stderr and "Traceback" not in p.stderr

"""Parameter profiles: validation errors name the parameter and the file."""

from pathlib import Path

import pytest

from lenslib.repro import params as P

REPO = Path(__file__).resolve().parents[2]


def test_published_profile_loads_with_defaults():
    p = P.load("published")
    assert p["profile"] == "published"
    assert p["results_uri"].startswith("s3://darkhaloscope/stronglens_calibration/results/")
    assert p["figure_formats"] == ["pdf", "png"]


def test_set_overrides_are_typed():
    p = P.load("published", P.parse_set(["figure_dpi=90", "s3_anonymous=false", "figure_formats=[png]"]))
    assert p["figure_dpi"] == 90 and p["s3_anonymous"] is False and p["figure_formats"] == ["png"]


def test_unknown_key_names_parameter_and_file(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("profile: bad\nresults_uri: x\noutput_dir: y\nresuls_uri: typo\n")
    with pytest.raises(P.ParamError, match=r"bad\.yaml.*unknown parameter.*'resuls_uri'"):
        P.load(str(f))


def test_wrong_type_names_parameter(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("profile: bad\nresults_uri: x\noutput_dir: y\nfigure_dpi: high\n")
    with pytest.raises(P.ParamError, match=r"bad\.yaml.*'figure_dpi' must be int, got str 'high'"):
        P.load(str(f))


def test_missing_required_value(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("results_uri: x\n")
    with pytest.raises(P.ParamError, match=r"bad\.yaml.*required parameter 'profile' is missing"):
        P.load(str(f))
    f.write_text("profile: bad\noutput_dir: y\n")
    with pytest.raises(P.ParamError, match=r"bad\.yaml.*parameter 'results_uri' is missing.*recompute: true"):
        P.load(str(f))
    f.write_text("profile: bad\noutput_dir: y\nrecompute: true\n")
    assert P.load(str(f))["results_uri"] is None  # the recompute writes <output_dir>/results


def test_bad_override_and_bad_format():
    with pytest.raises(P.ParamError, match="unknown parameter.*'nope'"):
        P.load("published", P.parse_set(["nope=1"]))
    with pytest.raises(P.ParamError, match="'figure_formats' unsupported format"):
        P.load("published", P.parse_set(["figure_formats=[gif]"]))
    with pytest.raises(P.ParamError, match="expected key=value"):
        P.parse_set(["no_equals_sign"])


def test_unknown_profile_lists_profiles():
    with pytest.raises(P.ParamError, match="unknown profile 'nosuch'.*published"):
        P.profile_path("nosuch")

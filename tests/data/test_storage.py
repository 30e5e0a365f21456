"""Storage: local directories and a real S3 endpoint (moto server on 127.0.0.1) through boto3."""

import time

import pytest

from lenslib.data.storage import ArtefactMissing, StoreUnreachable, open_store
from lenslib.experiments.artefacts import ArtefactFormatError, D06Artefacts


def test_s3_and_local_read_identical_bytes(s3_server, d06):
    s3 = open_store(s3_server["uri"], endpoint_url=s3_server["endpoint_url"])
    local = open_store(str(d06))
    key = "grid_no_poisson/selection_function.csv"
    assert s3.read_bytes(key) == local.read_bytes(key)
    assert s3.reads[key].sha256 == local.reads[key].sha256
    assert s3.reads[key].uri.startswith("s3://darkhaloscope/")


def test_s3_listing_matches_local(s3_server, d06):
    s3 = open_store(s3_server["uri"], endpoint_url=s3_server["endpoint_url"])
    local = open_store(str(d06))
    assert list(s3.list("gallery/")) == list(local.list("gallery/"))
    assert len(list(s3.list("gallery/thumbs/"))) == 271


def test_missing_key_names_the_file(s3_server):
    s3 = open_store(s3_server["uri"], endpoint_url=s3_server["endpoint_url"])
    with pytest.raises(ArtefactMissing, match=r"s3://darkhaloscope/.*nope/missing\.json"):
        s3.read_bytes("nope/missing.json")
    assert not s3.exists("nope/missing.json") and s3.exists("provenance.json")


def test_missing_artefact_says_what_needs_it(tmp_path):
    art = D06Artefacts(open_store(str(tmp_path)))
    with pytest.raises(ArtefactMissing, match=r"linear_probe/checkpoint\.npz.*linear-probe"):
        art.probe_checkpoint()


def test_unreachable_endpoint_fails_fast_and_clearly():
    dead = open_store("s3://darkhaloscope/x/", endpoint_url="http://127.0.0.1:9", max_attempts=1, connect_timeout=1)
    t0 = time.perf_counter()
    with pytest.raises(StoreUnreachable, match=r"cannot reach S3 endpoint http://127\.0\.0\.1:9"):
        dead.read_bytes("provenance.json")
    assert time.perf_counter() - t0 < 10


def test_no_such_bucket(s3_server):
    s3 = open_store("s3://no-such-bucket/x/", endpoint_url=s3_server["endpoint_url"])
    with pytest.raises(StoreUnreachable, match="bucket 'no-such-bucket' does not exist"):
        s3.read_bytes("provenance.json")


def test_private_bucket_without_credentials_is_access_denied(s3_server):
    s3_server["client"].create_bucket(Bucket="private", CreateBucketConfiguration={"LocationConstraint": "us-east-2"})
    s3_server["client"].put_object(Bucket="private", Key="a.json", Body=b"{}")
    with pytest.raises(StoreUnreachable, match="access denied.*anonymous"):
        open_store("s3://private/", endpoint_url=s3_server["endpoint_url"]).read_bytes("a.json")


def test_missing_local_directory():
    with pytest.raises(ArtefactMissing, match="directory .* does not exist"):
        open_store("/nonexistent/d06")


def test_corrupt_artefacts_are_named(tmp_path):
    (tmp_path / "tier_a_scoring").mkdir()
    (tmp_path / "tier_a_scoring" / "real_lens_scoring_results.json").write_text("{not json")
    (tmp_path / "linear_probe").mkdir()
    (tmp_path / "linear_probe" / "checkpoint.npz").write_bytes(b"PK\x03\x04 truncated")
    (tmp_path / "grid_poisson").mkdir()
    (tmp_path / "grid_poisson" / "selection_function.csv").write_text("theta_e,psf_fwhm\n1,2\n")
    art = D06Artefacts(open_store(str(tmp_path)))
    with pytest.raises(ArtefactFormatError, match=r"real_lens_scoring_results\.json: not valid JSON"):
        art.tier_a_scoring()
    with pytest.raises(ArtefactFormatError, match=r"checkpoint\.npz: not a readable \.npz"):
        art.probe_checkpoint()
    with pytest.raises(ArtefactFormatError, match=r"selection_function\.csv: missing column\(s\)"):
        art.grid("poisson")

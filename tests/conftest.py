"""Shared fixtures: the real D06 artefacts in ../shared, a local S3 server (moto) serving them,
and an isolated copy of the project for end-to-end runs."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"
D06 = SHARED / "d06"
BUCKET = "darkhaloscope"
PREFIX = "stronglens_calibration/results/D06_20260216_corrected_priors/"


def pytest_sessionstart(session):
    if not (D06 / "provenance.json").exists():
        raise pytest.UsageError(f"the published D06 artefacts are expected at {D06} (../shared/data/d06)")


@pytest.fixture(scope="session")
def d06() -> Path:
    return D06


@pytest.fixture(scope="session")
def art(d06):
    from lenslib.artefacts import D06Artefacts
    from lenslib.storage import open_store

    return D06Artefacts(open_store(str(d06)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    """A real S3 HTTP endpoint on 127.0.0.1 (moto server mode) with the D06 files in a public bucket."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=url, region_name="us-east-2",
                          aws_access_key_id="test", aws_secret_access_key="test")
    client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "us-east-2"})
    policy = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject", "s3:ListBucket"],
        "Resource": [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"]}]}
    client.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps(policy))
    for path in sorted(D06.rglob("*")):
        if path.is_file():
            client.put_object(Bucket=BUCKET, Key=PREFIX + path.relative_to(D06).as_posix(), Body=path.read_bytes())
    yield {"endpoint_url": url, "uri": f"s3://{BUCKET}/{PREFIX}", "client": client}
    server.stop()


@pytest.fixture
def project(tmp_path) -> Path:
    """A copy of the project (package, notebooks, params, book config) to run end to end in isolation."""
    dst = tmp_path / "project"
    dst.mkdir()
    for name in ("lenslib", "notebooks", "params", "book", "_config.yml", "_toc.yml"):
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dst / name, ignore=shutil.ignore_patterns("__pycache__", "executed"))
        else:
            shutil.copy2(src, dst / name)
    (tmp_path / "shared").symlink_to(REPO.parent / "shared")  # profiles name ../shared/... paths
    return dst

"""Shared fixtures: the authors' files in ../shared (D06 artefacts, DR10 cutouts, configs, catalogues),
a local S3 server (moto) serving the D06 artefacts, and an isolated copy of the project for end-to-end runs.

Tests that need ../shared skip, saying what is missing, where it is absent; ``--require-shared``
(which .ci/run passes) turns those skips into failures. Plots are drawn with matplotlib's Agg
backend here: lenslib's plot functions never choose a backend themselves."""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")  # the tests' choice; notebooks executed by papermill show figures inline

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"
D06 = SHARED / "d06"
BUCKET = "darkhaloscope"
PREFIX = "stronglens_calibration/results/D06_20260216_corrected_priors/"


# distributed's nannies set these in the process that starts a LocalCluster and never reset them: after a test
# that starts one, every later subprocess (lenslib run, notebooks) would run torch on one thread
_THREAD_ENV = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                               "MALLOC_TRIM_THRESHOLD_")}


@pytest.fixture(autouse=True)
def _thread_environment_as_at_start():
    yield
    for k, v in _THREAD_ENV.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def pytest_addoption(parser):
    parser.addoption("--require-shared", action="store_true",
                     help="fail (instead of skipping) the tests whose files in ../shared/data are absent")


@pytest.fixture(scope="session")
def shared(request):
    """``shared("dr10_samples", "sample_cutout.npz")`` → the path under ../shared/data; skips the test
    (fails it with --require-shared) when that file or folder is absent."""
    strict = request.config.getoption("--require-shared")

    def get(*parts: str) -> Path:
        path = SHARED.joinpath(*parts)
        if not path.exists():
            reason = f"needs {path} (the authors' files in ../shared/data), which is absent"
            if strict:
                pytest.fail(f"{reason}; --require-shared makes this a failure")
            pytest.skip(reason)
        return path

    return get


@pytest.fixture(scope="session")
def d06(shared) -> Path:
    shared("d06", "provenance.json")
    return D06


@pytest.fixture(scope="session")
def art(d06):
    from lenslib.data.storage import open_store
    from lenslib.experiments.artefacts import D06Artefacts

    return D06Artefacts(open_store(str(d06)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint():
    """A real S3 HTTP endpoint on 127.0.0.1 (moto server mode) with an empty public bucket."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=url, region_name="us-east-2",
                          aws_access_key_id="test", aws_secret_access_key="test")
    try:
        client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "us-east-2"})
    except client.exceptions.BucketAlreadyOwnedByYou:  # moto's backend outlives a pytest session run in-process
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):  # (as mutmut does): empty it
            for obj in page.get("Contents", []):
                client.delete_object(Bucket=BUCKET, Key=obj["Key"])
    policy = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject", "s3:ListBucket"],
        "Resource": [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"]}]}
    client.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps(policy))
    yield {"endpoint_url": url, "client": client}
    server.stop()


@pytest.fixture(scope="session")
def s3_server(s3_endpoint, d06):
    """The endpoint of :func:`s3_endpoint` with the D06 files under the authors' prefix."""
    client = s3_endpoint["client"]
    for path in sorted(d06.rglob("*")):
        if path.is_file():
            client.put_object(Bucket=BUCKET, Key=PREFIX + path.relative_to(d06).as_posix(), Body=path.read_bytes())
    return {**s3_endpoint, "uri": f"s3://{BUCKET}/{PREFIX}"}


def copy_project(tmp_path: Path, shared: bool = True) -> Path:
    """A copy of the project (package, notebooks, params, book config) under ``tmp_path``, with ../shared
    beside it (unless ``shared`` is false: then nothing from outside the project is there), to run end to end
    in isolation."""
    dst = tmp_path / "project"
    dst.mkdir()
    for name in ("lenslib", "notebooks", "params", "book", "_config.yml", "_toc.yml"):
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dst / name, ignore=shutil.ignore_patterns("__pycache__", "executed"))
        else:
            shutil.copy2(src, dst / name)
    if shared:
        (tmp_path / "shared").symlink_to(REPO.parent / "shared")  # profiles name ../shared/... paths
    return dst


@pytest.fixture
def project(tmp_path) -> Path:
    """A copy of the project to run end to end in isolation (see :func:`copy_project`)."""
    return copy_project(tmp_path)

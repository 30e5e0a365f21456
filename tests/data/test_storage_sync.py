"""Listing thousands of keys, sync with resume after a kill, and the read cache, against a real S3
HTTP endpoint (moto server on 127.0.0.1)."""

import subprocess
import sys
import time

import pytest

from lenslib.data.storage import ArtefactMissing, open_store, sync

BUCKET = "darkhaloscope"
N_KEYS = 2500


@pytest.fixture(scope="module")
def bulk(s3_server):
    """2 500 small objects under one prefix (three pages of 1 000 keys); one of them > 1 MiB."""
    client = s3_server["client"]
    prefix = "stronglens_calibration/bulk/"
    for i in range(N_KEYS):
        body = (f"object {i}\n" * (1 + i % 7)).encode() if i else b"x" * (3 << 20)
        client.put_object(Bucket=BUCKET, Key=f"{prefix}{i // 500:02d}/obj{i:05d}.txt", Body=body)
    return dict(uri=f"s3://{BUCKET}/stronglens_calibration", prefix="bulk/", endpoint=s3_server["endpoint_url"])


def _store(bulk, **kw):
    return open_store(bulk["uri"], endpoint_url=bulk["endpoint"], **kw)


def test_listing_pages_through_thousands_of_keys(bulk):
    objs = list(_store(bulk).list_objects(bulk["prefix"]))
    assert len(objs) == N_KEYS == len({o.key for o in objs})
    assert objs[0].size == 3 << 20 and all(len(o.etag) == 32 for o in objs)


def test_sync_resumes_after_a_kill_and_skips_what_is_there(bulk, tmp_path):
    dest = tmp_path / "mirror"
    code = (f"from lenslib.data.storage import open_store, sync; "
            f"sync(open_store({bulk['uri']!r}, endpoint_url={bulk['endpoint']!r}), {bulk['prefix']!r}, "
            f"{str(dest)!r}, workers=1, progress=False)")
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.time() + 60
    while time.time() < deadline and (not dest.exists() or sum(1 for _ in dest.rglob("*.txt")) < 300):
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    done_before = sum(1 for _ in dest.rglob("*.txt"))
    assert 300 <= done_before < N_KEYS, "the kill should land mid-way"
    report = sync(_store(bulk), bulk["prefix"], dest, workers=8, progress=False)
    assert report.listed == N_KEYS and report.skipped >= done_before
    assert report.skipped + report.downloaded == N_KEYS
    files = sorted(p for p in dest.rglob("*") if p.is_file() and p.name != ".lenslib.lock")  # the sync's lock
    assert len(files) == N_KEYS and not any(p.name.endswith(".part") for p in files)
    assert (dest / "bulk/00/obj00000.txt").stat().st_size == 3 << 20
    assert (dest / "bulk/04/obj02001.txt").read_text() == "object 2001\n" * (1 + 2001 % 7)
    again = sync(_store(bulk), bulk["prefix"], dest, progress=False)
    assert (again.downloaded, again.skipped) == (0, N_KEYS)
    # a changed local file (same size, different bytes) is caught by the ETag and fetched again
    f = dest / "bulk/01/obj00500.txt"
    f.write_text(f.read_text().replace("o", "O"))
    assert sync(_store(bulk), bulk["prefix"], dest, progress=False).downloaded == 1
    assert f.read_text().startswith("object 500")


def test_cache_serves_second_reads_without_a_request(bulk, tmp_path):
    store = _store(bulk, cache_dir=tmp_path / "cache")
    calls = []
    store.inner._client.meta.events.register("before-send.s3.GetObject", lambda **kw: calls.append(1))
    first = store.read_bytes("bulk/01/obj00501.txt")
    second = store.read_bytes("bulk/01/obj00501.txt")
    assert first == second == ("object 501\n" * (1 + 501 % 7)).encode()
    assert len(calls) == 1 and (tmp_path / "cache/bulk/01/obj00501.txt").is_file()
    assert store.reads["bulk/01/obj00501.txt"].size_bytes == len(first)
    with pytest.raises(ArtefactMissing, match="nothere.txt"):
        store.read_bytes("bulk/nothere.txt")
    assert not (tmp_path / "cache/bulk/nothere.txt").exists()

"""One way to read data: ``s3://bucket/prefix`` URIs through boto3, or a local directory.

A :class:`Store` is rooted at a URI; files are addressed by a key relative to that root.
Every read is recorded (key, size, SHA-256) so a run can report exactly what it consumed.
Errors say which file or endpoint failed: :class:`ArtefactMissing`, :class:`StoreUnreachable`.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from lenslib import LenslibError
from lenslib._util import atomic_write, resolve_path, write_bytes_atomic


class ArtefactMissing(LenslibError, FileNotFoundError):
    """A file the run needs is not at the store."""


class StoreUnreachable(LenslibError, ConnectionError):
    """The store (an S3 endpoint, a bucket) cannot be reached or refuses access."""


@dataclass
class ReadRecord:
    uri: str
    key: str
    size_bytes: int
    sha256: str


@dataclass(frozen=True)
class ObjectInfo:
    """One stored object: key relative to the store root, size in bytes, S3 ETag (None for local files)."""

    key: str
    size: int
    etag: str | None = None


@dataclass
class Store:
    """Base class: subclasses implement ``_read``, ``_exists`` and ``_list``."""

    uri: str
    reads: dict[str, ReadRecord] = field(default_factory=dict, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def url(self, key: str) -> str:
        return f"{self.uri.rstrip('/')}/{key.lstrip('/')}"

    def read_bytes(self, key: str) -> bytes:
        """Read one file; records its hash. Raises ArtefactMissing / StoreUnreachable."""
        data = self._read(key)
        rec = ReadRecord(self.url(key), key, len(data), hashlib.sha256(data).hexdigest())
        with self._lock:
            self.reads[key] = rec
        return data

    def read_many(self, keys: Iterable[str], workers: int = 8) -> dict[str, bytes]:
        """Read several files concurrently (thumbnails, per-variant JSONs)."""
        keys = list(keys)
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(keys) or 1))) as pool:
            return dict(zip(keys, pool.map(self.read_bytes, keys), strict=True))

    def exists(self, key: str) -> bool:
        return self._exists(key)

    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys under ``prefix`` (relative to the store root), in lexical order."""
        return self._list(prefix)

    def list_objects(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Keys under ``prefix`` with their sizes (and ETags on S3); pages through any number of keys."""
        return self._list_objects(prefix)

    def download(self, key: str, dest: Path) -> int:
        """Copy one object to ``dest`` (written to a ``.part`` file then renamed: a killed copy leaves no
        file under the real name). Returns the number of bytes."""
        data = self._read(key)
        write_bytes_atomic(dest, data)
        return len(data)

    # subclasses ------------------------------------------------------------
    def _read(self, key: str) -> bytes:  # pragma: no cover - abstract
        raise NotImplementedError

    def _exists(self, key: str) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def _list(self, prefix: str) -> Iterator[str]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _list_objects(self, prefix: str) -> Iterator[ObjectInfo]:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass
class LocalStore(Store):
    root: Path = Path(".")

    def _read(self, key: str) -> bytes:
        path = self.root / key
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ArtefactMissing(f"missing artefact: {path} (store {self.uri})") from None

    def _exists(self, key: str) -> bool:
        return (self.root / key).is_file()

    def _list(self, prefix: str) -> Iterator[str]:
        base = self.root / prefix
        if not base.exists():
            return iter(())
        files = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
        return (p.relative_to(self.root).as_posix() for p in files)

    def _list_objects(self, prefix: str) -> Iterator[ObjectInfo]:
        return (ObjectInfo(k, (self.root / k).stat().st_size) for k in self._list(prefix))


@dataclass
class S3Store(Store):
    bucket: str = ""
    prefix: str = ""
    region: str = "us-east-2"
    endpoint_url: str | None = None
    anonymous: bool = True
    max_attempts: int = 4
    connect_timeout: float = 5.0

    def __post_init__(self) -> None:
        import boto3
        from botocore import UNSIGNED
        from botocore.config import Config

        config = Config(
            region_name=self.region,
            retries={"max_attempts": self.max_attempts, "mode": "standard"},
            connect_timeout=self.connect_timeout,
            read_timeout=60,
            max_pool_connections=16,
            signature_version=UNSIGNED if self.anonymous else None,
        )
        self._client = boto3.session.Session().client("s3", endpoint_url=self.endpoint_url, config=config)

    def _full(self, key: str) -> str:
        return f"{self.prefix}{key.lstrip('/')}" if self.prefix else key.lstrip("/")

    def _where(self) -> str:
        return f"endpoint {self.endpoint_url}" if self.endpoint_url else f"AWS region {self.region}"

    def _call(self, what: str, fn, **kwargs):
        from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

        try:
            return fn(Bucket=self.bucket, **kwargs)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("NoSuchKey", "404", "NotFound"):
                raise ArtefactMissing(f"missing artefact: {what} (not in the bucket)") from None
            if code == "NoSuchBucket":
                raise StoreUnreachable(f"bucket {self.bucket!r} does not exist at {self._where()} ({what})") from None
            if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                hint = "" if not self.anonymous else " (anonymous access; set s3_anonymous: false to use credentials)"
                raise StoreUnreachable(f"access denied to {what}{hint}") from None
            raise StoreUnreachable(f"S3 error {code} reading {what}: {exc}") from None
        except (EndpointConnectionError, BotoCoreError) as exc:
            raise StoreUnreachable(f"cannot reach S3 {self._where()} for {what}: {exc}") from None

    def _read(self, key: str) -> bytes:
        obj = self._call(self.url(key), self._client.get_object, Key=self._full(key))
        return obj["Body"].read()

    def _exists(self, key: str) -> bool:
        # a one-key listing rather than HEAD: it needs only the list permission a public bucket grants
        full = self._full(key)
        page = self._call(self.url(key), self._client.list_objects_v2, Prefix=full, MaxKeys=1)
        return any(obj["Key"] == full for obj in page.get("Contents", []))

    def _list(self, prefix: str) -> Iterator[str]:
        return (o.key for o in self._list_objects(prefix))

    def _list_objects(self, prefix: str) -> Iterator[ObjectInfo]:
        from botocore.exceptions import BotoCoreError, ClientError

        paginator = self._client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._full(prefix)):
                for obj in page.get("Contents", []):
                    yield ObjectInfo(obj["Key"][len(self.prefix):], int(obj["Size"]), obj.get("ETag", "").strip('"'))
        except (ClientError, BotoCoreError) as exc:
            raise StoreUnreachable(f"cannot list {self.url(prefix)} at {self._where()}: {exc}") from None

    def download(self, key: str, dest: Path) -> int:
        """Stream one object to ``dest`` via a ``.part`` file (large files never sit in memory)."""
        obj = self._call(self.url(key), self._client.get_object, Key=self._full(key))
        n = 0
        with atomic_write(dest) as part, open(part, "wb") as fh:
            for chunk in obj["Body"].iter_chunks(1 << 20):
                fh.write(chunk)
                n += len(chunk)
        return n


def open_store(
    uri: str,
    *,
    region: str = "us-east-2",
    endpoint_url: str | None = None,
    anonymous: bool = True,
    max_attempts: int = 4,
    connect_timeout: float = 5.0,
    cache_dir: str | Path | None = None,
) -> Store:
    """Open a store rooted at ``uri`` (``s3://bucket/prefix/`` or a local directory).

    S3 requests are retried ``max_attempts`` times with botocore's exponential back-off and jitter.
    With ``cache_dir`` every object read is kept there and later reads are served from disk."""
    store = _open(uri, region=region, endpoint_url=endpoint_url, anonymous=anonymous, max_attempts=max_attempts,
                  connect_timeout=connect_timeout)
    if cache_dir is None:
        return store
    return CachedStore(uri=store.uri, inner=store, cache_dir=Path(cache_dir))


def _open(uri: str, *, region: str, endpoint_url: str | None, anonymous: bool, max_attempts: int,
          connect_timeout: float) -> Store:
    if uri.startswith("s3://"):
        bucket, _, prefix = uri[5:].partition("/")
        if not bucket:
            raise StoreUnreachable(f"{uri!r}: no bucket name in the URI")
        prefix = prefix.strip("/")
        return S3Store(
            uri=uri.rstrip("/"),
            bucket=bucket,
            prefix=f"{prefix}/" if prefix else "",
            region=region,
            endpoint_url=endpoint_url,
            anonymous=anonymous,
            max_attempts=max_attempts,
            connect_timeout=connect_timeout,
        )
    root = resolve_path(uri)
    if not root.is_dir():
        raise ArtefactMissing(f"directory {root} does not exist (from {uri!r})")
    return LocalStore(uri=str(root), root=root)


@dataclass
class CachedStore(Store):
    """A store whose reads are kept in a local directory: a second read of a key costs no request.

    Cache files mirror the keys (``cache_dir/<key>``) and are written atomically."""

    inner: Store | None = None
    cache_dir: Path = Path(".cache")

    def _cached(self, key: str) -> Path:
        return self.cache_dir / key.lstrip("/")

    def _read(self, key: str) -> bytes:
        path = self._cached(key)
        if path.is_file():
            return path.read_bytes()
        data = self.inner._read(key)
        write_bytes_atomic(path, data)  # temporaries are per thread: threads of one sync may read one key
        return data

    def _exists(self, key: str) -> bool:
        return self._cached(key).is_file() or self.inner._exists(key)

    def _list(self, prefix: str) -> Iterator[str]:
        return self.inner._list(prefix)

    def _list_objects(self, prefix: str) -> Iterator[ObjectInfo]:
        return self.inner._list_objects(prefix)


@dataclass
class SyncReport:
    listed: int = 0
    downloaded: int = 0
    skipped: int = 0
    bytes_downloaded: int = 0


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _up_to_date(obj: ObjectInfo, local: Path, check_etag: bool) -> bool:
    if not local.is_file() or local.stat().st_size != obj.size:
        return False
    # a plain ETag is the MD5 of the object; multipart ETags ("...-N") are not, so size decides those
    if check_etag and obj.etag and "-" not in obj.etag and len(obj.etag) == 32:
        return _md5(local) == obj.etag
    return True


def sync(store: Store, prefix: str, dest: str | Path, *, workers: int = 8, progress: bool = True,
         check_etag: bool = True) -> SyncReport:
    """Mirror every object under ``prefix`` into ``dest`` (same relative keys), like ``aws s3 sync``.

    Objects already present with the same size (and MD5 = ETag where the ETag is one) are skipped, so
    an interrupted sync resumes where it stopped; files are written via ``.part`` and renamed, so a
    kill never leaves a truncated file under a real name. Downloads run on ``workers`` threads. The sync
    holds the lock of ``dest`` (:func:`lenslib._lock.output_lock`): a second sync into it stops at once."""
    from lenslib._lock import output_lock

    with output_lock(dest, "sync"):
        return _sync(store, prefix, Path(dest), workers=workers, progress=progress, check_etag=check_etag)


def _sync(store: Store, prefix: str, dest: Path, *, workers: int, progress: bool, check_etag: bool) -> SyncReport:
    from lenslib._tqdm import tqdm

    report = SyncReport()
    todo: list[ObjectInfo] = []
    for obj in store.list_objects(prefix):
        report.listed += 1
        if _up_to_date(obj, dest / obj.key, check_etag):
            report.skipped += 1
        else:
            todo.append(obj)
    with tqdm(total=len(todo), desc=f"sync {store.url(prefix)}", unit="file", disable=not progress) as bar, \
            ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for n in pool.map(lambda o: store.download(o.key, dest / o.key), todo):
            report.downloaded += 1
            report.bytes_downloaded += n
            bar.update()
    return report

"""One way to read data: ``s3://bucket/prefix`` URIs through boto3, or a local directory.

A :class:`Store` is rooted at a URI; files are addressed by a key relative to that root.
Every read is recorded (key, size, SHA-256) so a run can report exactly what it consumed.
Errors say which file or endpoint failed: :class:`ArtefactMissing`, :class:`StoreUnreachable`.
"""

from __future__ import annotations

import hashlib
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from lenslib import LenslibError


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
            return dict(zip(keys, pool.map(self.read_bytes, keys)))

    def exists(self, key: str) -> bool:
        return self._exists(key)

    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys under ``prefix`` (relative to the store root), in lexical order."""
        return self._list(prefix)

    # subclasses ------------------------------------------------------------
    def _read(self, key: str) -> bytes:  # pragma: no cover - abstract
        raise NotImplementedError

    def _exists(self, key: str) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def _list(self, prefix: str) -> Iterator[str]:  # pragma: no cover - abstract
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
        from botocore.exceptions import BotoCoreError, ClientError

        paginator = self._client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._full(prefix)):
                for obj in page.get("Contents", []):
                    yield obj["Key"][len(self.prefix):]
        except (ClientError, BotoCoreError) as exc:
            raise StoreUnreachable(f"cannot list {self.url(prefix)} at {self._where()}: {exc}") from None


def open_store(
    uri: str,
    *,
    region: str = "us-east-2",
    endpoint_url: str | None = None,
    anonymous: bool = True,
    max_attempts: int = 4,
    connect_timeout: float = 5.0,
) -> Store:
    """Open a store rooted at ``uri`` (``s3://bucket/prefix/`` or a local directory)."""
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
    from lenslib.params import resolve_path

    root = resolve_path(uri)
    if not root.is_dir():
        raise ArtefactMissing(f"results directory {root} does not exist (from {uri!r})")
    return LocalStore(uri=str(root), root=root)

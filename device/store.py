"""The object store: one interface, a local directory and S3, with the same compare-and-swap.

Devices read bundles and manifests from it and upload telemetry to it, so it lives in the
bottom layer. Manifests and rollout state are only ever replaced with `put_if_match`: a writer
names the ETag it read, and a writer who lost the race gets `ConflictError` instead of silently
overwriting someone else's update.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from edgeops.errors import ConflictError, StoreError

MULTIPART_THRESHOLD = 8 * 1024 * 1024
CHUNK = 64 * 1024
BODY_ATTEMPTS = 4  # a GET whose body breaks off is resumed with a Range request this often
_LOCK_DIR = ".locks"
_TMP_PREFIX = ".tmp-"


class MissingKeyError(StoreError):
    """The key does not exist in the store."""


@runtime_checkable
class ObjectStore(Protocol):
    url: str

    def get(self, key: str) -> bytes: ...
    def get_with_etag(self, key: str) -> tuple[bytes, str]: ...
    def put(self, key: str, data: bytes) -> str: ...
    def put_if_match(self, key: str, data: bytes, etag: str | None) -> str: ...
    def exists(self, key: str) -> bool: ...
    def list(self, prefix: str = "") -> list[str]: ...
    def delete(self, key: str) -> None: ...
    def upload_file(self, key: str, path: str | Path) -> str: ...
    def iter_chunks(self, key: str, chunk_size: int = CHUNK) -> Iterator[bytes]: ...


def _check_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise StoreError(f"invalid object key {key!r}")
    if parts[0] == _LOCK_DIR or any(p.startswith(_TMP_PREFIX) for p in parts):
        raise StoreError(f"reserved object key {key!r}")
    return key


class LocalStore:
    """A directory with the S3 layout. Writes go to a temp file and `os.replace`, so a reader
    never sees half an object; CAS holds an `fcntl` lock per key, so concurrent processes on
    one machine never lose an update. ETag = sha256 hex of the content."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()
        self.url = str(self.root)

    def _path(self, key: str) -> Path:
        return self.root / _check_key(key)

    @contextlib.contextmanager
    def _lock(self, key: str) -> Iterator[None]:
        lock_dir = self.root / _LOCK_DIR
        lock_dir.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha256(key.encode()).hexdigest()[:32]
        with open(lock_dir / f"{name}.lock", "a+b") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def _write_atomic(self, path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def get(self, key: str) -> bytes:
        return self.get_with_etag(key)[0]

    def get_with_etag(self, key: str) -> tuple[bytes, str]:
        path = self._path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise MissingKeyError(f"no object {key!r}", where=self.url) from None
        except OSError as exc:
            raise StoreError(f"cannot read {key!r}: {exc.strerror}", where=self.url) from exc
        return data, hashlib.sha256(data).hexdigest()

    def put(self, key: str, data: bytes) -> str:
        path = self._path(key)
        with self._lock(key):
            self._write_atomic(path, data)
        return hashlib.sha256(data).hexdigest()

    def put_if_match(self, key: str, data: bytes, etag: str | None) -> str:
        path = self._path(key)
        with self._lock(key):
            try:
                current: str | None = hashlib.sha256(path.read_bytes()).hexdigest()
            except FileNotFoundError:
                current = None
            if current != etag:
                want = "absent" if etag is None else f"etag {etag[:12]}"
                have = "absent" if current is None else f"etag {current[:12]}"
                raise ConflictError(
                    f"stale write to {key!r}: expected {want}, found {have}", where=self.url
                )
            self._write_atomic(path, data)
        return hashlib.sha256(data).hexdigest()

    def iter_chunks(self, key: str, chunk_size: int = CHUNK) -> Iterator[bytes]:
        """Open now (MissingKeyError at once), then stream: the caller caps the length."""
        path = self._path(key)
        try:
            fh = open(path, "rb")  # noqa: SIM115 - closed by the generator
        except FileNotFoundError:
            raise MissingKeyError(f"no object {key!r}", where=self.url) from None
        except OSError as exc:
            raise StoreError(f"cannot read {key!r}: {exc.strerror}", where=self.url) from exc

        def chunks() -> Iterator[bytes]:
            with fh:
                yield from iter(lambda: fh.read(chunk_size), b"")

        return chunks()

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> list[str]:
        if not self.root.is_dir():
            return []
        keys = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = [
                d for d in dirnames if not (d == _LOCK_DIR and dirpath == str(self.root))
            ]
            for name in filenames:
                if name.startswith(_TMP_PREFIX):
                    continue
                key = Path(dirpath, name).relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def delete(self, key: str) -> None:
        with self._lock(key), contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()

    def upload_file(self, key: str, path: str | Path) -> str:
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=dest.parent)
        try:
            with open(path, "rb") as src, os.fdopen(fd, "wb") as out:
                for chunk in iter(lambda: src.read(1 << 20), b""):
                    digest.update(chunk)
                    out.write(chunk)
            with self._lock(key):
                os.replace(tmp, dest)
        except OSError as exc:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise StoreError(f"cannot upload {path} to {key!r}: {exc}", where=self.url) from exc
        return digest.hexdigest()

    def __repr__(self) -> str:
        return f"LocalStore({self.url!r})"


class S3Store:
    """S3 (or MinIO, moto) through boto3: botocore retries with backoff, conditional writes
    (`IfMatch` / `IfNoneMatch="*"`), multipart upload above `MULTIPART_THRESHOLD`."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        max_attempts: int = 5,
        retry_mode: str = "adaptive",
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        client: Any = None,
    ) -> None:
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.where = f"{self.url} at {endpoint_url}" if endpoint_url else self.url
        config = Config(
            retries={"max_attempts": max_attempts, "mode": retry_mode},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        )
        self._client = client or boto3.client("s3", endpoint_url=endpoint_url, config=config)

    def _key(self, key: str) -> str:
        _check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _error(self, exc: Exception, action: str, key: str) -> StoreError:
        from botocore.exceptions import ClientError

        if isinstance(exc, ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("NoSuchKey", "404", "NotFound"):
                return MissingKeyError(f"no object {key!r}", where=self.where)
            if code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (409, 412):
                return ConflictError(f"stale write to {key!r}: {code or status}", where=self.where)
            return StoreError(
                f"{action} {key!r} failed: {code} {err.get('Message', '')}".strip(),
                where=self.where,
            )
        return StoreError(f"{action} {key!r} failed, store unreachable: {exc}", where=self.where)

    def _call(self, action: str, key: str, fn: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(Bucket=self.bucket, Key=self._key(key), **kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, action, key) from exc

    def get(self, key: str) -> bytes:
        return self.get_with_etag(key)[0]

    def get_with_etag(self, key: str) -> tuple[bytes, str]:
        resp = self._call("get", key, self._client.get_object)
        etag = resp["ETag"].strip('"')
        return b"".join(self._body(key, resp, etag, CHUNK)), etag

    def iter_chunks(self, key: str, chunk_size: int = CHUNK) -> Iterator[bytes]:
        """GET now (MissingKeyError at once); the body streams and resumes after a break."""
        resp = self._call("get", key, self._client.get_object)
        return self._body(key, resp, resp["ETag"].strip('"'), chunk_size)

    def _body(self, key: str, resp: Any, etag: str, chunk_size: int) -> Iterator[bytes]:
        """Yield the body; a connection that breaks mid-body (botocore's streaming and
        read-timeout errors, which the client's retries do not cover) is resumed from the
        offset reached with `Range` + `IfMatch`, so the object cannot change underneath."""
        from botocore.exceptions import BotoCoreError, ClientError

        got = 0
        for attempt in range(BODY_ATTEMPTS):
            try:
                for chunk in resp["Body"].iter_chunks(chunk_size):
                    got += len(chunk)
                    yield chunk
                return
            except (BotoCoreError, OSError) as exc:
                if attempt + 1 == BODY_ATTEMPTS:
                    raise StoreError(
                        f"get {key!r} broke off after {got} bytes, {BODY_ATTEMPTS} tries: {exc}",
                        where=self.where,
                    ) from exc
            try:
                resp = self._client.get_object(
                    Bucket=self.bucket, Key=self._key(key), Range=f"bytes={got}-", IfMatch=f'"{etag}"'
                )
            except (ClientError, BotoCoreError) as exc:
                raise self._error(exc, "resume", key) from exc

    def put(self, key: str, data: bytes) -> str:
        resp = self._call("put", key, self._client.put_object, Body=data)
        return resp["ETag"].strip('"')

    def put_if_match(self, key: str, data: bytes, etag: str | None) -> str:
        cond = {"IfNoneMatch": "*"} if etag is None else {"IfMatch": f'"{etag}"'}
        try:
            resp = self._call("conditional put", key, self._client.put_object, Body=data, **cond)
        except MissingKeyError as exc:  # IfMatch on a key that vanished: also a lost race
            raise ConflictError(
                f"stale write to {key!r}: object is gone", where=self.where
            ) from exc
        return resp["ETag"].strip('"')

    def exists(self, key: str) -> bool:
        try:
            self._call("head", key, self._client.head_object)
        except MissingKeyError:
            return False
        return True

    def list(self, prefix: str = "") -> list[str]:
        from botocore.exceptions import BotoCoreError, ClientError

        full = f"{self.prefix}/{prefix}" if self.prefix else prefix
        strip = len(self.prefix) + 1 if self.prefix else 0
        keys: list[str] = []
        try:
            for page in self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=full
            ):
                keys.extend(obj["Key"][strip:] for obj in page.get("Contents", []))
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, "list", prefix or "/") from exc
        return sorted(keys)

    def delete(self, key: str) -> None:
        self._call("delete", key, self._client.delete_object)

    def upload_file(self, key: str, path: str | Path) -> str:
        from boto3.s3.transfer import TransferConfig
        from botocore.exceptions import BotoCoreError, ClientError

        config = TransferConfig(
            multipart_threshold=MULTIPART_THRESHOLD, multipart_chunksize=MULTIPART_THRESHOLD
        )
        try:
            self._client.upload_file(str(path), self.bucket, self._key(key), Config=config)
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, "upload", key) from exc
        except Exception as exc:  # boto3's S3UploadFailedError wraps the client error
            if type(exc).__name__ == "S3UploadFailedError":
                raise StoreError(f"upload {key!r} failed: {exc}", where=self.where) from exc
            raise
        return self._call("head", key, self._client.head_object)["ETag"].strip('"')

    def __repr__(self) -> str:
        return f"S3Store({self.where!r})"


def open_store(url: str, endpoint_url: str | None = None, **s3_options: Any) -> ObjectStore:
    """`s3://bucket/prefix` -> S3Store; a path or `file://` URL -> LocalStore."""
    if url.startswith("s3://"):
        bucket, _, prefix = url[len("s3://") :].partition("/")
        if not bucket:
            raise StoreError("s3 URL names no bucket", where=url)
        return S3Store(bucket, prefix, endpoint_url=endpoint_url, **s3_options)
    if url.startswith("file://"):
        url = url[len("file://") :]
    elif "://" in url:
        raise StoreError("unsupported store URL (use a path or s3://bucket/prefix)", where=url)
    return LocalStore(url)


__all__ = ["LocalStore", "MissingKeyError", "ObjectStore", "S3Store", "open_store"]

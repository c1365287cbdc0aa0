"""The device's side of the update channel: `tuf.ngclient.Updater` over the project's store.

`StoreFetcher` is a `FetcherInterface` whose URLs are store keys (`edgeops-store:<key>`), so
the same client reads a local directory or S3 (boto3, with its retries and resumed bodies),
streaming each file in chunks: ngclient stops a download at the length the signed metadata
gives, so a 300 MiB file where metadata says 4 KB is cut off after 4 KB + 1 byte. ngclient
does every check TUF asks for (root chain, signatures and thresholds, versions only growing,
expiry, snapshot consistency, lengths and hashes); its refusals become `IntegrityError`,
an unreachable store `StoreError`.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tuf.api import exceptions as tuf_errors
from tuf.ngclient import FetcherInterface, Updater, UpdaterConfig

from device.protocol import Channel
from device.store import MissingKeyError, ObjectStore
from edgeops.errors import IntegrityError, StoreError

META_PREFIX = "tuf/metadata/"
TARGETS_PREFIX = "tuf/targets/"
SCHEME = "edgeops-store:"


def cohort_role(cohort: str) -> str:
    return f"cohort-{cohort}"


def channel_path(cohort: str) -> str:
    return f"cohorts/{cohort}/channel.json"


def rollout_path(cohort: str) -> str:
    return f"cohorts/{cohort}/rollout.json"


def target_key(path: str, sha256: str) -> str:
    """Where a target lives with consistent snapshots: `<dir>/<sha256>.<name>`."""
    dirname, sep, name = path.rpartition("/")
    return f"{TARGETS_PREFIX}{dirname}{sep}{sha256}.{name}"


class StoreFetcher(FetcherInterface):
    """Chunks of an object store key; a missing key is the HTTP 404 ngclient expects."""

    def __init__(self, store: ObjectStore, chunk_size: int = 64 * 1024) -> None:
        self.store = store
        self.chunk_size = chunk_size
        self.bytes_fetched = 0

    def _fetch(self, url: str) -> Iterator[bytes]:
        if not url.startswith(SCHEME):
            raise tuf_errors.DownloadError(f"not a store URL: {url}")
        key = url[len(SCHEME) :]
        try:
            chunks = self.store.iter_chunks(key, self.chunk_size)
        except MissingKeyError:
            raise tuf_errors.DownloadHTTPError(f"{key} not found", 404) from None
        return self._count(chunks)

    def _count(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            self.bytes_fetched += len(chunk)
            yield chunk


class ChannelSession:
    """One refresh of the channel: the verified metadata, then targets on demand."""

    def __init__(self, updater: Updater, fetcher: StoreFetcher, target_dir: Path) -> None:
        self.updater = updater
        self.fetcher = fetcher
        self.target_dir = target_dir

    def channel(self, cohort: str) -> Channel:
        info = _tuf(lambda: self.updater.get_targetinfo(channel_path(cohort)))
        if info is None or not isinstance(info.custom, dict) or "edgeops" not in info.custom:
            raise IntegrityError(f"the channel names nothing for cohort {cohort!r}")
        channel = Channel.from_dict(info.custom["edgeops"])
        if channel.cohort != cohort:
            raise IntegrityError(f"channel is for cohort {channel.cohort!r}, not {cohort!r}")
        return channel

    def download(self, path: str) -> bytes:
        """A target's bytes, length-capped while streaming and hash-checked by ngclient."""
        info = _tuf(lambda: self.updater.get_targetinfo(path))
        if info is None:
            raise IntegrityError(f"the channel lists no target {path}")
        self.target_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.target_dir) as tmp:
            out = Path(tmp) / "target"
            try:
                _tuf(lambda: self.updater.download_target(info, str(out)))
            except IntegrityError as exc:
                raise IntegrityError(f"{path}: {exc}") from exc
            data = out.read_bytes()
        if hashlib.sha256(data).hexdigest() != info.hashes.get("sha256"):
            raise IntegrityError(f"target {path} differs from its signed sha256")
        return data


class ChannelClient:
    """The trust a device carries: its metadata directory, seeded once with a provisioned root."""

    def __init__(self, store: ObjectStore, metadata_dir: Path, root: bytes | None = None) -> None:
        self.store = store
        self.metadata_dir = Path(metadata_dir)
        self.root = root
        self.config = UpdaterConfig()

    def session(self) -> ChannelSession:
        """Refresh root, timestamp, snapshot and targets; StoreError when unreachable."""
        self.metadata_dir.mkdir(parents=True, exist_ok=True)
        cached = (self.metadata_dir / "root.json").exists()
        if not cached and self.root is None:
            raise IntegrityError("no trusted root provisioned for the update channel")
        fetcher = StoreFetcher(self.store)
        updater = _tuf(
            lambda: Updater(
                str(self.metadata_dir),
                SCHEME + META_PREFIX,
                str(self.metadata_dir.parent / "downloads"),
                SCHEME + TARGETS_PREFIX,
                fetcher,
                self.config,
                bootstrap=None if cached else self.root,
            )
        )
        _tuf(updater.refresh)
        return ChannelSession(updater, fetcher, self.metadata_dir.parent / "downloads")


def _tuf(fn):  # type: ignore[no-untyped-def]
    """ngclient's typed refusals as one readable IntegrityError; the store's own errors pass."""
    try:
        return fn()
    except StoreError:
        raise
    except tuf_errors.DownloadHTTPError as exc:
        raise StoreError(f"update channel: {exc}") from exc
    except tuf_errors.DownloadLengthMismatchError as exc:
        raise IntegrityError(f"update channel refused a download: {exc}") from exc
    except tuf_errors.DownloadError as exc:
        cause = exc.__cause__
        if isinstance(cause, StoreError):
            raise cause from exc
        raise StoreError(f"update channel: {exc}") from exc
    except tuf_errors.RepositoryError as exc:
        raise IntegrityError(f"update channel refused {type(exc).__name__}: {exc}") from exc

"""The network between a device and the store, as the simulator and fault tests see it.

A `Link` forwards every call to the real store; while `down` it raises `StoreError` the way
an unreachable endpoint does, so the agent's backoff, spooling and fallback paths run for
real. On a device the link is simply the store itself.
"""

from __future__ import annotations

from pathlib import Path

from device.store import ObjectStore
from edgeops.errors import StoreError


class Link:
    """An ObjectStore that fails on demand (`down = True`); counts the calls it refused."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self.url = store.url
        self.down = False
        self.refused_calls = 0

    def _check(self, action: str, key: str) -> None:
        if self.down:
            self.refused_calls += 1
            raise StoreError(f"{action} {key!r} failed: network down", where=self.url)

    def get(self, key: str) -> bytes:
        self._check("get", key)
        return self.store.get(key)

    def get_with_etag(self, key: str) -> tuple[bytes, str]:
        self._check("get", key)
        return self.store.get_with_etag(key)

    def put(self, key: str, data: bytes) -> str:
        self._check("put", key)
        return self.store.put(key, data)

    def put_if_match(self, key: str, data: bytes, etag: str | None) -> str:
        self._check("put", key)
        return self.store.put_if_match(key, data, etag)

    def exists(self, key: str) -> bool:
        self._check("head", key)
        return self.store.exists(key)

    def list(self, prefix: str = "") -> list[str]:
        self._check("list", prefix)
        return self.store.list(prefix)

    def delete(self, key: str) -> None:
        self._check("delete", key)
        self.store.delete(key)

    def upload_file(self, key: str, path: str | Path) -> str:
        self._check("put", key)
        return self.store.upload_file(key, path)

    def iter_chunks(self, key: str, chunk_size: int = 64 * 1024):  # type: ignore[no-untyped-def]
        self._check("get", key)
        return self.store.iter_chunks(key, chunk_size)

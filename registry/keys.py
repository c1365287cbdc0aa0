"""Model encryption keys (AES-256, one per cohort that asks for it), kept on the release machine.

Signing keys of the update channel live in the TUF keystore (registry.tuf_keys); none is ever
published to or read from the object store. The AES keys are provisioned to devices out of
band (docs/protocol.md) and never written to the store.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from edgeops.errors import ConfigError


@contextlib.contextmanager
def _locked(keys_dir: Path) -> Iterator[None]:
    keys_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(keys_dir, 0o700)
    with open(keys_dir / ".lock", "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def load_or_create_cohort_key(keys_dir: Path | str, cohort: str) -> bytes:
    """The AES-256-GCM key a cohort's models are encrypted with (32 random bytes, 0600)."""
    keys_dir = Path(keys_dir)
    path = keys_dir / "aes" / f"{cohort}.key"
    with _locked(keys_dir):
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(path.parent, 0o700)
            _write_private(path, os.urandom(32))
        key = path.read_bytes()
    if len(key) != 32:
        raise ConfigError(f"cohort key must be 32 bytes, found {len(key)}", where=str(path))
    return key

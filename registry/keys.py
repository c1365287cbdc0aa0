"""Signing keys: Ed25519, generated on first use, rotatable, public halves published to the store.

Private keys stay on the release machine (`Settings.keys_dir`, mode 0600). Each key has an id
(first 16 hex of sha256 of the raw public key); `active` names the one that signs now. Rotation
adds a key and makes it active; older keys stay so devices that still trust them keep working
until the release manager retires them. Devices pin the set of key ids they trust.

The AES-256 keys for cohorts that ask for encrypted models live here too, one per cohort; they
are provisioned to devices out of band (docs/protocol.md) and never written to the store.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from device.protocol import load_public_key_pem, public_key_id, public_key_pem, sign_envelope
from device.store import ObjectStore
from edgeops.errors import ConfigError, IntegrityError

KEYS_PREFIX = "keys/"
_ACTIVE = "active"


@dataclass(frozen=True)
class SigningKey:
    key_id: str
    private_key: Ed25519PrivateKey

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    def sign(self, signed: dict[str, Any]) -> dict[str, Any]:
        return sign_envelope(signed, self.private_key, self.key_id)

    def __repr__(self) -> str:  # never print key material
        return f"SigningKey(key_id={self.key_id!r})"


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


def _new_key(keys_dir: Path) -> SigningKey:
    private = Ed25519PrivateKey.generate()
    key = SigningKey(public_key_id(private.public_key()), private)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write_private(keys_dir / f"{key.key_id}.key", pem)
    tmp = keys_dir / f".{_ACTIVE}.tmp"
    tmp.write_text(key.key_id + "\n")
    os.replace(tmp, keys_dir / _ACTIVE)
    return key


def load_signing_key(keys_dir: Path | str, key_id: str) -> SigningKey:
    path = Path(keys_dir) / f"{key_id}.key"
    try:
        private = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise ConfigError(f"signing key {key_id} not found", where=str(path)) from None
    except ValueError as exc:
        raise ConfigError(f"signing key file is unreadable: {exc}", where=str(path)) from exc
    if not isinstance(private, Ed25519PrivateKey):
        raise ConfigError("signing key is not Ed25519", where=str(path))
    if public_key_id(private.public_key()) != key_id:
        raise IntegrityError(f"signing key file does not hold key {key_id}", where=str(path))
    return SigningKey(key_id, private)


def load_or_create_signing_key(keys_dir: Path | str) -> SigningKey:
    """The active signing key; the first call creates one (safe across processes)."""
    keys_dir = Path(keys_dir)
    with _locked(keys_dir):
        active = keys_dir / _ACTIVE
        if active.exists():
            return load_signing_key(keys_dir, active.read_text().strip())
        return _new_key(keys_dir)


def rotate_signing_key(keys_dir: Path | str) -> SigningKey:
    """Make a fresh key active; the previous ones stay loadable (and trusted until retired)."""
    keys_dir = Path(keys_dir)
    with _locked(keys_dir):
        return _new_key(keys_dir)


def list_signing_keys(keys_dir: Path | str) -> list[str]:
    keys_dir = Path(keys_dir)
    return sorted(p.stem for p in keys_dir.glob("*.key")) if keys_dir.is_dir() else []


def publish_public_key(store: ObjectStore, key: SigningKey | Ed25519PublicKey) -> str:
    """Write `keys/<key_id>.pub` (PEM); idempotent."""
    public = key.public_key if isinstance(key, SigningKey) else key
    store_key = f"{KEYS_PREFIX}{public_key_id(public)}.pub"
    pem = public_key_pem(public)
    if not store.exists(store_key) or store.get(store_key) != pem:
        store.put(store_key, pem)
    return store_key


def retire_public_key(store: ObjectStore, key_id: str) -> None:
    """Stop publishing a key; devices drop it from their trusted set on the next refresh."""
    store.delete(f"{KEYS_PREFIX}{key_id}.pub")


def load_trusted_keys(
    store: ObjectStore, pinned: Iterable[str] | None = None
) -> dict[str, Ed25519PublicKey]:
    """Public keys from the store, each checked against its id; only `pinned` ids when given."""
    wanted = set(pinned) if pinned is not None else None
    trusted: dict[str, Ed25519PublicKey] = {}
    for store_key in store.list(KEYS_PREFIX):
        if not store_key.endswith(".pub"):
            continue
        key_id = store_key[len(KEYS_PREFIX) : -len(".pub")]
        if wanted is not None and key_id not in wanted:
            continue
        public = load_public_key_pem(store.get(store_key))
        if public_key_id(public) != key_id:
            raise IntegrityError(f"public key {store_key} does not match its id", where=store.url)
        trusted[key_id] = public
    return trusted


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

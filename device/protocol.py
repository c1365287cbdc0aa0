"""The wire protocol between the registry and devices: bundles, channels, bucketing.

Signing, expiry, rollback and key rotation are TUF's (the `tuf.ngclient` client in
device/channel.py over the repository the registry writes with python-tuf). What is left here
is the content the channel carries: `BundleMetadata` (a bundle's `metadata.json`, whose sha256
is the bundle id, so a verified id pins every file), `Channel` (what a cohort runs: stable,
candidate, percentage, salt; the custom field of the cohort's channel target) and the bucketing
that puts a device in or out of the canary. Refusals are `IntegrityError`s that say why.
Details and the store layout: docs/protocol.md.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from edgeops.errors import IntegrityError

SPEC_VERSION = 2
BUCKETS = 10_000
BUNDLE_TYPE = "edgeops/bundle"
CHANNEL_TYPE = "edgeops/channel"
_AAD = b"edgeops-model-v1"


def canonical_json(obj: Any) -> bytes:
    """Sorted keys, no spaces, UTF-8: the exact bytes a bundle id hashes."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )


# --- time -----------------------------------------------------------------------------------
def format_time(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(s: str) -> datetime:
    try:
        return datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except (TypeError, ValueError) as exc:
        raise IntegrityError(f"bad timestamp {s!r}") from exc


def utcnow() -> datetime:
    return datetime.now(UTC)


# --- bundles --------------------------------------------------------------------------------
@dataclass(frozen=True)
class BundleMetadata:
    model_name: str
    model_version: str
    target: str
    files: dict[str, dict[str, Any]]  # name -> {"sha256": hex, "size": int}
    model_file: str
    input_spec: dict[str, Any]
    output_spec: dict[str, Any]
    preprocessing_sha256: str
    min_agent_version: str = "0.1.0"
    encrypted: bool = False
    encryption_key_id: str | None = None
    plaintext_sha256: str | None = None  # of the model before encryption
    created_at: str = field(default_factory=lambda: format_time(utcnow()))

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        return {"_type": BUNDLE_TYPE, "spec_version": SPEC_VERSION, **d}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BundleMetadata:
        if d.get("_type") != BUNDLE_TYPE:
            raise IntegrityError(f"signed object is {d.get('_type')!r}, expected {BUNDLE_TYPE}")
        try:
            return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})
        except TypeError as exc:  # a missing field
            raise IntegrityError(f"malformed bundle metadata: {exc}") from exc


@dataclass(frozen=True)
class BundleRef:
    bundle_id: str
    model_version: str
    target: str

    def to_dict(self) -> dict[str, str]:
        return {
            "bundle_id": self.bundle_id,
            "model_version": self.model_version,
            "target": self.target,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> BundleRef | None:
        if d is None:
            return None
        return cls(str(d["bundle_id"]), str(d["model_version"]), str(d["target"]))


def bundle_id_of(metadata_json: bytes) -> str:
    """Content address of a bundle: sha256 of its metadata.json bytes (canonical JSON)."""
    return hashlib.sha256(metadata_json).hexdigest()


def verify_bundle_metadata(data: bytes, expected_bundle_id: str) -> BundleMetadata:
    """Parse metadata.json after checking that it hashes to the id the channel named."""
    actual = bundle_id_of(data)
    if actual != expected_bundle_id:
        raise IntegrityError(
            f"bundle id mismatch: channel names {expected_bundle_id[:12]}, metadata hashes to {actual[:12]}"
        )
    try:
        d = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise IntegrityError(f"bundle metadata is not JSON: {exc}") from exc
    if not isinstance(d, dict):
        raise IntegrityError("bundle metadata is not a JSON object")
    return BundleMetadata.from_dict(d)


def check_file(metadata: BundleMetadata, name: str, data: bytes) -> None:
    """Refuse a downloaded file whose size or sha256 differs from the signed metadata."""
    info = metadata.files.get(name)
    if info is None:
        raise IntegrityError(f"file {name!r} is not listed in the bundle metadata")
    if len(data) != int(info["size"]):
        raise IntegrityError(
            f"size mismatch for {name}: {len(data)} bytes, metadata says {info['size']}"
        )
    digest = hashlib.sha256(data).hexdigest()
    if digest != info["sha256"]:
        raise IntegrityError(
            f"hash mismatch for {name}: sha256 {digest[:12]}, metadata says {str(info['sha256'])[:12]}"
        )


# --- model encryption (AES-256-GCM; file = 12-byte nonce || ciphertext+tag) -------------------
def encrypt_model(plaintext: bytes, key: bytes) -> bytes:
    if len(key) != 32:
        raise IntegrityError(f"AES-256 key must be 32 bytes, got {len(key)}")
    nonce = os.urandom(12)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, _AAD)


def decrypt_model(blob: bytes, key: bytes) -> bytes:
    if len(key) != 32:
        raise IntegrityError(f"AES-256 key must be 32 bytes, got {len(key)}")
    try:
        return AESGCM(key).decrypt(blob[:12], blob[12:], _AAD)
    except InvalidTag:
        raise IntegrityError("model decryption failed: wrong key or tampered file") from None


def encryption_key_id(key: bytes) -> str:
    return hashlib.sha256(b"edgeops-aes:" + key).hexdigest()[:16]


# --- channels and bucketing -------------------------------------------------------------------
@dataclass(frozen=True)
class Channel:
    """What a cohort runs; `revision` is the version of the cohort's TUF role that carries it."""

    cohort: str
    stable: BundleRef | None = None
    candidate: BundleRef | None = None
    percentage: float = 0.0
    salt: str = ""
    rollout_id: int = 0
    revision: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.percentage <= 100:
            raise IntegrityError(f"channel percentage {self.percentage} outside 0-100")

    def to_dict(self) -> dict[str, Any]:
        return {
            "_type": CHANNEL_TYPE,
            "spec_version": SPEC_VERSION,
            "cohort": self.cohort,
            "stable": self.stable.to_dict() if self.stable else None,
            "candidate": self.candidate.to_dict() if self.candidate else None,
            "basis_points": round(self.percentage * BUCKETS / 100),  # TUF's JSON has no floats
            "salt": self.salt,
            "rollout_id": self.rollout_id,
            "revision": self.revision,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Channel:
        if d.get("_type") != CHANNEL_TYPE:
            raise IntegrityError(f"channel is {d.get('_type')!r}, expected {CHANNEL_TYPE}")
        try:
            return cls(
                cohort=str(d["cohort"]),
                stable=BundleRef.from_dict(d.get("stable")),
                candidate=BundleRef.from_dict(d.get("candidate")),
                percentage=int(d.get("basis_points", 0)) * 100 / BUCKETS,
                salt=str(d.get("salt", "")),
                rollout_id=int(d.get("rollout_id", 0)),
                revision=int(d.get("revision", 0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise IntegrityError(f"malformed channel: {exc!r}") from exc

    def same_routing(self, other: Channel | None) -> bool:
        return other is not None and (
            self.stable, self.candidate, self.percentage, self.salt
        ) == (other.stable, other.candidate, other.percentage, other.salt)


def bucket(device_id: str, salt: str) -> int:
    """Bucket in [0, 10000): a device in the canary at p% stays in it at any larger p."""
    digest = hashlib.sha256(f"{salt}:{device_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def in_canary(percentage: float, device_id: str, salt: str) -> bool:
    return bucket(device_id, salt) < round(percentage * BUCKETS / 100)


def choose(channel: Channel, device_id: str) -> BundleRef | None:
    """The bundle this device should run; None only when the cohort has nothing for it yet."""
    if channel.candidate is not None and in_canary(channel.percentage, device_id, channel.salt):
        return channel.candidate
    return channel.stable

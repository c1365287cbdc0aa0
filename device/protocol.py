"""The wire protocol between the registry and devices: signed envelopes, bundles, manifests.

TUF-style: `{"signed": {...}, "signatures": [{"keyid": ..., "sig": <base64>}]}` where the
Ed25519 signature covers the canonical JSON of `signed`. Devices trust a set of key ids (so keys
rotate), refuse a manifest that is expired or older than the last one they saw, and refuse any
file whose sha256 differs from the signed metadata. Every refusal is an `IntegrityError` whose
message says why. Details and the store layout: docs/protocol.md.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from edgeops.errors import IntegrityError

SPEC_VERSION = 1
BUCKETS = 10_000
BUNDLE_TYPE = "edgeops/bundle"
MANIFEST_TYPE = "edgeops/manifest"
_AAD = b"edgeops-model-v1"


# --- canonical JSON, keys, envelopes ----------------------------------------------------------
def canonical_json(obj: Any) -> bytes:
    """Sorted keys, no spaces, UTF-8: the exact bytes a signature covers."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )


def public_key_id(public_key: Ed25519PublicKey) -> str:
    """First 16 hex chars of sha256(raw 32-byte public key)."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_key_pem(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_public_key_pem(pem: bytes) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError as exc:
        raise IntegrityError(f"not a PEM public key: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise IntegrityError(f"public key is {type(key).__name__}, expected Ed25519")
    return key


def sign_envelope(
    signed: Mapping[str, Any], private_key: Ed25519PrivateKey, key_id: str
) -> dict[str, Any]:
    payload = dict(signed)
    sig = private_key.sign(canonical_json(payload))
    return {
        "signed": payload,
        "signatures": [{"keyid": key_id, "sig": base64.b64encode(sig).decode()}],
    }


def verify_envelope(
    envelope: Mapping[str, Any] | bytes | str,
    trusted: Mapping[str, Ed25519PublicKey],
    *,
    threshold: int = 1,
) -> dict[str, Any]:
    """Return `signed` when at least `threshold` signatures by distinct trusted keys verify."""
    if isinstance(envelope, bytes | str):
        try:
            envelope = json.loads(envelope)
        except (ValueError, UnicodeDecodeError) as exc:
            raise IntegrityError(f"envelope is not JSON: {exc}") from exc
    if not isinstance(envelope, Mapping) or not isinstance(envelope.get("signed"), Mapping):
        raise IntegrityError("malformed envelope: no 'signed' object")
    sigs = envelope.get("signatures")
    if not isinstance(sigs, list) or not sigs:
        raise IntegrityError("malformed envelope: no signatures")
    message = canonical_json(dict(envelope["signed"]))
    good: set[str] = set()
    bad: list[str] = []
    unknown: list[str] = []
    for entry in sigs:
        keyid = str(entry.get("keyid", "")) if isinstance(entry, Mapping) else ""
        if keyid not in trusted:
            unknown.append(keyid or "?")
            continue
        try:
            trusted[keyid].verify(
                base64.b64decode(str(entry.get("sig", "")), validate=True), message
            )
            good.add(keyid)
        except (InvalidSignature, binascii.Error, ValueError):
            bad.append(keyid)
    if len(good) >= threshold:
        return dict(envelope["signed"])
    if bad:
        raise IntegrityError(f"bad signature by key {', '.join(bad)}")
    raise IntegrityError(
        f"unknown key id {', '.join(unknown)} (trusted: {', '.join(sorted(trusted)) or 'none'})"
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
        except TypeError as exc:
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


def bundle_id_of(metadata_envelope: Mapping[str, Any]) -> str:
    """Content address of a bundle: sha256 of the canonical `signed` metadata."""
    return hashlib.sha256(canonical_json(dict(metadata_envelope["signed"]))).hexdigest()


def verify_bundle_metadata(
    envelope: Mapping[str, Any] | bytes,
    trusted: Mapping[str, Ed25519PublicKey],
    expected_bundle_id: str,
) -> BundleMetadata:
    signed = verify_envelope(envelope, trusted)
    actual = hashlib.sha256(canonical_json(signed)).hexdigest()
    if actual != expected_bundle_id:
        raise IntegrityError(
            f"bundle id mismatch: manifest names {expected_bundle_id[:12]}, metadata hashes to {actual[:12]}"
        )
    return BundleMetadata.from_dict(signed)


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


# --- manifests and bucketing ------------------------------------------------------------------
@dataclass(frozen=True)
class Manifest:
    cohort: str
    revision: int
    issued_at: str
    expires_at: str
    stable: BundleRef | None = None
    candidate: BundleRef | None = None
    percentage: float = 0.0
    salt: str = ""

    def __post_init__(self) -> None:
        if not 0 <= self.percentage <= 100:
            raise IntegrityError(f"manifest percentage {self.percentage} outside 0-100")
        if self.revision < 0:
            raise IntegrityError(f"manifest revision {self.revision} is negative")

    def to_dict(self) -> dict[str, Any]:
        return {
            "_type": MANIFEST_TYPE,
            "spec_version": SPEC_VERSION,
            "cohort": self.cohort,
            "revision": self.revision,
            "issued_at": self.issued_at,
            "expires_at": self.expires_at,
            "stable": self.stable.to_dict() if self.stable else None,
            "candidate": self.candidate.to_dict() if self.candidate else None,
            "percentage": self.percentage,
            "salt": self.salt,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Manifest:
        if d.get("_type") != MANIFEST_TYPE:
            raise IntegrityError(f"signed object is {d.get('_type')!r}, expected {MANIFEST_TYPE}")
        try:
            return cls(
                cohort=str(d["cohort"]),
                revision=int(d["revision"]),
                issued_at=str(d["issued_at"]),
                expires_at=str(d["expires_at"]),
                stable=BundleRef.from_dict(d.get("stable")),
                candidate=BundleRef.from_dict(d.get("candidate")),
                percentage=float(d.get("percentage", 0.0)),
                salt=str(d.get("salt", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise IntegrityError(f"malformed manifest: {exc!r}") from exc


def verify_manifest(
    envelope: Mapping[str, Any] | bytes,
    trusted: Mapping[str, Ed25519PublicKey],
    *,
    cohort: str | None = None,
    last_revision: int | None = None,
    now: datetime | None = None,
) -> Manifest:
    """What an agent does before acting on a manifest: signature, cohort, expiry, rollback."""
    manifest = Manifest.from_dict(verify_envelope(envelope, trusted))
    if cohort is not None and manifest.cohort != cohort:
        raise IntegrityError(f"manifest is for cohort {manifest.cohort!r}, not {cohort!r}")
    now = now or utcnow()
    if parse_time(manifest.expires_at) <= now:
        raise IntegrityError(f"manifest for {manifest.cohort} expired at {manifest.expires_at}")
    if last_revision is not None and manifest.revision < last_revision:
        raise IntegrityError(
            f"manifest revision {manifest.revision} is lower than the last seen {last_revision} (rollback attack?)"
        )
    return manifest


def bucket(device_id: str, salt: str) -> int:
    """Bucket in [0, 10000): a device in the canary at p% stays in it at any larger p."""
    digest = hashlib.sha256(f"{salt}:{device_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def in_canary(percentage: float, device_id: str, salt: str) -> bool:
    return bucket(device_id, salt) < round(percentage * BUCKETS / 100)


def choose(manifest: Manifest, device_id: str) -> BundleRef | None:
    """The bundle this device should run; None only when the cohort has nothing for it yet."""
    if manifest.candidate is not None and in_canary(manifest.percentage, device_id, manifest.salt):
        return manifest.candidate
    return manifest.stable

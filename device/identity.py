"""A device's own identity: its Ed25519 key, and the signed frame its telemetry travels in.

Each device holds one private key, written at provisioning (`edgeops devices enroll`) or made
on the device and enrolled by its public key; the release side keeps the public keys in a
registry outside the bucket (registry.enrolment). A telemetry batch leaves the device as one
object: a magic line, a signed statement (who, which cohort, how many rows, which sequence
numbers, the sha256 and size of the Parquet payload) and the Parquet bytes. Ingestion verifies
the statement against the enrolled key, so a batch speaks only for the device that signed it.
Ed25519 signatures are deterministic: a retried upload produces the same bytes (and key).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edgeops.errors import IntegrityError

FRAME_MAGIC = b"EDGEOPS-TLM1\n"
BATCH_TYPE = "edgeops/telemetry-batch"
MAX_HEADER_BYTES = 4096


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def raw_public_bytes(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def device_key_id(public_key: Ed25519PublicKey) -> str:
    """First 16 hex chars of sha256 of the raw public key (the protocol's key id rule)."""
    return hashlib.sha256(raw_public_bytes(public_key)).hexdigest()[:16]


def public_key_from_b64(text: str) -> Ed25519PublicKey:
    try:
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError) as exc:
        raise IntegrityError(f"not a raw Ed25519 public key: {exc}") from exc


def public_key_b64(public_key: Ed25519PublicKey) -> str:
    return base64.b64encode(raw_public_bytes(public_key)).decode()


@dataclass(frozen=True)
class DeviceIdentity:
    device_id: str
    cohort: str
    private_key: Ed25519PrivateKey

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    @property
    def key_id(self) -> str:
        return device_key_id(self.public_key)


def write_private_key(path: Path, key: Ed25519PrivateKey) -> None:
    """PEM (PKCS8, unencrypted), mode 0600, written atomically with fsync."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise IntegrityError(f"cannot read the device key: {exc}", where=str(path)) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise IntegrityError(
            f"device key is {type(key).__name__}, expected Ed25519", where=str(path)
        )
    return key


def load_or_create_key(path: Path) -> Ed25519PrivateKey:
    """The device's key; made on first start when provisioning did not write one (such a
    device's telemetry is quarantined until its public key is enrolled)."""
    if Path(path).exists():
        return read_private_key(path)
    key = Ed25519PrivateKey.generate()
    write_private_key(Path(path), key)
    return key


# --- the signed telemetry frame ---------------------------------------------------------------
@dataclass(frozen=True)
class BatchStatement:
    """What a device vouches for in one batch."""

    device_id: str
    cohort: str
    key_id: str
    rows: int
    seq_first: int
    seq_last: int
    sha256: str
    size: int

    def to_dict(self) -> dict[str, Any]:
        return {"_type": BATCH_TYPE, **{k: getattr(self, k) for k in self.__dataclass_fields__}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BatchStatement:
        if d.get("_type") != BATCH_TYPE:
            raise IntegrityError(f"signed object is {d.get('_type')!r}, expected {BATCH_TYPE}")
        try:
            return cls(
                device_id=str(d["device_id"]),
                cohort=str(d["cohort"]),
                key_id=str(d["key_id"]),
                rows=int(d["rows"]),
                seq_first=int(d["seq_first"]),
                seq_last=int(d["seq_last"]),
                sha256=str(d["sha256"]),
                size=int(d["size"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise IntegrityError(f"malformed batch statement: {exc!r}") from exc


@dataclass(frozen=True)
class Frame:
    """A parsed, not yet verified, signed batch."""

    statement: BatchStatement
    signed: dict[str, Any]
    signature: bytes
    payload: bytes


def sign_batch(identity: DeviceIdentity, payload: bytes, rows: int, seqs: tuple[int, int]) -> bytes:
    """Parquet bytes -> the framed, signed object the uploader sends."""
    st = BatchStatement(
        device_id=identity.device_id,
        cohort=identity.cohort,
        key_id=identity.key_id,
        rows=rows,
        seq_first=seqs[0],
        seq_last=seqs[1],
        sha256=hashlib.sha256(payload).hexdigest(),
        size=len(payload),
    )
    signed = st.to_dict()
    sig = identity.private_key.sign(_canonical(signed))
    header = {"signed": signed, "sig": base64.b64encode(sig).decode()}
    return FRAME_MAGIC + _canonical(header) + b"\n" + payload


def is_frame(data: bytes) -> bool:
    return data[: len(FRAME_MAGIC)] == FRAME_MAGIC


def open_frame(data: bytes) -> Frame:
    """Split a framed batch; IntegrityError when it is not one (nothing verified yet)."""
    if not is_frame(data):
        raise IntegrityError("unsigned batch: no device signature frame")
    end = data.find(b"\n", len(FRAME_MAGIC), len(FRAME_MAGIC) + MAX_HEADER_BYTES)
    if end < 0:
        raise IntegrityError(f"batch frame header missing or over {MAX_HEADER_BYTES} bytes")
    try:
        header = json.loads(data[len(FRAME_MAGIC) : end].decode("utf-8"))
        signed = dict(header["signed"])
        sig = base64.b64decode(str(header["sig"]), validate=True)
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, binascii.Error) as exc:
        raise IntegrityError(f"malformed batch frame header: {exc!r}") from exc
    return Frame(BatchStatement.from_dict(signed), signed, sig, data[end + 1 :])


def verify_frame(frame: Frame, public_key: Ed25519PublicKey) -> BatchStatement:
    """The signature by this key, then the payload against the signed hash and size."""
    st = frame.statement
    if st.key_id != device_key_id(public_key):
        raise IntegrityError(
            f"batch signed with key {st.key_id}, device {st.device_id} is enrolled with "
            f"{device_key_id(public_key)}"
        )
    try:
        public_key.verify(frame.signature, _canonical(frame.signed))
    except InvalidSignature:
        raise IntegrityError(f"bad device signature on a batch of {st.device_id}") from None
    if len(frame.payload) != st.size or hashlib.sha256(frame.payload).hexdigest() != st.sha256:
        raise IntegrityError("batch payload differs from the signed hash and size")
    return st

"""Model encryption: a random data key per bundle, wrapped for the cohort (envelope encryption).

A cohort that asks for encrypted models has one AES-256 key-encryption key (KEK), held in the
release side's keystore and provisioned to that cohort's devices. Each sealed object gets its
own random 256-bit data key (DEK); the object is encrypted with AES-256-GCM under the DEK with
a random 96-bit nonce, and the DEK is wrapped with AES-256-GCM under the KEK with another random
nonce. Nothing derives from the plaintext, so no hash or nonce leaks whether two bundles hold
the same model, and a nonce never repeats under one key (a fresh DEK per object). The header is
bound into both AEAD computations as associated data, so changing the key id, the wrapped key or
the purpose is detected like a changed ciphertext. Layout (bytes):

    magic "EDGEOPS-ENC2" (12) | purpose length (1) | purpose | KEK id (16, ASCII hex)
    | wrap nonce (12) | wrapped DEK (48 = 32 + tag) | nonce (12) | ciphertext + tag (16)

`purpose` names what is sealed (b"model", b"reference"): a sealed drift reference cannot be
passed off as a model. Used by the registry to seal and by devices to open.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from device.protocol import decrypt_model, encryption_key_id
from edgeops.errors import IntegrityError

MAGIC = b"EDGEOPS-ENC2"
_ID_LEN, _NONCE, _WRAPPED = 16, 12, 48


kek_id = encryption_key_id  # the id a bundle names its cohort key by


def _check_key(kek: bytes) -> None:
    if len(kek) != 32:
        raise IntegrityError(f"AES-256 key must be 32 bytes, got {len(kek)}")


def is_sealed(blob: bytes) -> bool:
    return blob[: len(MAGIC)] == MAGIC


def seal(plaintext: bytes, kek: bytes, purpose: bytes = b"model") -> bytes:
    """Encrypt under a fresh data key wrapped with `kek`; every call gives different bytes."""
    _check_key(kek)
    if not 0 < len(purpose) < 256:
        raise IntegrityError("purpose must be 1-255 bytes")
    kid = kek_id(kek).encode()
    header = MAGIC + bytes([len(purpose)]) + purpose + kid
    dek, wrap_nonce, nonce = os.urandom(32), os.urandom(_NONCE), os.urandom(_NONCE)
    wrapped = AESGCM(kek).encrypt(wrap_nonce, dek, header)
    body = AESGCM(dek).encrypt(nonce, plaintext, header + wrap_nonce + wrapped)
    return header + wrap_nonce + wrapped + nonce + body


def sealed_key_id(blob: bytes) -> str:
    """The KEK id a sealed object names (IntegrityError when it is not one)."""
    return _parse(blob)[1]


def _parse(blob: bytes) -> tuple[bytes, str, bytes, bytes, bytes, bytes, bytes]:
    if not is_sealed(blob) or len(blob) < len(MAGIC) + 1:
        raise IntegrityError("not an edgeops sealed object (no EDGEOPS-ENC2 header)")
    plen = blob[len(MAGIC)]
    p0 = len(MAGIC) + 1
    purpose = blob[p0 : p0 + plen]
    i = p0 + plen
    need = i + _ID_LEN + _NONCE + _WRAPPED + _NONCE + 16
    if plen == 0 or len(blob) < need:
        raise IntegrityError("sealed object is truncated")
    kid = blob[i : i + _ID_LEN]
    header = blob[: i + _ID_LEN]
    j = i + _ID_LEN
    wrap_nonce, wrapped = blob[j : j + _NONCE], blob[j + _NONCE : j + _NONCE + _WRAPPED]
    k = j + _NONCE + _WRAPPED
    try:
        kid_text = kid.decode("ascii")
    except UnicodeDecodeError:
        raise IntegrityError("sealed object names a malformed key id") from None
    return header, kid_text, purpose, wrap_nonce, wrapped, blob[k : k + _NONCE], blob[k + _NONCE :]


def open_sealed(blob: bytes, keys: Mapping[str, bytes], purpose: bytes = b"model") -> bytes:
    """Unwrap the data key with the provisioned cohort key it names and decrypt; IntegrityError
    when the key is not provisioned here, or anything was changed."""
    header, kid, got, wrap_nonce, wrapped, nonce, body = _parse(blob)
    if got != purpose:
        raise IntegrityError(f"sealed object is a {got!r}, expected a {purpose!r}")
    kek = keys.get(kid)
    if kek is None:
        raise IntegrityError(f"sealed with cohort key {kid}, not provisioned here")
    _check_key(kek)
    try:
        dek = AESGCM(kek).decrypt(wrap_nonce, wrapped, header)
        return AESGCM(dek).decrypt(nonce, body, header + wrap_nonce + wrapped)
    except InvalidTag:
        raise IntegrityError("decryption failed: wrong key or tampered file") from None


def open_model(
    blob: bytes, keys: Mapping[str, bytes], key_id: str | None, plaintext_sha256: str | None
) -> bytes:
    """A bundle's encrypted model file -> the model. Sealed files (this module) must name the
    key id the signed metadata names; files of earlier releases (12-byte nonce || AES-GCM under
    the cohort key) are still opened, against the plaintext hash their metadata signed."""
    if is_sealed(blob):
        if sealed_key_id(blob) != key_id:
            raise IntegrityError(
                f"model is sealed for key {sealed_key_id(blob)}, metadata says {key_id}"
            )
        return open_sealed(blob, keys)
    key = keys.get(key_id or "")
    if key is None:
        raise IntegrityError(f"model is encrypted with key {key_id}, not provisioned here")
    plain = decrypt_model(blob, key)
    if plaintext_sha256 is None or hashlib.sha256(plain).hexdigest() != plaintext_sha256:
        raise IntegrityError("decrypted model hash differs from the signed plaintext hash")
    return plain

"""Envelope encryption: a random data key per sealed object, wrapped with the cohort key."""

from __future__ import annotations

import os

import pytest

from device.encryption import MAGIC, is_sealed, kek_id, open_sealed, seal, sealed_key_id
from edgeops.errors import IntegrityError

KEK = bytes(range(32))
KEYS = {kek_id(KEK): KEK}


def test_round_trip_and_fresh_randomness() -> None:
    model = os.urandom(1000)
    a, b = seal(model, KEK), seal(model, KEK)
    assert is_sealed(a) and a.startswith(MAGIC) and sealed_key_id(a) == kek_id(KEK)
    assert open_sealed(a, KEYS) == open_sealed(b, KEYS) == model
    assert a != b  # new data key and nonces each time: no link between two sealings
    n = len(MAGIC) + 1 + len(b"model") + 16
    wrap_nonce_a, wrap_nonce_b = a[n : n + 12], b[n : n + 12]
    nonce_a, nonce_b = a[n + 60 : n + 72], b[n + 60 : n + 72]
    assert wrap_nonce_a != wrap_nonce_b and nonce_a != nonce_b
    assert model not in a and len(a) == len(model) + n + 12 + 48 + 12 + 16


@pytest.mark.parametrize("where", [len(MAGIC) + 3, 40, 60, 100, -1])
def test_any_changed_byte_is_refused(where: int) -> None:
    blob = bytearray(seal(b"secret model" * 10, KEK))
    blob[where] ^= 0x01
    with pytest.raises(IntegrityError):
        open_sealed(bytes(blob), KEYS)


def test_wrong_key_purpose_and_truncation_are_refused() -> None:
    blob = seal(b"m", KEK)
    other = bytes(32)
    with pytest.raises(IntegrityError, match="not provisioned here"):
        open_sealed(blob, {kek_id(other): other})
    with pytest.raises(IntegrityError, match="wrong key or tampered"):
        open_sealed(blob, {kek_id(KEK): other})  # a key filed under the wrong id
    with pytest.raises(IntegrityError, match="expected a b'model'"):
        open_sealed(seal(b"reference", KEK, b"reference"), KEYS)
    with pytest.raises(IntegrityError, match="truncated"):
        open_sealed(blob[:40], KEYS)
    with pytest.raises(IntegrityError, match="no EDGEOPS-ENC2"):
        open_sealed(b"\x00" * 100, KEYS)
    with pytest.raises(IntegrityError, match="32 bytes"):
        seal(b"m", b"short")

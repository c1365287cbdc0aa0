"""Encrypted bundles in the channel: a random data key per bundle, wrapped for the cohort; no
plaintext hash in clear; the same variant published twice is one bundle."""

from __future__ import annotations

import pytest

from device.encryption import is_sealed, kek_id, sealed_key_id
from edgeops.errors import IntegrityError
from registry.bundles import bundle_file, bundle_metadata, publish_bundle, read_bundle


def test_encrypted_bundle_round_trip_no_clear_hash_and_reuse(local_repo, tiny_tflite) -> None:
    path, spec, _ = tiny_tflite
    kek = bytes(range(32))
    kw = dict(model_name="digits", model_version="3", target="tflite-int8", encryption_key=kek)
    ref = publish_bundle(local_repo, path, spec, **kw)
    assert publish_bundle(local_repo, path, spec, **kw) == ref  # sealing is random: reused
    meta = bundle_metadata(local_repo.store, ref.bundle_id)
    assert meta.encrypted and meta.encryption_key_id == kek_id(kek)
    assert meta.plaintext_sha256 is None  # nothing links the bundle to a known model
    blob = bundle_file(local_repo.store, ref.bundle_id, meta.model_file)
    assert is_sealed(blob) and sealed_key_id(blob) == kek_id(kek)
    assert path.read_bytes() not in blob
    assert read_bundle(local_repo, ref, encryption_key=kek).model_bytes == path.read_bytes()
    with pytest.raises(IntegrityError, match="not provisioned here"):
        read_bundle(local_repo, ref, encryption_key=bytes(32))
    # another cohort key: another bundle, other random bytes
    other = publish_bundle(local_repo, path, spec, **{**kw, "encryption_key": bytes(32)})
    assert other.bundle_id != ref.bundle_id

"""Keys, bundles and manifests against a local store and moto's S3 server."""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path

import pytest

from device.protocol import BundleRef, Manifest, choose, verify_manifest
from device.store import ObjectStore
from edgeops.errors import ConflictError, IntegrityError, RegistryError
from registry.bundles import find_bundle, publish_bundle, read_bundle
from registry.keys import (
    load_or_create_cohort_key,
    load_or_create_signing_key,
    load_trusted_keys,
    publish_public_key,
    retire_public_key,
    rotate_signing_key,
)
from registry.manifests import manifest_key, read_manifest, set_stable, update_manifest


def test_key_created_once_with_private_perms(tmp_path: Path) -> None:
    k1 = load_or_create_signing_key(tmp_path / "keys")
    k2 = load_or_create_signing_key(tmp_path / "keys")
    assert k1.key_id == k2.key_id and len(k1.key_id) == 16
    mode = stat.S_IMODE((tmp_path / "keys" / f"{k1.key_id}.key").stat().st_mode)
    assert mode == 0o600
    assert k1.key_id not in repr(k1.private_key) and "PRIVATE" not in repr(k1)


def test_rotation_keeps_old_manifests_valid_until_retired(
    local_store: ObjectStore, tmp_path: Path
) -> None:
    old = load_or_create_signing_key(tmp_path / "keys")
    ref = BundleRef("a" * 64, "1", "tflite-f32")
    set_stable(local_store, "c1", ref, old)
    new = rotate_signing_key(tmp_path / "keys")
    assert (
        new.key_id != old.key_id
        and load_or_create_signing_key(tmp_path / "keys").key_id == new.key_id
    )
    publish_public_key(local_store, new)
    trusted = load_trusted_keys(local_store)
    assert set(trusted) == {old.key_id, new.key_id}
    assert read_manifest(local_store, "c1", trusted).stable == ref  # still signed by the old key
    m = set_stable(local_store, "c1", ref, new)  # re-signed with the new key
    retire_public_key(local_store, old.key_id)
    trusted = load_trusted_keys(local_store)
    assert set(trusted) == {new.key_id}
    assert read_manifest(local_store, "c1", trusted).revision == m.revision == 2
    assert load_trusted_keys(local_store, pinned=["nope"]) == {}


def test_tampered_public_key_is_refused(local_store: ObjectStore, signing_key) -> None:
    other = load_or_create_signing_key(Path(local_store.url).parent / "other")
    local_store.put(
        f"keys/{signing_key.key_id}.pub", local_store.get(publish_public_key(local_store, other))
    )
    with pytest.raises(IntegrityError, match="does not match its id"):
        load_trusted_keys(local_store)


def test_publish_bundle_round_trip_idempotent(store: ObjectStore, signing_key, tiny_tflite) -> None:
    path, spec, _ = tiny_tflite
    ref = publish_bundle(
        store, signing_key, path, spec, model_name="digits", model_version=3, target="tflite-f32"
    )
    again = publish_bundle(
        store, signing_key, path, spec, model_name="digits", model_version="3", target="tflite-f32"
    )
    assert ref == again and ref.model_version == "3"
    keys = store.list(f"bundles/{ref.bundle_id}/")
    assert sorted(k.rsplit("/", 1)[1] for k in keys) == [
        "labels.json",
        "metadata.json",
        "model.tflite",
        "preprocessing.json",
    ]
    bundle = read_bundle(store, ref, load_trusted_keys(store))
    assert bundle.model_bytes == path.read_bytes()
    meta = bundle.metadata
    assert meta.files["model.tflite"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert meta.input_spec["shape"] == [1, 8, 8, 1] and meta.output_spec["shape"] == [1, 10]
    assert json.loads(bundle.files["labels.json"]) == list(spec.labels)
    assert find_bundle(store, "digits", 3, "tflite-f32") == ref
    with pytest.raises(RegistryError, match="no bundle published for digits version 4"):
        find_bundle(store, "digits", 4, "tflite-f32")


def test_flipped_byte_is_refused(local_store: ObjectStore, signing_key, tiny_tflite) -> None:
    path, spec, _ = tiny_tflite
    ref = publish_bundle(
        local_store, signing_key, path, spec, model_name="d", model_version=1, target="tflite-f32"
    )
    key = f"bundles/{ref.bundle_id}/model.tflite"
    data = bytearray(local_store.get(key))
    data[len(data) // 2] ^= 0x01
    local_store.put(key, bytes(data))
    with pytest.raises(IntegrityError, match="hash mismatch for model.tflite"):
        read_bundle(local_store, ref, load_trusted_keys(local_store))


def test_encrypted_bundle(
    local_store: ObjectStore, signing_key, tiny_tflite, tmp_path: Path
) -> None:
    path, spec, _ = tiny_tflite
    key = load_or_create_cohort_key(tmp_path / "keys", "mcu-line-a")
    assert key == load_or_create_cohort_key(tmp_path / "keys", "mcu-line-a") and len(key) == 32
    ref = publish_bundle(
        local_store,
        signing_key,
        path,
        spec,
        model_name="d",
        model_version=1,
        target="tflite-int8",
        encryption_key=key,
    )
    again = publish_bundle(
        local_store,
        signing_key,
        path,
        spec,
        model_name="d",
        model_version=1,
        target="tflite-int8",
        encryption_key=key,
    )
    assert ref == again
    blob = local_store.get(f"bundles/{ref.bundle_id}/model.tflite.enc")
    assert path.read_bytes()[:64] not in blob
    trusted = load_trusted_keys(local_store)
    assert (
        read_bundle(local_store, ref, trusted, encryption_key=key).model_bytes == path.read_bytes()
    )
    with pytest.raises(IntegrityError, match="no cohort key"):
        read_bundle(local_store, ref, trusted)
    with pytest.raises(IntegrityError, match="decryption failed"):
        read_bundle(local_store, ref, trusted, encryption_key=bytes(32))
    assert find_bundle(local_store, "d", 1, "tflite-int8", encryption_key=key) == ref


def test_update_manifest_cas_and_revision(store: ObjectStore, signing_key) -> None:
    ref1, ref2 = BundleRef("1" * 64, "1", "tflite-f32"), BundleRef("2" * 64, "2", "tflite-f32")
    m1 = set_stable(store, "pi", ref1, signing_key)
    assert m1.revision == 1 and m1.stable == ref1
    m2 = update_manifest(
        store,
        "pi",
        lambda m: Manifest(**{**m.__dict__, "candidate": ref2, "percentage": 5.0}),
        signing_key,
    )
    assert m2.revision == 2 and m2.candidate == ref2 and m2.salt == m1.salt
    trusted = load_trusted_keys(store)
    got = verify_manifest(store.get(manifest_key("pi")), trusted, cohort="pi", last_revision=2)
    assert got == m2 and choose(got, "device-x") in (ref1, ref2)
    # a stale writer (etag from before m2) loses instead of overwriting
    _, stale = store.get_with_etag(manifest_key("pi"))
    set_stable(store, "pi", ref1, signing_key)
    with pytest.raises(ConflictError):
        store.put_if_match(manifest_key("pi"), b"{}", stale)
    with pytest.raises(ConflictError, match="changed under us 3 times"):

        def racing(m):  # someone else writes between our read and our write, every time
            store.put(manifest_key("pi"), store.get(manifest_key("pi")) + b" ")
            return m

        update_manifest(store, "pi", racing, signing_key, retries=3)

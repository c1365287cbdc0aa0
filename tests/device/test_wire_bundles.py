"""Bundles on the wire, end to end: the store holds the zstd-compressed model, a device downloads
it through the TUF channel, verifies the compressed bytes and the inflated file against the
signed metadata, and refuses a tampered, mislabelled or oversized compressed file."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest

from device.capabilities import CapabilityError, DeviceCaps
from device.channel import ChannelClient
from device.protocol import canonical_json
from device.updater import VerifiedBundle, fetch_bundle, open_bundle
from device.wire import compress
from edgeops.errors import IntegrityError

INT8 = DeviceCaps(name="mcu", targets=("tflite-int8",), int8_only=True)


def _session(release, tmp_path):
    return ChannelClient(release.store, tmp_path / "device" / "metadata", release.root).session()


def _model_key(release, ref) -> str:
    [key] = [k for k in release.store.list(f"tuf/targets/bundles/{ref.bundle_id}/") if k.endswith(".model.tflite")]
    return key


def test_store_holds_compressed_file_and_device_gets_it_byte_for_byte(release, tiny_models, tmp_path):
    from registry.bundles import read_bundle

    ref = release.publish(tiny_models.int8, tiny_models.spec, "1", target="tflite-int8")
    stored = release.store.get(_model_key(release, ref))
    assert stored == compress(tiny_models.int8) and len(stored) < len(tiny_models.int8)
    vb = fetch_bundle(_session(release, tmp_path), ref)
    entry = vb.metadata.files[vb.metadata.model_file]
    assert entry["encoding"] == "zstd" and entry["size"] == len(stored)
    assert entry["content_size"] == len(tiny_models.int8)
    assert entry["content_sha256"] == hashlib.sha256(tiny_models.int8).hexdigest()
    loaded = open_bundle(vb, INT8, {})
    assert loaded.runner.model_bytes == tiny_models.int8 and loaded.model_size == len(tiny_models.int8)
    bundle = read_bundle(release.repo, ref)  # the release side reads the same way
    assert bundle.model_bytes == tiny_models.int8 and bundle.wire_bytes == len(stored)


def test_encrypted_bundle_is_compressed_then_sealed_without_a_clear_hash(release, tiny_models, tmp_path):
    from device.encryption import kek_id

    kek = bytes(range(32))
    ref = release.publish(tiny_models.int8, tiny_models.spec, "2", target="tflite-int8", encryption_key=kek)
    vb = fetch_bundle(_session(release, tmp_path), ref)
    entry = vb.metadata.files[vb.metadata.model_file]
    assert entry["encoding"] == "zstd" and "content_sha256" not in entry
    assert entry["size"] < len(tiny_models.int8)  # sealed after compressing, not before
    assert open_bundle(vb, INT8, {kek_id(kek): kek}).runner.model_bytes == tiny_models.int8


def test_tampered_compressed_file_is_refused(release, tiny_models, tmp_path):
    ref = release.publish(tiny_models.int8, tiny_models.spec, "3", target="tflite-int8")
    key = _model_key(release, ref)
    data = bytearray(release.store.get(key))
    data[len(data) // 2] ^= 0x01
    release.store.put(key, bytes(data))
    with pytest.raises(IntegrityError, match="model.tflite"):
        fetch_bundle(_session(release, tmp_path), ref)


def _resigned(vb: VerifiedBundle, blob: bytes | None = None, **entry) -> VerifiedBundle:
    """The bundle with a changed model entry, as a release key holder could sign it."""
    meta = vb.metadata
    files = dict(vb.files)
    if blob is not None:
        files[meta.model_file] = blob
    stored = files[meta.model_file]
    info = {**meta.files[meta.model_file], "sha256": hashlib.sha256(stored).hexdigest(), "size": len(stored),
            **entry}
    meta = replace(meta, files={**meta.files, meta.model_file: info})
    meta_json = canonical_json(meta.to_dict())
    return VerifiedBundle(hashlib.sha256(meta_json).hexdigest(), meta, meta_json, files)


def test_signed_entry_that_does_not_match_the_inflated_file_is_refused(release, tiny_models, tmp_path):
    ref = release.publish(tiny_models.int8, tiny_models.spec, "4", target="tflite-int8")
    vb = fetch_bundle(_session(release, tmp_path), ref)
    with pytest.raises(IntegrityError, match="sha256"):
        open_bundle(_resigned(vb, content_sha256="0" * 64), INT8, {})
    other = tiny_models.int8[:-1] + b"\x00"  # a valid frame of other content
    with pytest.raises(IntegrityError, match="sha256"):
        open_bundle(_resigned(vb, compress(other)), INT8, {})
    with pytest.raises(IntegrityError, match="unknown content encoding"):
        open_bundle(_resigned(vb, encoding="brotli"), INT8, {})


def test_zip_bomb_is_refused_before_inflating(release, tiny_models, tmp_path):
    ref = release.publish(tiny_models.int8, tiny_models.spec, "5", target="tflite-int8")
    vb = fetch_bundle(_session(release, tmp_path), ref)
    bomb = compress(b"\x00" * 64_000_000)  # 64 MB of zeros in a few kB
    assert len(bomb) < 10_000
    small = replace(INT8, max_model_bytes=1_000_000)
    with pytest.raises(CapabilityError, match="allows 1000000"):  # the signed size is over the cap
        open_bundle(_resigned(vb, bomb, content_size=64_000_000, content_sha256=None), small, {})
    with pytest.raises(IntegrityError, match="declares"):  # the frame lies about the signed size
        open_bundle(_resigned(vb, bomb), small, {})

"""Bundles, channels and bucketing: what an agent accepts and what it refuses (signatures,
expiry and rollback are TUF's: tests/device/test_channel.py)."""

from __future__ import annotations

import hashlib

import pytest

from device.protocol import (
    BUCKETS,
    BundleMetadata,
    BundleRef,
    Channel,
    bucket,
    bundle_id_of,
    canonical_json,
    check_file,
    choose,
    decrypt_model,
    encrypt_model,
    in_canary,
    verify_bundle_metadata,
)
from edgeops.errors import IntegrityError


def _channel(pct: float = 25.0) -> Channel:
    return Channel(
        cohort="pi-fleet-eu",
        stable=BundleRef("s" * 64, "1", "tflite-f32"),
        candidate=BundleRef("c" * 64, "2", "tflite-f32"),
        percentage=pct,
        salt="salt-1",
        rollout_id=2,
        revision=7,
    )


def test_canonical_json_is_sorted_and_compact() -> None:
    assert canonical_json({"b": 1, "a": [1, "é"]}) == '{"a":[1,"é"],"b":1}'.encode()


def test_channel_round_trip_and_refusals() -> None:
    c = _channel(12.34)
    d = c.to_dict()
    assert d["basis_points"] == 1234 and "percentage" not in d  # TUF's canonical JSON: no floats
    assert Channel.from_dict(d) == c
    with pytest.raises(IntegrityError, match="expected edgeops/channel"):
        Channel.from_dict({**d, "_type": "edgeops/bundle"})
    with pytest.raises(IntegrityError, match="outside 0-100"):
        Channel.from_dict({**d, "basis_points": 10001})
    with pytest.raises(IntegrityError, match="malformed"):
        Channel.from_dict({**d, "stable": {"bundle_id": "x"}})
    assert c.same_routing(Channel.from_dict({**d, "revision": 9}))
    assert not c.same_routing(_channel(12.35)) and not c.same_routing(None)


def test_bundle_metadata_and_file_hashes() -> None:
    data = b"model-bytes"
    meta = BundleMetadata(
        model_name="digits",
        model_version="3",
        target="tflite-int8",
        files={"model.tflite": {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}},
        model_file="model.tflite",
        input_spec={"shape": [1, 32, 32, 1], "dtype": "int8"},
        output_spec={"shape": [1, 10], "dtype": "int8"},
        preprocessing_sha256="p" * 64,
    )
    raw = canonical_json(meta.to_dict())
    bid = bundle_id_of(raw)
    got = verify_bundle_metadata(raw, bid)
    assert got == meta
    check_file(got, "model.tflite", data)
    with pytest.raises(IntegrityError, match="hash mismatch for model.tflite"):
        check_file(got, "model.tflite", b"model-bytez")
    with pytest.raises(IntegrityError, match="size mismatch"):
        check_file(got, "model.tflite", data + b"!")
    with pytest.raises(IntegrityError, match="bundle id mismatch"):
        verify_bundle_metadata(raw, "0" * 64)
    with pytest.raises(IntegrityError, match="bundle id mismatch"):  # one byte more: another id
        verify_bundle_metadata(raw + b" ", bid)
    with pytest.raises(IntegrityError, match="expected edgeops/bundle"):
        bad = canonical_json({**meta.to_dict(), "_type": "edgeops/channel"})
        verify_bundle_metadata(bad, bundle_id_of(bad))


def test_encryption_round_trip_and_tamper() -> None:
    k = bytes(range(32))
    blob = encrypt_model(b"secret model", k)
    assert b"secret" not in blob and decrypt_model(blob, k) == b"secret model"
    flipped = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(IntegrityError, match="decryption failed"):
        decrypt_model(flipped, k)
    with pytest.raises(IntegrityError, match="decryption failed"):
        decrypt_model(blob, bytes(32))


def test_buckets_are_uniform_and_sticky() -> None:
    ids = [f"dev-{i}" for i in range(20_000)]
    buckets = [bucket(d, "s") for d in ids]
    assert all(0 <= b < BUCKETS for b in buckets)
    share = sum(in_canary(5, d, "s") for d in ids) / len(ids)
    assert share == pytest.approx(0.05, abs=0.01)
    for lo, hi in [(1, 5), (5, 25), (25, 50), (50, 100)]:
        assert all(in_canary(hi, d, "s") for d in ids if in_canary(lo, d, "s"))
    assert bucket("dev-1", "s") != bucket("dev-1", "t") or bucket("dev-2", "s") != bucket(
        "dev-2", "t"
    )
    assert not any(in_canary(0, d, "s") for d in ids) and all(in_canary(100, d, "s") for d in ids)


def test_choose_follows_the_percentage() -> None:
    m = _channel(pct=50)
    picks = [choose(m, f"d{i}").model_version for i in range(2000)]
    assert 0.4 < picks.count("2") / 2000 < 0.6
    assert choose(_channel(pct=0), "d1").model_version == "1"
    assert choose(Channel("c"), "d1") is None

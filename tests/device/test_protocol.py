"""Signed envelopes, manifests and bucketing: what an agent accepts and what it refuses."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from device.protocol import (
    BUCKETS,
    BundleMetadata,
    BundleRef,
    Manifest,
    bucket,
    bundle_id_of,
    canonical_json,
    check_file,
    choose,
    decrypt_model,
    encrypt_model,
    format_time,
    in_canary,
    load_public_key_pem,
    public_key_id,
    public_key_pem,
    sign_envelope,
    verify_bundle_metadata,
    verify_envelope,
    verify_manifest,
)
from edgeops.errors import IntegrityError

NOW = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)


@pytest.fixture
def key() -> tuple[Ed25519PrivateKey, str]:
    k = Ed25519PrivateKey.generate()
    return k, public_key_id(k.public_key())


def _manifest(
    revision: int = 3, expires: datetime = NOW + timedelta(days=1), pct: float = 25.0
) -> Manifest:
    return Manifest(
        cohort="pi-fleet-eu",
        revision=revision,
        issued_at=format_time(NOW),
        expires_at=format_time(expires),
        stable=BundleRef("s" * 64, "1", "tflite-f32"),
        candidate=BundleRef("c" * 64, "2", "tflite-f32"),
        percentage=pct,
        salt="salt-1",
    )


def test_canonical_json_is_sorted_and_compact() -> None:
    assert canonical_json({"b": 1, "a": [1, "é"]}) == '{"a":[1,"é"],"b":1}'.encode()


def test_key_id_and_pem_round_trip(key) -> None:
    priv, kid = key
    assert len(kid) == 16
    assert public_key_id(load_public_key_pem(public_key_pem(priv.public_key()))) == kid
    with pytest.raises(IntegrityError, match="PEM"):
        load_public_key_pem(b"garbage")


def test_envelope_verifies_and_refuses(key) -> None:
    priv, kid = key
    env = sign_envelope({"x": 1}, priv, kid)
    trusted = {kid: priv.public_key()}
    assert verify_envelope(env, trusted) == {"x": 1}
    assert verify_envelope(json.dumps(env).encode(), trusted) == {"x": 1}
    tampered = {**env, "signed": {"x": 2}}
    with pytest.raises(IntegrityError, match="bad signature"):
        verify_envelope(tampered, trusted)
    other = Ed25519PrivateKey.generate()
    with pytest.raises(IntegrityError, match="unknown key id"):
        verify_envelope(env, {public_key_id(other.public_key()): other.public_key()})
    with pytest.raises(IntegrityError, match="malformed"):
        verify_envelope({"signed": {"x": 1}, "signatures": []}, trusted)


def test_key_rotation_accepts_any_trusted_key(key) -> None:
    old, old_id = key
    new = Ed25519PrivateKey.generate()
    new_id = public_key_id(new.public_key())
    trusted = {old_id: old.public_key(), new_id: new.public_key()}
    assert verify_envelope(sign_envelope({"v": 1}, new, new_id), trusted) == {"v": 1}
    assert verify_envelope(sign_envelope({"v": 1}, old, old_id), trusted) == {"v": 1}


def test_manifest_checks(key) -> None:
    priv, kid = key
    trusted = {kid: priv.public_key()}
    env = sign_envelope(_manifest().to_dict(), priv, kid)
    m = verify_manifest(env, trusted, cohort="pi-fleet-eu", last_revision=3, now=NOW)
    assert m == _manifest()
    with pytest.raises(IntegrityError, match="lower than the last seen 4"):
        verify_manifest(env, trusted, last_revision=4, now=NOW)
    with pytest.raises(IntegrityError, match="expired"):
        verify_manifest(env, trusted, now=NOW + timedelta(days=2))
    with pytest.raises(IntegrityError, match="not 'other'"):
        verify_manifest(env, trusted, cohort="other", now=NOW)
    bundle_env = sign_envelope({"_type": "edgeops/bundle"}, priv, kid)
    with pytest.raises(IntegrityError, match="expected edgeops/manifest"):
        verify_manifest(bundle_env, trusted, now=NOW)


def test_bundle_metadata_and_file_hashes(key) -> None:
    priv, kid = key
    data = b"model-bytes"
    import hashlib

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
    env = sign_envelope(meta.to_dict(), priv, kid)
    bid = bundle_id_of(env)
    got = verify_bundle_metadata(env, {kid: priv.public_key()}, bid)
    assert got == meta
    check_file(got, "model.tflite", data)
    with pytest.raises(IntegrityError, match="hash mismatch for model.tflite"):
        check_file(got, "model.tflite", b"model-bytez")
    with pytest.raises(IntegrityError, match="size mismatch"):
        check_file(got, "model.tflite", data + b"!")
    with pytest.raises(IntegrityError, match="bundle id mismatch"):
        verify_bundle_metadata(env, {kid: priv.public_key()}, "0" * 64)


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
    m = _manifest(pct=50)
    picks = [choose(m, f"d{i}").model_version for i in range(2000)]
    assert 0.4 < picks.count("2") / 2000 < 0.6
    assert choose(_manifest(pct=0), "d1").model_version == "1"
    assert choose(Manifest("c", 1, "t", "t"), "d1") is None

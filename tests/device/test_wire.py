"""Wire compression: byte-for-byte round trip; tampered, oversized or mislabelled files refused."""

from __future__ import annotations

import hashlib

import pytest

from device.wire import compress, content_entry, decode, decompress_verified, wire_size
from edgeops.errors import IntegrityError

DATA = bytes(range(256)) * 64 + b"\x00" * 50_000  # a model file: some structure, many zeros


def _meta(data: bytes = DATA) -> tuple[str, int]:
    return hashlib.sha256(data).hexdigest(), len(data)


def test_round_trip_is_byte_for_byte_and_smaller() -> None:
    blob = compress(DATA)
    assert decompress_verified(blob, *_meta()) == DATA
    assert wire_size(DATA) == len(blob) < len(DATA) // 10


def test_tampered_compressed_file_is_refused() -> None:
    blob = bytearray(compress(DATA))
    blob[len(blob) // 2] ^= 0x01
    with pytest.raises(IntegrityError):
        decompress_verified(bytes(blob), *_meta())


def test_valid_frame_of_other_content_is_refused_by_hash() -> None:
    other = DATA[:-1] + b"\x01"
    with pytest.raises(IntegrityError, match="sha256"):
        decompress_verified(compress(other), *_meta())


def test_size_cap_and_size_mismatch_are_refused_before_inflating() -> None:
    blob = compress(DATA)
    with pytest.raises(IntegrityError, match="cap"):
        decompress_verified(blob, *_meta(), max_bytes=1000)
    with pytest.raises(IntegrityError, match="declares"):
        decompress_verified(blob, hashlib.sha256(DATA).hexdigest(), len(DATA) + 1)
    with pytest.raises(IntegrityError, match="not a zstd frame"):
        decompress_verified(b"not zstd at all", *_meta())


def test_decode_follows_the_signed_entry() -> None:
    blob = compress(DATA)
    assert decode(DATA, {"sha256": "x", "size": len(DATA)}) == DATA  # not coded: as is
    assert decode(blob, content_entry(DATA)) == DATA
    assert decode(blob, content_entry(DATA, with_hash=False)) == DATA  # an AEAD covered it
    with pytest.raises(IntegrityError, match="unknown content encoding"):
        decode(blob, {**content_entry(DATA), "encoding": "gzip"})
    with pytest.raises(IntegrityError, match="bad content_size"):
        decode(blob, {**content_entry(DATA), "content_size": "many"})
    with pytest.raises(IntegrityError, match="sha256"):
        decode(blob, {**content_entry(DATA), "content_sha256": "0" * 64})

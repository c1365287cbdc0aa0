"""Model files on the wire: zstd-compressed by the release side, verified and inflated on the device.

Pruned and clustered int8 files are full of zeros and repeated values that the .tflite format
stores as is; entropy coding on the wire is where those gains are cashed in (Deep Compression's
last stage). A bundle stores the compressed file under the model's name, and its signed entry in
metadata.json says how it is coded, like HTTP's Content-Encoding:

    {"sha256": <of the stored bytes>, "size": <stored>, "encoding": "zstd",
     "content_size": <inflated>, "content_sha256": <of the inflated file; absent when encrypted>}

TUF and the bundle metadata verify the stored (compressed, maybe sealed) bytes first; then the
device inflates them only if the frame declares the signed content size, under its own cap (a
zip bomb is refused before anything is inflated), and the result must hash to the signed
content sha256 where the metadata carries it (an encrypted model's AEAD tag covers it instead:
no plaintext hash is published in clear). numpy-free and tensorflow-free: this runs on the device.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import zstandard

from edgeops.errors import IntegrityError

ENCODING = "zstd"
DEFAULT_LEVEL = 19  # slow to write once on the release side, fast to read on the device
DEFAULT_MAX_BYTES = 256 * 1024 * 1024


def compress(data: bytes, level: int = DEFAULT_LEVEL) -> bytes:
    """One zstd frame with the content size and a checksum in it (deterministic: one thread)."""
    return zstandard.ZstdCompressor(level=level, write_checksum=True, write_content_size=True).compress(data)


def wire_size(data: bytes, level: int = DEFAULT_LEVEL) -> int:
    """Bytes a device downloads for this model file."""
    return len(compress(data, level))


def content_entry(plain: bytes, with_hash: bool = True) -> dict[str, Any]:
    """The coding fields of a compressed file's signed metadata entry."""
    entry: dict[str, Any] = {"encoding": ENCODING, "content_size": len(plain)}
    if with_hash:
        entry["content_sha256"] = hashlib.sha256(plain).hexdigest()
    return entry


def decompress_verified(
    blob: bytes, sha256: str | None, size: int, max_bytes: int = DEFAULT_MAX_BYTES, where: str = "model"
) -> bytes:
    """Inflate `blob` only if it declares `size` bytes (<= max_bytes), and return them only if
    they hash to `sha256` (None: the caller verified the content otherwise, e.g. by AEAD).
    Anything else raises IntegrityError naming `where` and the reason."""
    if size > max_bytes:
        raise IntegrityError(f"declared size {size} exceeds the device cap {max_bytes}", where=where)
    try:
        declared = zstandard.frame_content_size(blob)
    except zstandard.ZstdError as exc:
        raise IntegrityError(f"not a zstd frame: {exc}", where=where) from exc
    if declared != size:
        raise IntegrityError(f"frame declares {declared} bytes, metadata {size}", where=where)
    try:
        data = zstandard.ZstdDecompressor().decompress(blob, max_output_size=max_bytes)
    except zstandard.ZstdError as exc:
        raise IntegrityError(f"corrupt compressed file: {exc}", where=where) from exc
    if len(data) != size:
        raise IntegrityError(f"inflated to {len(data)} bytes, expected {size}", where=where)
    if sha256 is not None:
        digest = hashlib.sha256(data).hexdigest()
        if digest != sha256:
            raise IntegrityError(
                f"sha256 {digest[:16]}... does not match the signed {sha256[:16]}...", where=where
            )
    return data


def decode(
    blob: bytes, entry: Mapping[str, Any], max_bytes: int = DEFAULT_MAX_BYTES, where: str = "model"
) -> bytes:
    """A verified stored file -> its content, by the coding its signed entry names (none: as is)."""
    encoding = entry.get("encoding")
    if encoding is None:
        return blob
    if encoding != ENCODING:
        raise IntegrityError(f"unknown content encoding {encoding!r}", where=where)
    size, sha = entry.get("content_size"), entry.get("content_sha256")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise IntegrityError(f"bad content_size {size!r} in the signed entry", where=where)
    if sha is not None and not isinstance(sha, str):
        raise IntegrityError(f"bad content_sha256 {sha!r} in the signed entry", where=where)
    return decompress_verified(blob, sha, size, max_bytes, where)

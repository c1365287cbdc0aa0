"""Model files on the wire: zstd-compressed by the release side, verified and inflated on the device.

Pruned and clustered int8 files are full of zeros and repeated values that the .tflite format
stores as is; entropy coding on the wire is where those gains are cashed in (Deep Compression's
last stage). The device never trusts the compressed bytes: the frame must declare its content
size, that size must be under the device's cap before anything is inflated (a zip bomb is
refused up front), and the inflated file must match the size and sha256 the signed bundle
metadata names. numpy-free and tensorflow-free: this runs on the device.
"""

from __future__ import annotations

import hashlib

import zstandard

from edgeops.errors import IntegrityError

SUFFIX = ".zst"
DEFAULT_LEVEL = 19  # slow to write once on the release side, fast to read on the device
DEFAULT_MAX_BYTES = 256 * 1024 * 1024


def compress(data: bytes, level: int = DEFAULT_LEVEL) -> bytes:
    """One zstd frame with the content size and a checksum in it."""
    return zstandard.ZstdCompressor(level=level, write_checksum=True, write_content_size=True).compress(data)


def wire_size(data: bytes, level: int = DEFAULT_LEVEL) -> int:
    """Bytes a device downloads for this model file."""
    return len(compress(data, level))


def decompress_verified(
    blob: bytes, sha256: str, size: int, max_bytes: int = DEFAULT_MAX_BYTES, where: str = "model"
) -> bytes:
    """Inflate `blob` only if it declares `size` bytes (<= max_bytes), and return them only if
    they hash to `sha256`. Anything else raises IntegrityError naming `where` and the reason."""
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
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise IntegrityError(f"sha256 {digest[:16]}... does not match the signed {sha256[:16]}...", where=where)
    return data

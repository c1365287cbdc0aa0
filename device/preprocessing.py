"""The one preprocessing that turns a camera frame into a model input (numpy only).

Training, evaluation and the device agent all call this module, and the spec ships inside
every bundle, so the pipeline and the device cannot drift apart. Resizing is a separable
triangle (bilinear) filter whose support widens when shrinking, like Pillow's antialiased
bilinear: a 640x480 frame reduced to 32x32 averages every source pixel instead of sampling four.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edgeops.errors import DataError

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601 luma weights


@dataclass(frozen=True)
class PreprocessingSpec:
    """Input size, per-channel statistics (on [0, 1] pixels) and labels: a product of training."""

    height: int
    width: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    labels: tuple[str, ...]
    # Temperature scaling of the outputs, fitted on validation (components.calibration): the
    # monitor reads calibrated confidence as estimated accuracy. 1.0 = uncalibrated.
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise DataError(f"preprocessing spec: channels must be 1 or 3, got {self.channels}")
        if self.height < 1 or self.width < 1:
            raise DataError(f"preprocessing spec: bad size {self.height}x{self.width}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise DataError("preprocessing spec: mean and std need one value per channel")
        if any(s <= 0 for s in self.std):
            raise DataError(f"preprocessing spec: std must be positive, got {self.std}")
        if not self.temperature > 0:
            raise DataError(f"preprocessing spec: temperature must be positive, got {self.temperature}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mean"], d["std"], d["labels"] = list(self.mean), list(self.std), list(self.labels)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PreprocessingSpec:
        try:
            return cls(
                height=int(d["height"]),
                width=int(d["width"]),
                channels=int(d["channels"]),
                mean=tuple(float(v) for v in d["mean"]),
                std=tuple(float(v) for v in d["std"]),
                labels=tuple(str(v) for v in d["labels"]),
                temperature=float(d.get("temperature", 1.0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"preprocessing spec is malformed: {exc!r}") from exc

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, indent=2)

    @classmethod
    def from_json(cls, s: str | bytes) -> PreprocessingSpec:
        try:
            return cls.from_dict(json.loads(s))
        except json.JSONDecodeError as exc:
            raise DataError(f"preprocessing spec is not JSON: {exc}") from exc


def _resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of a triangle filter with half-pixel centres, rows summing to 1."""
    scale = n_in / n_out
    support = max(scale, 1.0)
    centres = (np.arange(n_out, dtype=np.float64) + 0.5) * scale
    if scale < 1.0:  # upsampling: the outermost outputs copy the edge pixels
        centres = np.clip(centres, 0.5, n_in - 0.5)
    src = np.arange(n_in, dtype=np.float64) + 0.5
    w = np.clip(1.0 - np.abs(src[None, :] - centres[:, None]) / support, 0.0, None)
    return (w / w.sum(axis=1, keepdims=True)).astype(np.float32)


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear (antialiased when shrinking) resize of one float HxWxC image."""
    h, w = image.shape[:2]
    if (h, w) == (height, width):
        return image
    rows, cols = _resize_matrix(h, height), _resize_matrix(w, width)
    return np.einsum("ih,hwc,jw->ijc", rows, image, cols, optimize=True).astype(np.float32)


def _as_hwc01(image: np.ndarray) -> np.ndarray:
    """One image of any dtype/layout to float32 HxWxC in [0, 1]."""
    a = np.asarray(image)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4) or 0 in a.shape:
        raise DataError(f"an image must be HxW or HxWxC with C in 1..4, got shape {a.shape}")
    if a.dtype == np.uint8:
        f = a.astype(np.float32) / 255.0
    elif a.dtype == np.uint16:
        f = a.astype(np.float32) / 65535.0
    elif np.issubdtype(a.dtype, np.floating) or a.dtype == np.bool_:
        f = np.clip(a.astype(np.float32), 0.0, 1.0)
    else:
        raise DataError(f"unsupported image dtype {a.dtype}: use uint8, uint16 or float in [0, 1]")
    if f.shape[2] in (2, 4):  # drop alpha
        f = f[:, :, : f.shape[2] - 1]
    return f


def _to_channels(f: np.ndarray, channels: int) -> np.ndarray:
    if f.shape[2] == channels:
        return f
    if channels == 1:
        return (f @ LUMA)[:, :, None]
    return np.repeat(f, 3, axis=2)


def _split_batch(images: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
    if isinstance(images, np.ndarray):
        if images.ndim == 4 or (images.ndim == 3 and images.shape[2] not in (1, 2, 3, 4)):
            return list(images)
        return [images]
    return [np.asarray(im) for im in images]


def to_unit(images: np.ndarray | Sequence[np.ndarray], spec: PreprocessingSpec) -> np.ndarray:
    """Any image(s) -> float32 (N, H, W, C) in [0, 1] at the spec's size and channel count.

    A 2-D array or a 3-D array whose last axis is 1-4 is one image; a 4-D array, a 3-D
    array of grayscale frames or a list is a batch.
    """
    batch = _split_batch(images)
    out = np.empty((len(batch), spec.height, spec.width, spec.channels), dtype=np.float32)
    for i, im in enumerate(batch):
        f = _to_channels(_as_hwc01(im), spec.channels)
        out[i] = np.clip(resize(f, spec.height, spec.width), 0.0, 1.0)
    return out


def normalize(x01: np.ndarray, spec: PreprocessingSpec) -> np.ndarray:
    """(x01 - mean) / std per channel: the model input."""
    x = np.asarray(x01, dtype=np.float32)
    if x.ndim != 4 or x.shape[-1] != spec.channels:
        raise DataError(f"normalize wants (N, H, W, {spec.channels}), got {x.shape}")
    mean = np.asarray(spec.mean, dtype=np.float32)
    std = np.asarray(spec.std, dtype=np.float32)
    return ((x - mean) / std).astype(np.float32)


def preprocess(images: np.ndarray | Sequence[np.ndarray], spec: PreprocessingSpec) -> np.ndarray:
    """Frames as captured -> model input."""
    return normalize(to_unit(images, spec), spec)

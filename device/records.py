"""From what the agent sampled to a Parquet batch: features, thumbnails and rows, in one pass.

The reservoir holds each sampled frame at model input size as uint8 (bounded memory);
summary features and thumbnails are computed here, vectorised, only for the records that
are actually uploaded, so the per-inference cost on the device stays a coin flip and a copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

import numpy as np

from device.features import FEATURE_NAMES, summary_features
from device.protocol import BundleRef
from device.sampling import SamplingPolicy
from device.telemetry import table_from_columns, write_batch
from device.updater import LoadedModel


@dataclass(frozen=True)
class RecordSource:
    """Who writes the records and what they may carry: the part of the agent's configuration
    a batch needs (owned here, so the records never import the agent that fills them)."""

    device_id: str
    cohort: str
    policy: SamplingPolicy = SamplingPolicy()
    thumb_size: int = 8  # 0: no downscaled input in telemetry
    active_power_w: float = 0.0  # energy per record = power x latency


class Pending(NamedTuple):
    """A sampled inference or an event, waiting in the agent's buffers (a tuple: the hot path
    creates one per sampled frame).

    For refusals and swaps, `ref` names the bundle the event is about; the record's model
    columns then name that bundle (so a rollout gate can count refusals of its candidate).
    `inference_id` is the device's id of the inference (unique per device); a `label` event
    carries the id of the inference it labels, so ingestion can join a late label to it.
    """

    ts: datetime
    event: str
    model: LoadedModel | None
    image: np.ndarray | None = None  # (H, W, C) at model input size: [0,1] float or uint8
    probs: np.ndarray | None = None
    latency_ms: float | None = None
    label: int | None = None
    error: str | None = None
    ref: BundleRef | None = None
    inference_id: int | None = None


def _unit(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image


def _thumbs(x01: np.ndarray, size: int) -> list[bytes]:
    """Box-filter downscale of a (N,H,W,C) [0,1] batch to (size,size,C) uint8 per image."""
    n, h, w, c = x01.shape
    rows = np.array_split(np.arange(h), min(size, h))
    cols = np.array_split(np.arange(w), min(size, w))
    f = x01 * 255.0
    out = np.empty((n, len(rows), len(cols), c), dtype=np.float32)
    for i, r in enumerate(rows):
        band = f[:, r[0] : r[-1] + 1].mean(axis=1)
        for j, cc in enumerate(cols):
            out[:, i, j] = band[:, cc[0] : cc[-1] + 1].mean(axis=1)
    small = np.round(out).astype(np.uint8)
    return [im.tobytes() for im in small]


def build_batch(source: RecordSource, items: list[Pending], first_seq: int) -> bytes:
    """Rows in arrival order with consecutive seq numbers -> validated Parquet bytes."""
    n = len(items)
    feats = np.full((n, len(FEATURE_NAMES)), np.nan, dtype=np.float32)
    thumbs: list[bytes | None] = [None] * n
    inf = [i for i, p in enumerate(items) if p.image is not None]
    if inf:
        x01 = np.stack([_unit(items[i].image) for i in inf])  # type: ignore[arg-type]
        feats[inf] = summary_features(x01)
        if source.thumb_size > 0:  # privacy: only where the policy allows (default: labelled)
            for i, t in zip(inf, _thumbs(x01, source.thumb_size), strict=True):
                thumbs[i] = t if source.policy.sends_thumbnail(items[i].label is not None) else None
    model_cols: dict[str, list[str]] = {
        k: [] for k in ("model_name", "model_version", "target", "bundle_id")
    }
    for p in items:
        m = p.model
        if p.ref is not None:
            vals = (
                m.metadata.model_name if m else "",
                p.ref.model_version,
                p.ref.target,
                p.ref.bundle_id,
            )
        elif m is not None:
            vals = (m.metadata.model_name, m.metadata.model_version, m.metadata.target, m.bundle_id)
        else:
            vals = ("", "", "", "")
        for k, v in zip(model_cols, vals, strict=True):
            model_cols[k].append(v)
    top1 = [int(np.argmax(p.probs)) if p.probs is not None else None for p in items]
    conf = [float(np.max(p.probs)) if p.probs is not None else None for p in items]
    latency = [p.latency_ms for p in items]
    power = source.active_power_w
    columns = {
        "device_id": [source.device_id] * n,
        "cohort": [source.cohort] * n,
        **model_cols,
        "seq": np.arange(first_seq, first_seq + n, dtype=np.int64),
        "ts": [p.ts for p in items],
        "event": [p.event for p in items],
        "features": feats,
        "probs": [p.probs for p in items],
        "top1": top1,
        "confidence": conf,
        "latency_ms": latency,
        "memory_bytes": [
            p.model.memory_bytes if p.model and p.image is not None else None for p in items
        ],
        "energy_mj": [power * v if v is not None else None for v in latency],
        "error": [p.error for p in items],
        "label": [p.label for p in items],
        "thumb": thumbs,
        "inference_id": [p.inference_id for p in items],
    }
    return write_batch(table_from_columns(columns))

"""From what the agent sampled to a Parquet batch: features, thumbnails and rows, in one pass.

The reservoir holds each sampled frame at model input size as uint8 (bounded memory);
summary features and thumbnails are computed here, vectorised, only for the records that
are actually uploaded, so the per-inference cost on the device stays a coin flip and a copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np

from device.features import summary_features
from device.preprocessing import resize
from device.protocol import BundleRef
from device.telemetry import TelemetryRecord, records_to_table, write_batch

if TYPE_CHECKING:
    from device.agent import AgentConfig
    from device.updater import LoadedModel


@dataclass(frozen=True)
class Pending:
    """A sampled inference or an event, waiting in the agent's buffers.

    For refusals and swaps, `ref` names the bundle the event is about; the record's model
    columns then name that bundle (so a rollout gate can count refusals of its candidate).
    """

    ts: datetime
    event: str
    model: LoadedModel | None
    image: np.ndarray | None = None  # uint8 (H, W, C) at model input size
    probs: np.ndarray | None = None
    top1: int | None = None
    confidence: float | None = None
    latency_ms: float | None = None
    label: int | None = None
    error: str | None = None
    ref: BundleRef | None = None


def _thumbs(images: np.ndarray, size: int) -> list[bytes]:
    out = []
    for im in images:
        small = resize(im.astype(np.float32) / 255.0, size, size)
        out.append(np.round(np.clip(small, 0, 1) * 255).astype(np.uint8).tobytes())
    return out


def build_batch(config: AgentConfig, items: list[Pending], first_seq: int) -> bytes:
    """Rows in arrival order with consecutive seq numbers -> validated Parquet bytes."""
    inf = [i for i, p in enumerate(items) if p.image is not None]
    feats: dict[int, tuple[float, ...]] = {}
    thumbs: dict[int, bytes] = {}
    if inf:
        images = np.stack([items[i].image for i in inf])  # type: ignore[misc]
        f = summary_features(images.astype(np.float32) / 255.0)
        feats = {i: tuple(map(float, row)) for i, row in zip(inf, f, strict=True)}
        if config.thumb_size > 0:
            thumbs = dict(zip(inf, _thumbs(images, config.thumb_size), strict=True))
    records = []
    power = config.caps.active_power_w
    for k, p in enumerate(items):
        m = p.model
        name = m.metadata.model_name if m else ""
        if p.ref is not None:
            version, target, bundle = p.ref.model_version, p.ref.target, p.ref.bundle_id
        elif m is not None:
            version, target, bundle = m.metadata.model_version, m.metadata.target, m.bundle_id
        else:
            version = target = bundle = ""
        records.append(
            TelemetryRecord(
                device_id=config.device_id,
                cohort=config.cohort,
                model_name=name,
                model_version=version,
                target=target,
                bundle_id=bundle,
                seq=first_seq + k,
                ts=p.ts,
                event=p.event,
                features=feats.get(k),
                probs=tuple(map(float, p.probs)) if p.probs is not None else None,
                top1=p.top1,
                confidence=p.confidence,
                latency_ms=p.latency_ms,
                memory_bytes=m.memory_bytes if (m and p.image is not None) else None,
                energy_mj=power * p.latency_ms if p.latency_ms is not None else None,
                error=p.error,
                label=p.label,
                thumb=thumbs.get(k),
            )
        )
    return write_batch(records_to_table(records))

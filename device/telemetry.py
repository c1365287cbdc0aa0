"""The telemetry record: one row per sampled inference or event, written as Parquet (zstd).

The schema is the wire contract between the agent and ingestion (docs/architecture.md):
the agent validates every batch against it before spooling, so a malformed batch is caught
on the device, and ingestion validates again with the same function.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from device.features import FEATURE_NAMES
from device.identity import is_frame, open_frame
from edgeops.errors import IntegrityError, TelemetryError

EVENTS = ("inference", "refusal", "swap", "error", "label")
# Columns added to the wire contract after devices were in the field: a batch without them (an
# older agent's, or one spooled before an upgrade) is read with them null.
ADDED_COLUMNS = ("inference_id",)
FEATURE_COLUMNS: tuple[str, ...] = tuple(f"f_{n}" for n in FEATURE_NAMES)

_STRINGS = ("device_id", "cohort", "model_name", "model_version", "target", "bundle_id")
SCHEMA = pa.schema(
    [pa.field(n, pa.string(), nullable=False) for n in _STRINGS]
    + [
        pa.field("seq", pa.int64(), nullable=False),
        pa.field("ts", pa.timestamp("ms", tz="UTC"), nullable=False),
        pa.field("event", pa.string(), nullable=False),
    ]
    + [pa.field(c, pa.float32()) for c in FEATURE_COLUMNS]
    + [
        pa.field("probs", pa.list_(pa.float32())),
        pa.field("top1", pa.int32()),
        pa.field("confidence", pa.float32()),
        pa.field("latency_ms", pa.float32()),
        pa.field("memory_bytes", pa.int64()),
        pa.field("energy_mj", pa.float32()),
        pa.field("error", pa.string()),
        pa.field("label", pa.int32()),
        pa.field("thumb", pa.binary()),
        # the device's id of the inference (unique per device); on a `label` event, the id of
        # the inference it labels (a label the user gave after the record was uploaded)
        pa.field("inference_id", pa.int64()),
    ]
)


@dataclass(frozen=True)
class TelemetryRecord:
    """One row. Model fields are empty strings when no model is loaded yet (e.g. a refusal
    before the first install); features and outputs are None for non-inference events."""

    device_id: str
    cohort: str
    model_name: str
    model_version: str
    target: str
    bundle_id: str
    seq: int
    ts: datetime
    event: str = "inference"
    features: tuple[float, ...] | None = None
    probs: tuple[float, ...] | None = None
    top1: int | None = None
    confidence: float | None = None
    latency_ms: float | None = None
    memory_bytes: int | None = None
    energy_mj: float | None = None
    error: str | None = None
    label: int | None = None
    thumb: bytes | None = field(default=None, repr=False)
    inference_id: int | None = None


def _utc(t: datetime) -> datetime:
    """Naive datetimes are UTC (as pyarrow treats them), never the machine's local time."""
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t


def _list_array(rows: Sequence[np.ndarray | Sequence[float] | None]) -> pa.Array:
    """list<float32> from per-row vectors (None -> null) without a Python loop over values."""
    lengths = np.array([0 if r is None else len(r) for r in rows], dtype=np.int32)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    present = [np.asarray(r, dtype=np.float32) for r in rows if r is not None]
    values = np.concatenate(present) if present else np.zeros(0, np.float32)
    mask = pa.array([r is None for r in rows], type=pa.bool_())
    return pa.ListArray.from_arrays(
        pa.array(offsets), pa.array(values), type=pa.list_(pa.float32()), mask=mask
    )


def table_from_columns(columns: Mapping[str, Any]) -> pa.Table:
    """Columns -> a table in SCHEMA. `features` is an (N, F) float32 array whose NaN rows
    mean "no features" (events); `probs` a list of vectors or None; `ts` datetimes; the rest
    lists or arrays named as in SCHEMA. The fast path the agent uses."""
    feats = np.asarray(columns["features"], dtype=np.float32)
    n = len(columns["seq"])
    if feats.shape != (n, len(FEATURE_COLUMNS)):
        raise TelemetryError(
            f"features have shape {feats.shape}, the schema wants ({n}, {len(FEATURE_COLUMNS)})"
        )
    events = set(columns["event"])
    if not events <= set(EVENTS):
        raise TelemetryError(f"unknown telemetry event {sorted(events - set(EVENTS))}")
    no_feats = np.isnan(feats).all(axis=1)
    # datetimes go in as epoch milliseconds: pyarrow would import pandas for tz-aware objects
    ms = np.array([round(_utc(t).timestamp() * 1000) for t in columns["ts"]], dtype=np.int64)
    arrays: list[pa.Array] = []
    for f in SCHEMA:
        if f.name == "ts":
            arrays.append(pa.array(ms, type=pa.int64()).cast(f.type))
        elif f.name in FEATURE_COLUMNS:
            j = FEATURE_COLUMNS.index(f.name)
            arrays.append(pa.array(feats[:, j], type=pa.float32(), mask=no_feats))
        elif f.name == "probs":
            arrays.append(_list_array(columns["probs"]))
        elif f.name in ADDED_COLUMNS and f.name not in columns:
            arrays.append(pa.nulls(n, type=f.type))
        else:
            arrays.append(pa.array(columns[f.name], type=f.type))
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def records_to_table(records: Sequence[TelemetryRecord]) -> pa.Table:
    """Rows -> a table in SCHEMA."""
    nf = len(FEATURE_COLUMNS)
    cols: dict[str, list[Any]] = {name: [] for name in SCHEMA.names if name not in FEATURE_COLUMNS}
    feats = np.full((len(records), nf), np.nan, dtype=np.float32)
    for i, r in enumerate(records):
        for name in cols:
            cols[name].append(getattr(r, name))
        if r.features is not None:
            if len(r.features) != nf:
                raise TelemetryError(
                    f"record has {len(r.features)} features, the schema has {nf}", where=r.device_id
                )
            feats[i] = r.features
    return table_from_columns({**cols, "features": feats})


def _upgrade(table: pa.Table) -> pa.Table:
    """An older agent's batch (no ADDED_COLUMNS) in today's SCHEMA, the added columns null."""
    missing = [n for n in SCHEMA.names if n not in table.schema.names]
    if not missing or not set(missing) <= set(ADDED_COLUMNS):
        return table
    for name in missing:
        table = table.append_column(
            SCHEMA.field(name), pa.nulls(table.num_rows, SCHEMA.field(name).type)
        )
    return table.select(SCHEMA.names)


def validate_batch(table: pa.Table, where: str = "telemetry batch") -> None:
    """Raise TelemetryError unless `table` has exactly SCHEMA's columns and types and sane rows."""
    if not table.schema.equals(SCHEMA, check_metadata=False):
        missing = [n for n in SCHEMA.names if n not in table.schema.names]
        extra = [n for n in table.schema.names if n not in SCHEMA.names]
        wrong = [
            n
            for n in SCHEMA.names
            if n in table.schema.names and table.schema.field(n).type != SCHEMA.field(n).type
        ]
        raise TelemetryError(
            f"schema mismatch: missing {missing}, unexpected {extra}, wrong type {wrong}",
            where=where,
        )
    for name in (*_STRINGS, "seq", "ts", "event"):
        if table.column(name).null_count:
            raise TelemetryError(f"column {name} has nulls", where=where)
    if table.num_rows:
        seq = table.column("seq").to_numpy()
        if np.any(np.diff(seq) <= 0):
            raise TelemetryError("seq is not strictly increasing within the batch", where=where)
        events = table.column("event").to_pylist()
        if not set(events) <= set(EVENTS):
            raise TelemetryError(f"unknown events {sorted(set(events) - set(EVENTS))}", where=where)
        if "label" in events:
            is_label = pa.array([e == "label" for e in events])
            labels = table.filter(is_label)
            if labels.column("inference_id").null_count or labels.column("label").null_count:
                raise TelemetryError("a label event without inference_id or label", where=where)


def write_batch(table: pa.Table) -> bytes:
    """A validated table -> Parquet bytes (zstd): the unit the uploader spools and sends."""
    validate_batch(table)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd", use_dictionary=True)
    return buf.getvalue()


def read_batch(data: bytes, where: str = "telemetry batch") -> pa.Table:
    """Parquet bytes (bare, or inside a device's signed frame, whose signature this does not
    check: ingestion does) -> a table, validated; TelemetryError if unreadable or off-schema."""
    if is_frame(data):
        try:
            data = open_frame(data).payload
        except IntegrityError as exc:
            raise TelemetryError(str(exc), where=where) from exc
    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowException, OSError) as exc:
        raise TelemetryError(f"not a readable Parquet batch: {exc}", where=where) from exc
    table = _upgrade(table)
    validate_batch(table, where)
    return table

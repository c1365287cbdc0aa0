from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pytest

from device.features import FEATURE_NAMES
from device.telemetry import (
    FEATURE_COLUMNS,
    SCHEMA,
    TelemetryRecord,
    read_batch,
    records_to_table,
    validate_batch,
    write_batch,
)
from edgeops.errors import TelemetryError

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _rec(seq: int, event: str = "inference", **kw) -> TelemetryRecord:
    base = dict(
        device_id="d1",
        cohort="c",
        model_name="m",
        model_version="3",
        target="tflite-f32",
        bundle_id="b" * 64,
        seq=seq,
        ts=T0,
        event=event,
    )
    if event == "inference":
        base.update(
            features=tuple(float(i) for i in range(len(FEATURE_NAMES))),
            probs=(0.1, 0.9),
            top1=1,
            confidence=0.9,
            latency_ms=1.5,
            memory_bytes=1000,
            energy_mj=0.2,
        )
    base.update(kw)
    return TelemetryRecord(**base)


def test_round_trip_keeps_values_and_nulls():
    recs = [_rec(0, label=1, thumb=b"\x00\x01"), _rec(1, "refusal", error="bad signature")]
    table = records_to_table(recs)
    assert table.schema.equals(SCHEMA)
    back = read_batch(write_batch(table))
    assert back.num_rows == 2
    assert back.column("f_brightness").to_pylist() == [0.0, None]
    assert back.column(FEATURE_COLUMNS[-1]).to_pylist()[0] == len(FEATURE_NAMES) - 1
    assert back.column("error").to_pylist() == [None, "bad signature"]
    assert back.column("label").to_pylist() == [1, None]
    assert back.column("thumb").to_pylist()[0] == b"\x00\x01"
    assert back.column("ts").to_pylist()[0] == T0
    assert np.allclose(back.column("probs").to_pylist()[0], [0.1, 0.9])


def test_naive_timestamps_are_utc():
    back = read_batch(write_batch(records_to_table([_rec(0, ts=T0.replace(tzinfo=None))])))
    assert back.column("ts").to_pylist()[0] == T0


def test_compression_is_compact():
    table = records_to_table([_rec(i) for i in range(500)])
    assert len(write_batch(table)) / 500 < 200  # bytes per record, zstd


def test_bad_batches_are_refused():
    with pytest.raises(TelemetryError, match="unknown telemetry event"):
        records_to_table([_rec(0, "party")])
    with pytest.raises(TelemetryError, match="strictly increasing"):
        write_batch(records_to_table([_rec(2), _rec(1)]))
    with pytest.raises(TelemetryError, match="features"):
        records_to_table([_rec(0, features=(1.0,))])
    table = records_to_table([_rec(0)]).drop_columns(["latency_ms"])
    with pytest.raises(TelemetryError, match="missing \\['latency_ms'\\]"):
        validate_batch(table)
    with pytest.raises(TelemetryError, match="not a readable Parquet"):
        read_batch(b"not parquet")
    other = pa.table({"x": [1]})
    with pytest.raises(TelemetryError, match="schema mismatch"):
        validate_batch(other)


def test_label_events_and_older_batches():
    """A label event names the inference it labels; an older agent's batch (no inference_id
    column) is read with the column null; a label event without its inference is refused."""
    import io

    import pyarrow.parquet as pq

    table = records_to_table([_rec(0, inference_id=41), _rec(1, "label", label=3, inference_id=41)])
    back = read_batch(write_batch(table))
    assert back.column("inference_id").to_pylist() == [41, 41]
    old = records_to_table([_rec(0)]).drop_columns(["inference_id"])
    buf = io.BytesIO()
    pq.write_table(old, buf)
    upgraded = read_batch(buf.getvalue())
    assert upgraded.schema.equals(SCHEMA) and upgraded.column("inference_id").to_pylist() == [None]
    with pytest.raises(TelemetryError, match="label event without"):
        write_batch(records_to_table([_rec(0, "label", label=3)]))

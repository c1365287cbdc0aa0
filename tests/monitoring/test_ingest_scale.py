"""The shortcuts fleet-scale ingestion takes (issue 14) against what they replace: the batch
decoder against device.telemetry.read_batch, counting buckets against np.unique, the partition
writer against a date/cohort/version filter, compaction into capped files against one file,
and a run cut into many chunks (fetched ahead, statistics merged as it goes) against one chunk."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from device.identity import DeviceIdentity, sign_batch
from device.store import open_store
from device.telemetry import SCHEMA, read_batch, records_to_table, write_batch
from edgeops.errors import TelemetryError
from monitoring.compaction import TABLE_PREFIX, compact_table_partition
from monitoring.ingest import _decode, _footer, _write_partitions, ingest
from monitoring.stats import (
    SketchCounts,
    _count,
    canonical,
    merge,
    read_stats,
    window_counts,
    window_stats,
)
from monitoring.table import read_table
from tests.monitoring.conftest import device_key, enrolled, put_batch, telemetry_records

NOW = datetime(2026, 11, 21, 12, tzinfo=UTC)
COHORTS = ["pi-fleet-eu", "pi-fleet-us"]


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEOPS_HOME", str(tmp_path / "home"))
    return open_store(str(tmp_path / "s"))


def _bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def _same_as_read_batch(payload: bytes) -> None:
    try:
        want: pa.Table | str = read_batch(payload, where="k")
    except TelemetryError as exc:
        want = str(exc)
    try:
        got: pa.Table | str = _decode(payload, _footer(payload), "k")
    except TelemetryError as exc:
        got = str(exc)
    if isinstance(want, str):
        assert got == want
    else:
        assert isinstance(got, pa.Table)
        assert got.schema.equals(want.schema, check_metadata=True) and got.equals(want)


def test_the_batch_decoder_is_read_batch() -> None:
    good = records_to_table(telemetry_records("dev-a", range(0, 12)))
    payload = write_batch(good)
    _same_as_read_batch(payload)
    _same_as_read_batch(_bytes(good.drop_columns(["inference_id"])))  # an older agent: upgraded
    _same_as_read_batch(_bytes(good.drop_columns(["label"])))  # off-schema
    _same_as_read_batch(_bytes(good.set_column(0, "device_id", good.column("confidence"))))
    _same_as_read_batch(_bytes(good.take([0, 2, 1])))  # seq not increasing
    _same_as_read_batch(_bytes(good.set_column(8, "event", pa.array(["oops"] * 12))))
    _same_as_read_batch(b"PAR1 not a batch")
    _same_as_read_batch(payload[:-40] + b"\0" * 32 + payload[-8:])  # a damaged footer
    ident = DeviceIdentity("dev-a", "pi-fleet-eu", device_key("dev-a"))
    _same_as_read_batch(sign_batch(ident, payload, 12, (0, 11)))  # a frame inside the frame


def test_counting_buckets_is_np_unique() -> None:
    rng = np.random.default_rng(0)
    for keys, bound in ((rng.integers(0, 5000, 20_000), 5000),  # counted in bins
                        (rng.integers(0, 3, 10), 1 << 24),  # too sparse: np.unique
                        (rng.integers(-5, 50, 100), 64),  # out of range: np.unique
                        (np.zeros(0, np.int64), 16)):
        got, want = _count(keys, bound), np.unique(keys, return_counts=True)
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
        assert got[0].dtype == want[0].dtype


def _old_write_partitions(table: pa.Table) -> dict[tuple[str, str, str], pa.Table]:
    """The writer before issue 14's: a mask per (date string, cohort, model_version)."""
    dates = pc.strftime(table.column("ts"), format="%Y-%m-%d").to_numpy(zero_copy_only=False)
    coh = table.column("cohort").to_numpy(zero_copy_only=False)
    ver = table.column("model_version").to_numpy(zero_copy_only=False)
    out = {}
    for g in sorted(set(zip(dates, coh, ver, strict=True))):
        mask = (dates == g[0]) & (coh == g[1]) & (ver == g[2])
        out[g] = table.filter(pa.array(mask))
    return out


def test_partitions_hold_the_rows_of_their_date_cohort_and_version(store) -> None:
    parts = [records_to_table(telemetry_records("dev-a", range(0, 30), start="2026-11-20T23:45:00Z")),
             records_to_table(telemetry_records("dev-b", range(0, 10), model_version="2",
                                                start="2026-11-20T23:55:00Z")),
             records_to_table(telemetry_records("dev-c", range(0, 5), cohort="pi-fleet-us",
                                                start="1969-12-31T23:58:00Z"))]
    table = pa.concat_tables(parts).take(np.random.default_rng(1).permutation(45))
    keys = _write_partitions(store, [table], "run")
    want = _old_write_partitions(table)
    assert len(keys) == len(want) == 6  # each device's rows cross midnight (one 1969's)
    for (date, cohort, version), rows in want.items():
        key = f"{TABLE_PREFIX}date={date}/cohort={cohort}/model_version={version}/part-run.parquet"
        got = pq.read_table(io.BytesIO(store.get(key)))
        assert got.schema.equals(SCHEMA) and got.equals(rows), key


def test_compaction_into_capped_files_keeps_every_row_in_order(store) -> None:
    folder = f"{TABLE_PREFIX}date=2026-11-20/cohort=pi-fleet-eu/model_version=1"
    tables = [records_to_table(telemetry_records(f"dev-{i}", range(0, n)))
              for i, n in enumerate((7, 0, 13, 5, 10))]
    files = []
    for i, t in enumerate(tables):
        files.append(f"{folder}/part-{i}.parquet")
        store.put(files[-1], _bytes(t))
    first = compact_table_partition(store, folder, files, max_rows=10)
    out = sorted(store.list(folder + "/"), key=lambda k: (k != first, k))
    assert out[0] == first and out[1].endswith("-001.parquet") and len(out) == 4  # 35 rows
    got = [pq.read_table(io.BytesIO(store.get(k))) for k in out]
    assert [t.num_rows for t in got] == [10, 10, 10, 5]
    assert pa.concat_tables(got).equals(pa.concat_tables(tables))
    # under the cap: one file, as before
    store.put(f"{folder}/part-x.parquet", _bytes(tables[0]))
    store.put(f"{folder}/part-y.parquet", _bytes(tables[3]))
    one = compact_table_partition(store, folder, [f"{folder}/part-x.parquet", f"{folder}/part-y.parquet"])
    assert pq.read_table(io.BytesIO(store.get(one))).equals(pa.concat_tables([tables[0], tables[3]]))


def test_a_run_in_many_chunks_stores_what_one_chunk_does(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("EDGEOPS_HOME", str(tmp_path / "home"))
    stores = [open_store(str(tmp_path / n)) for n in ("one", "many")]
    for s in stores:
        for d in range(6):
            for lo in range(0, 40, 10):
                put_batch(s, telemetry_records(f"dev-{d}", range(lo, lo + 10), rng=np.random.default_rng(d * 100 + lo)))
        put_batch(s, telemetry_records("dev-0", range(5, 15), rng=np.random.default_rng(5)),  # duplicates
                  key="telemetry/raw/pi-fleet-eu/dev-0/000000000005-retry.tlm")
        recs = telemetry_records("dev-9", range(0, 4), confidence=1.5)  # quarantined
        put_batch(s, recs)
    one = ingest(stores[0], COHORTS, devices=enrolled(), now=NOW, suite_sample_rows=0, chunk_batches=500)
    many = ingest(stores[1], COHORTS, devices=enrolled(), now=NOW, suite_sample_rows=0, chunk_batches=2)
    keys = ("received_batches", "quarantined_batches", "received_rows", "stored_rows",
            "quarantined_rows", "duplicate_rows")
    assert {k: getattr(one, k) for k in keys} == {k: getattr(many, k) for k in keys}
    assert one.reconciles and many.reconciles and many.duplicate_rows == 10
    ta, tb = (read_table(s).drop(columns=["probs"]) for s in stores)
    assert len(ta) == 240 and ta.equals(tb)
    for kind in ("moments", "sketches"):
        a, b = (canonical(read_stats(s, kind)) for s in stores)
        floats = [c for c in a.columns if a.schema[c] == pl.Float64]
        assert a.drop(floats).equals(b.drop(floats))
        for c in floats:
            assert a[c].to_numpy() == pytest.approx(b[c].to_numpy(), rel=1e-9)


def test_sketch_counts_merged_across_chunks_equal_merged_frames() -> None:
    rng = np.random.default_rng(2)
    parts = [records_to_table(telemetry_records("dev-a", range(0, 90), rng=rng)),  # 2 hours
             records_to_table(telemetry_records("dev-b", range(0, 40), model_version="2", rng=rng,
                                                start="2026-11-20T11:30:00Z")),
             records_to_table(telemetry_records("dev-a", range(90, 150), rng=rng,
                                                start="2026-11-20T11:30:00Z"))]
    acc = SketchCounts()
    for t in parts:  # scopes come in a different order in each part
        acc.merge(window_counts(t)[1])
    acc._compact()
    want = merge([window_stats(t)[1] for t in parts])
    whole = window_stats(pa.concat_tables(parts))[1]
    assert canonical(acc.frame()).equals(canonical(want))
    assert canonical(acc.frame()).equals(canonical(whole))
    assert acc.frame().schema == whole.schema
    assert SketchCounts().frame().is_empty()

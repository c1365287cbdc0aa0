"""The columnar, incremental ingestion path against the row-wise one of issue 12: the same rows
stored, the same batches and rows quarantined, duplicates counted alike; history never re-read;
compaction keeps every row; window statistics merged from runs equal those of all rows."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from device.store import open_store
from monitoring.compaction import TABLE_PREFIX, compact_before
from monitoring.ingest import QUARANTINE_PREFIX, RAW_PREFIX, ingest
from monitoring.ingest_rowwise import ingest_rowwise
from monitoring.seen import SeenLedger
from monitoring.stats import canonical, merge, quantiles, read_stats, window_stats
from monitoring.table import read_table
from tests.monitoring.conftest import enrolled, put_batch, telemetry_records

NOW = datetime(2026, 11, 21, 12, tzinfo=UTC)
TODAY = "2026-11-21T08:00:00Z"  # rows of NOW's day: compacted only once the day is over
COHORTS = ["pi-fleet-eu", "pi-fleet-us"]


class CountingStore:
    """A store that counts GETs per key (to prove what a run reads)."""

    def __init__(self, inner) -> None:
        self.inner, self.gets = inner, []
        self.url = inner.url

    def get(self, key):
        self.gets.append(key)
        return self.inner.get(key)

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest.fixture
def stores(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEOPS_HOME", str(tmp_path / "home"))
    return open_store(str(tmp_path / "a")), open_store(str(tmp_path / "b"))


def _replace(rec, **kw):
    return rec.__class__(**{**rec.__dict__, **kw})


def _round1(s) -> None:
    put_batch(s, telemetry_records("dev-a", range(0, 20)))
    put_batch(s, telemetry_records("dev-b", range(5, 15), model_version="2"))
    put_batch(s, telemetry_records("dev-a", range(15, 25)),  # 5 rows overlap: duplicates
              key="telemetry/raw/pi-fleet-eu/dev-a/000000000015-retry.tlm")
    s.put("telemetry/raw/pi-fleet-eu/dev-c/000000000001.parquet", b"PAR1 not a batch")
    put_batch(s, telemetry_records("dev-d", range(0, 6), confidence=1.7))  # every row bad
    put_batch(s, telemetry_records("dev-e", range(0, 4), cohort="mars-base"))  # suite: cohort
    put_batch(s, telemetry_records("dev-f", range(0, 5), latency_ms=-3.0))  # suite: latency
    recs = telemetry_records("dev-v", range(0, 8))  # bad rows in a good batch
    recs[1] = _replace(recs[1], latency_ms=float("nan"))
    recs[3] = _replace(recs[3], ts=datetime(9999, 1, 1, tzinfo=UTC))
    recs[5] = _replace(recs[5], top1=12)
    put_batch(s, recs)
    put_batch(s, telemetry_records("mallory", range(0, 3)))
    put_batch(s, telemetry_records("victim", range(0, 10)), signer="mallory")  # speaks for another


def _round2(s) -> None:
    put_batch(s, telemetry_records("dev-a", range(20, 40), start="2026-11-21T00:10:00Z"))
    put_batch(s, telemetry_records("dev-b", range(14, 17), model_version="2"))  # one duplicate


def _same_state(a, b, ra, rb) -> None:
    keys = ("received_batches", "ingested_batches", "quarantined_batches", "received_rows",
            "stored_rows", "quarantined_rows", "duplicate_rows", "skipped_batches")
    assert {k: getattr(ra, k) for k in keys} == {k: getattr(rb, k) for k in keys}
    assert ra.reconciles and rb.reconciles
    assert sorted(k for k, _ in ra.quarantined) == sorted(k for k, _ in rb.quarantined)
    assert a.list(QUARANTINE_PREFIX) == b.list(QUARANTINE_PREFIX)
    for key in a.list(QUARANTINE_PREFIX):
        if key.endswith(".rows.parquet"):
            qa, qb = (pq.read_table(io.BytesIO(s.get(key))) for s in (a, b))
            flat = [c for c in qa.column_names if c not in ("probs", "thumb")]
            assert qa.select(flat).to_pandas().equals(qb.select(flat).to_pandas()), key
            assert qa.column("probs").to_pylist() == qb.column("probs").to_pylist()
        elif not key.endswith(".reason.txt"):
            assert a.get(key) == b.get(key)
    ta = read_table(a).drop(columns=["probs"])
    tb = read_table(b).drop(columns=["probs"])
    assert len(ta) and ta.equals(tb)


def test_columnar_path_stores_exactly_what_the_row_wise_path_did(stores) -> None:
    a, b = stores
    for fill in (_round1, _round2):
        fill(a)
        for key in a.list(RAW_PREFIX):
            if not b.exists(key):
                b.put(key, a.get(key))
        ra = ingest(a, COHORTS, ["1", "2"], devices=enrolled(), now=NOW, suite_sample_rows=200)
        rb = ingest_rowwise(b, COHORTS, ["1", "2"], devices=enrolled(), now=NOW)
        _same_state(a, b, ra, rb)
        assert ra.suite_rows > 0 and ra.suite_failures == ()  # the reviewer's suite agrees
    assert (ra.stored_rows, ra.duplicate_rows) == (17, 6)  # dev-a 20-24 and dev-b 14 again


def test_a_second_run_reads_no_old_batch_and_compaction_keeps_every_row(stores) -> None:
    a, _ = stores
    for d in range(4):
        put_batch(a, telemetry_records(f"dev-{d}", range(0, 30), start=TODAY))
    counting = CountingStore(a)
    first = ingest(counting, COHORTS, devices=enrolled(), now=NOW, suite_sample_rows=0,
                   chunk_batches=2)
    assert first.read_batches == 4 and first.stored_rows == 120
    counting.gets.clear()
    again = ingest(counting, COHORTS, devices=enrolled(), now=NOW, suite_sample_rows=0)
    assert again.received_batches == 0 and again.skipped_batches == 4
    assert not [k for k in counting.gets if k.startswith(RAW_PREFIX)]
    put_batch(a, telemetry_records("dev-0", range(30, 40), start=TODAY))
    counting.gets.clear()
    third = ingest(counting, COHORTS, devices=enrolled(), now=NOW, suite_sample_rows=0)
    assert third.stored_rows == 10
    assert [k for k in counting.gets if k.startswith(RAW_PREFIX)] == [
        k for k in a.list(RAW_PREFIX + "pi-fleet-eu/dev-0/") if "000000000030" in k]
    # several small files per partition; the day after, one file, every row kept
    before = read_table(a)
    parts = [k for k in a.list(TABLE_PREFIX) if k.endswith(".parquet")]
    assert len(parts) > 2
    moments_before = read_stats(a, "moments")
    merged = compact_before(a, datetime(2026, 11, 22, 1, tzinfo=UTC), SeenLedger.load(a, "pi-fleet-eu"))
    assert merged >= len(parts)  # table parts, and the stats and manifests of the day
    assert len([k for k in a.list(TABLE_PREFIX) if k.endswith(".parquet")]) == 1
    rows = sum(pq.read_metadata(io.BytesIO(a.get(k))).num_rows for k in a.list(TABLE_PREFIX))
    assert rows == 130
    after = read_table(a)
    assert before.drop(columns=["probs"]).equals(after.drop(columns=["probs"]))
    assert canonical(read_stats(a, "moments")).equals(canonical(moments_before))


def test_window_statistics_merged_from_runs_equal_those_of_all_rows(stores) -> None:
    a, _ = stores
    rng = np.random.default_rng(3)
    frozen = rng.random(33)
    feats = np.vstack([rng.random((25, 33)), np.tile(frozen, (15, 1))])  # a camera freezes
    recs = telemetry_records("dev-z", range(0, 40), features=feats, rng=rng)
    others = telemetry_records("dev-y", range(0, 40), rng=rng, model_version="2")
    for lo, hi in ((0, 12), (12, 30), (30, 40)):  # three runs; the freeze spans two of them
        put_batch(a, recs[lo:hi])
        put_batch(a, others[lo:hi])
        ingest(a, COHORTS, devices=enrolled(), now=NOW, suite_sample_rows=0)
    moments, sketches = canonical(read_stats(a, "moments")), canonical(read_stats(a, "sketches"))
    whole = pl.from_pandas(read_table(a).drop(columns=["probs", "thumb"]))
    m_all, s_all, _ = window_stats(pl.from_arrow(
        pq.read_table(io.BytesIO(_concat_table(a)))))
    m_all, s_all = canonical(m_all), canonical(s_all)
    assert moments.drop(["conf_sum", "conf_sumsq", "latency_sum"]).equals(
        m_all.drop(["conf_sum", "conf_sumsq", "latency_sum"]))
    for c in ("conf_sum", "conf_sumsq", "latency_sum"):
        assert moments[c].to_numpy() == pytest.approx(m_all[c].to_numpy(), rel=1e-9)
    assert sketches.equals(s_all)
    assert int(moments.filter(pl.col("device_id") == "dev-z")["repeated"].sum()) == 14
    assert int(moments.filter(pl.col("device_id") == "dev-y")["repeated"].sum()) == 0
    assert int(moments["rows"].sum()) == len(whole) == 80
    conf = whole["confidence"].to_numpy()
    q = quantiles(sketches, "confidence", [0.5])[0]
    assert abs(q - np.quantile(conf, 0.5)) <= 0.03 * np.quantile(conf, 0.5) + 0.02
    assert merge([moments, moments])["rows"].sum() == 160


def _concat_table(store) -> bytes:
    import pyarrow as pa

    tables = [pq.read_table(io.BytesIO(store.get(k))) for k in store.list(TABLE_PREFIX)]
    buf = io.BytesIO()
    pq.write_table(pa.concat_tables(tables), buf)
    return buf.getvalue()

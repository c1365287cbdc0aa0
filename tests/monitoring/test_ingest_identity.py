"""Telemetry identity and ingestion availability: one device cannot speak for another, one bad
batch cannot stop a run, and received = stored + quarantined + duplicates always."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow.parquet as pq
import pytest

from device.identity import DeviceIdentity, sign_batch
from device.store import open_store
from device.telemetry import records_to_table
from edgeops.params import IngestParams
from monitoring.ingest import QUARANTINE_PREFIX, ingest
from monitoring.ledger import Ledger
from monitoring.seen import SEEN_PREFIX, SeenLedger
from monitoring.table import read_table
from tests.monitoring.conftest import device_key, enrolled, put_batch, telemetry_records

NOW = datetime(2026, 11, 21, 12, tzinfo=UTC)


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEOPS_HOME", str(tmp_path / "home"))
    return open_store(str(tmp_path / "store"))


def _ingest(store, **kw):
    rep = ingest(store, ["pi-fleet-eu", "pi-fleet-us"], devices=enrolled(), now=NOW, **kw)
    assert rep.reconciles, rep
    return rep


def _ranges(led: SeenLedger, device: str) -> list[list[int]]:
    r = led.ranges.filter(led.ranges["device"] == device).sort("lo")
    return [[lo, hi] for lo, hi in zip(r["lo"].to_list(), r["hi"].to_list(), strict=True)]


def _sign_raw(store, device: str, payload: bytes, rows: int, seqs: tuple[int, int], name: str):
    ident = DeviceIdentity(device, "pi-fleet-eu", device_key(device))
    key = f"telemetry/raw/pi-fleet-eu/{device}/{name}.tlm"
    store.put(key, sign_batch(ident, payload, rows, seqs))
    return key


def test_spoofed_device_and_cohort_are_quarantined_and_the_victim_survives(store) -> None:
    put_batch(store, telemetry_records("mallory", range(0, 3)))  # enrols mallory
    # mallory pre-claims the victim's sequence numbers, under its own signature
    spoof = put_batch(store, telemetry_records("victim", range(0, 200)), signer="mallory")
    cohort = put_batch(
        store, telemetry_records("mallory", range(3, 8), cohort="pi-fleet-us"), enrol=False
    )
    # an unsigned copy and a frame naming the victim but signed with mallory's key
    store.put("telemetry/raw/pi-fleet-eu/victim/000000000000.parquet", b"PAR1 unsigned")
    forged = DeviceIdentity("victim", "pi-fleet-eu", device_key("mallory"))
    body = sign_batch(forged, b"x", 1, (0, 0))
    store.put("telemetry/raw/pi-fleet-eu/victim/forged.tlm", body)
    first = _ingest(store)
    reasons = dict(first.quarantined)
    assert "another device" in reasons[spoof] and "200 rows" in reasons[spoof]
    assert "enrolled in 'pi-fleet-eu'" in reasons[cohort]
    assert "not enrolled" in reasons["telemetry/raw/pi-fleet-eu/victim/forged.tlm"]
    assert "unsigned" in reasons["telemetry/raw/pi-fleet-eu/victim/000000000000.parquet"]
    assert (first.stored_rows, first.quarantined_rows) == (3, 206)
    # the victim enrols and uploads its 200 genuine rows: none is a "duplicate"
    put_batch(store, telemetry_records("victim", range(0, 200)))
    second = _ingest(store)
    assert (second.stored_rows, second.duplicate_rows, second.quarantined_rows) == (200, 0, 0)
    # a frame naming the enrolled victim, signed by mallory, is refused by key id
    store.put("telemetry/raw/pi-fleet-eu/victim/forged2.tlm", sign_batch(forged, b"x", 1, (0, 0)))
    third = _ingest(store)
    assert (
        "enrolled with" in dict(third.quarantined)["telemetry/raw/pi-fleet-eu/victim/forged2.tlm"]
    )
    table = read_table(store, cohort="pi-fleet-eu")
    assert (table["device_id"] == "victim").sum() == 200
    assert store.get(QUARANTINE_PREFIX + spoof.removeprefix("telemetry/raw/")) == store.get(spoof)


def test_replayed_batches_are_duplicates_per_device(store) -> None:
    recs = telemetry_records("dev-a", range(0, 10))
    key = put_batch(store, recs)
    put_batch(store, telemetry_records("dev-b", range(0, 10)))  # same seqs, another device
    first = _ingest(store)
    assert (first.stored_rows, first.duplicate_rows) == (20, 0)
    store.put(key.replace(".tlm", "-replay.tlm"), store.get(key))  # replayed under a new name
    again = _ingest(store)
    assert (again.received_rows, again.stored_rows, again.duplicate_rows) == (10, 0, 10)
    assert again.skipped_batches == 2


def test_poisoned_batches_are_quarantined_and_the_rest_stored(store) -> None:
    good = put_batch(store, telemetry_records("dev-g", range(0, 5)))
    # invalid UTF-8 inside a validly signed Parquet batch
    t = records_to_table(telemetry_records("dev-u", range(0, 5)))
    buf = io.BytesIO()
    pq.write_table(t, buf, compression="none", use_dictionary=False)
    # the length-prefixed values only (the column name inference_id stays readable)
    bad_utf8 = buf.getvalue().replace(b"\x09\x00\x00\x00inference", b"\x09\x00\x00\x00\xff\xfeference")
    put_batch(store, telemetry_records("dev-u", range(100, 101)))  # enrols dev-u
    utf8 = _sign_raw(store, "dev-u", bad_utf8, 5, (0, 4), "utf8")
    big = put_batch(store, telemetry_records("dev-big", range(0, 60)))
    rep = _ingest(store, params=IngestParams(max_batch_rows=50))
    reasons = dict(rep.quarantined)
    assert "UnicodeDecodeError" in reasons[utf8]
    assert "over the limit 50" in reasons[big]
    assert good not in reasons and rep.stored_rows == 6  # dev-g's 5 and dev-u's genuine one
    assert (rep.quarantined_batches, rep.quarantined_rows) == (2, 5)  # rows over the limit: unread
    assert store.exists(QUARANTINE_PREFIX + utf8.removeprefix("telemetry/raw/") + ".reason.txt")
    small = put_batch(store, telemetry_records("dev-s", range(0, 40)))
    rep2 = _ingest(store, params=IngestParams(max_batch_bytes=2048))
    assert "bytes, over the limit 2048" in dict(rep2.quarantined)[small]


def test_bad_values_and_timestamps_are_quarantined_row_by_row(store) -> None:
    recs = telemetry_records("dev-v", range(0, 8))
    recs[1] = recs[1].__class__(**{**recs[1].__dict__, "latency_ms": float("nan")})
    recs[2] = recs[2].__class__(**{**recs[2].__dict__, "ts": datetime(1, 1, 2, tzinfo=UTC)})
    recs[3] = recs[3].__class__(**{**recs[3].__dict__, "ts": datetime(9999, 1, 1, tzinfo=UTC)})
    probs = list(recs[4].probs)
    probs[0] = 1.5
    recs[4] = recs[4].__class__(**{**recs[4].__dict__, "probs": tuple(probs)})
    recs[5] = recs[5].__class__(**{**recs[5].__dict__, "top1": 12})
    feats = list(recs[6].features)
    feats[3] = float("inf")
    recs[6] = recs[6].__class__(**{**recs[6].__dict__, "features": tuple(feats)})
    key = put_batch(store, recs)
    rep = _ingest(store)
    assert (rep.stored_rows, rep.quarantined_rows, rep.quarantined_batches) == (2, 6, 0)
    rows = pq.read_table(
        io.BytesIO(
            store.get(QUARANTINE_PREFIX + key.removeprefix("telemetry/raw/") + ".rows.parquet")
        )
    ).to_pydict()
    assert rows["seq"] == [1, 2, 3, 4, 5, 6]
    assert rows["reason"][0] == "non-finite latency_ms"
    assert rows["reason"][1] == rows["reason"][2] == "timestamp outside the sane window"
    assert "probabilities" in rows["reason"][3] and rows["reason"][4] == "impossible class in top1"
    assert "non-finite f_" in rows["reason"][5]
    assert sorted(read_table(store)["seq"]) == [0, 7]
    assert not any("date=0001" in k or "date=9999" in k for k in store.list("telemetry/table/"))


def test_ledger_stays_bounded_and_compacts(store) -> None:
    for i in range(5):
        put_batch(store, telemetry_records("dev-l", range(i * 10, i * 10 + 10)))
    put_batch(store, telemetry_records("dev-l", range(100, 103)))  # a gap
    _ingest(store)
    led = SeenLedger.load(store, "pi-fleet-eu")
    assert _ranges(led, "dev-l") == [[0, 49], [100, 102]] and len(led.handled) == 6
    assert store.list(SEEN_PREFIX) and not store.exists("telemetry/ledger.json")
    # many gaps from one device fold into at most max_ranges ranges
    small = Ledger(max_ranges=3)
    for s in range(0, 40, 2):
        small.fresh("d", np.array([s]))
    assert len(small.seqs["d"]) == 3 and not small.fresh("d", np.array([4])).any()
    # past retention, handled raw batches and their keys are gone; seq ranges stay
    put_batch(store, telemetry_records("dev-l", range(103, 105)))
    later = ingest(
        store,
        devices=enrolled(),
        now=NOW + timedelta(days=31),
        params=IngestParams(max_age_days=60),
    )
    assert later.compacted_batches == 6 and later.stored_rows == 2
    assert len(store.list("telemetry/raw/pi-fleet-eu/dev-l/")) == 1
    assert _ranges(SeenLedger.load(store, "pi-fleet-eu"), "dev-l") == [[0, 49], [100, 104]]


def test_a_batch_under_another_devices_prefix_and_the_legacy_ledger(store) -> None:
    import json as _json

    # the earlier JSON ledger: dev-j delivered seqs 0-4 already
    store.put(
        "telemetry/ledger.json",
        _json.dumps({"batches": ["old"], "seqs": {"dev-j": [0, 1, 2, 3, 4]}}).encode(),
    )
    put_batch(store, telemetry_records("dev-j", range(0, 8)))
    moved = put_batch(
        store,
        telemetry_records("dev-j", range(8, 10)),
        key="telemetry/raw/pi-fleet-eu/victim/000000000008-000000000009-x.tlm",
    )
    rep = _ingest(store)
    assert (rep.stored_rows, rep.duplicate_rows) == (3, 5)
    assert "stored under pi-fleet-eu/victim/" in dict(rep.quarantined)[moved]
    assert _ranges(SeenLedger.load(store, "pi-fleet-eu"), "dev-j") == [[0, 7]]


def test_known_versions_from_the_channel_targets(store) -> None:
    from monitoring.ingest import known_versions

    assert known_versions(store) is None
    meta = b'{"_type":"edgeops/bundle","model_version":"7"}'
    store.put("tuf/targets/bundles/abc/" + "0" * 64 + ".metadata.json", meta)
    store.put("bundles/old/metadata.json", b'{"signed":{"model_version":"2"}}')
    store.put("tuf/targets/bundles/abc/" + "1" * 64 + ".model.tflite", b"x")
    assert known_versions(store) == ["2", "7"]

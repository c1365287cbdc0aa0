"""Ingestion: GE validation, quarantine with reasons, de-duplication, ledger, reconciliation."""

from __future__ import annotations

import pandas as pd

from device.store import open_store
from monitoring.ingest import QUARANTINE_PREFIX, ingest
from monitoring.seen import SEEN_PREFIX
from monitoring.table import list_partitions, read_table
from tests.monitoring.conftest import enrolled, put_batch, telemetry_records


def _scenario(store) -> dict[str, str]:
    keys = {
        "a1": put_batch(store, telemetry_records("dev-a", range(0, 20))),
        "a2": put_batch(
            store, telemetry_records("dev-a", range(20, 30), start="2026-11-21T00:10:00Z")
        ),
        "b1": put_batch(store, telemetry_records("dev-b", range(5, 15), model_version="2")),
    }
    # the same 10 rows of dev-a re-uploaded under another key (a retry with a new name)
    keys["dup"] = put_batch(
        store,
        telemetry_records("dev-a", range(20, 30), start="2026-11-21T00:10:00Z"),
        key="telemetry/raw/pi-fleet-eu/dev-a/000000000099.parquet",
    )
    keys["garbage"] = "telemetry/raw/pi-fleet-eu/dev-c/000000000001.parquet"
    store.put(keys["garbage"], b"PAR1 this is not parquet")
    keys["range"] = put_batch(store, telemetry_records("dev-d", range(0, 7), confidence=1.7))
    keys["cohort"] = put_batch(store, telemetry_records("dev-e", range(0, 4), cohort="mars-base"))
    return keys


def _check(store) -> None:
    keys = _scenario(store)
    rep = ingest(store, ["pi-fleet-eu"], ["1", "2"], devices=enrolled())
    assert rep.reconciles
    assert (rep.received_batches, rep.ingested_batches, rep.quarantined_batches) == (7, 4, 3)
    assert (rep.received_rows, rep.stored_rows, rep.duplicate_rows, rep.quarantined_rows) == (
        61,
        40,
        10,
        11,
    )
    reasons = dict(rep.quarantined)
    assert "unsigned batch" in reasons[keys["garbage"]]
    assert "confidence outside [0, 1]" in reasons[keys["range"]]
    assert "cohort" in reasons[keys["cohort"]] and "mars-base" in reasons[keys["cohort"]]
    for k in (keys["garbage"], keys["range"], keys["cohort"]):
        rel = k.removeprefix("telemetry/raw/")
        assert store.get(QUARANTINE_PREFIX + rel) == store.get(k)  # kept byte for byte
        assert store.get(QUARANTINE_PREFIX + rel + ".reason.txt").decode().strip() == reasons[k]
    parts = list_partitions(store)
    assert {(p["date"], p["cohort"], p["model_version"]) for p in parts} == {
        ("2026-11-20", "pi-fleet-eu", "1"),
        ("2026-11-21", "pi-fleet-eu", "1"),
        ("2026-11-20", "pi-fleet-eu", "2"),
    }
    table = read_table(store, cohort="pi-fleet-eu", model_version="1")
    assert len(table) == 30 and table["seq"].tolist() == list(range(30))
    assert len(read_table(store, model_version="2")) == 10
    day = read_table(store, start=pd.Timestamp("2026-11-21", tz="UTC"))
    assert len(day) == 10
    # a re-run ingests nothing; a new batch with one known row counts it as a duplicate
    again = ingest(store, known_cohorts=["pi-fleet-eu"], devices=enrolled())
    assert (again.received_batches, again.skipped_batches, again.stored_rows) == (0, 7, 0)
    put_batch(store, telemetry_records("dev-b", range(14, 17), model_version="2"))
    third = ingest(store, known_cohorts=["pi-fleet-eu"], devices=enrolled())
    assert (third.received_rows, third.stored_rows, third.duplicate_rows) == (
        3,
        2,
        1,
    ) and third.reconciles
    assert len(read_table(store, model_version="2")) == 12
    assert store.list(SEEN_PREFIX)  # the partitioned ledger


def test_ingest_local_store(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("EDGEOPS_HOME", str(tmp_path / "home"))
    _check(open_store(str(tmp_path / "store")))


def test_ingest_s3_moto(s3_env, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("EDGEOPS_HOME", str(tmp_path / "home"))
    _check(open_store(s3_env["EDGEOPS_STORE_URL"], endpoint_url=s3_env["AWS_ENDPOINT_URL"]))

"""`edgeops monitor ingest/status` through typer's runner on a local store."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from device.store import open_store
from edgeops.cli.monitor import monitor_app
from tests.monitoring.conftest import put_batch, telemetry_records


def test_ingest_and_status_json(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("EDGEOPS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("EDGEOPS_DEVICES", str(tmp_path / "missing.yaml"))
    store = open_store(str(tmp_path / "home" / "store"))
    put_batch(store, telemetry_records("d1", range(5)))
    store.put("telemetry/raw/pi-fleet-eu/d2/000000000000.parquet", b"junk")
    runner = CliRunner()
    out = runner.invoke(monitor_app, ["ingest", "--json"])
    assert out.exit_code == 0, out.output
    rep = json.loads(out.output)
    assert (rep["stored_rows"], rep["quarantined_batches"], rep["reconciles"]) == (5, 1, True)
    status = json.loads(runner.invoke(monitor_app, ["status", "--json"]).output)
    assert status["quarantined"] == ["telemetry/quarantine/pi-fleet-eu/d2/000000000000.parquet"]
    assert status["partitions"] == [
        {"cohort": "pi-fleet-eu", "date": "2026-11-20", "model_version": "1"}
    ]
    table = runner.invoke(monitor_app, ["status"])
    assert table.exit_code == 0 and "pi-fleet-eu" in table.output

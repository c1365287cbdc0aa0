"""Gates: known arm statistics from telemetry, and the controller's verdict on them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from device.store import open_store
from monitoring.gates import arm_stats, gate_from_store, gate_result
from monitoring.ingest import ingest
from registry.controller import GateThresholds, evaluate_gate
from tests.monitoring.conftest import put_batch, telemetry_records


def _rows(
    bundle: str, n: int, latency: float, top1: int, conf: float, errors: int = 0
) -> pd.DataFrame:
    ev = ["error"] * errors + ["inference"] * (n - errors)
    return pd.DataFrame(
        {
            "bundle_id": bundle,
            "event": ev,
            "top1": pd.array([None] * errors + [top1] * (n - errors), dtype="Int32"),
            "confidence": [np.nan] * errors + [conf] * (n - errors),
            "latency_ms": [np.nan] * errors + list(np.linspace(1, latency, n - errors)),
            "label": pd.array(
                [None] * errors + [top1] * 10 + [None] * (n - errors - 10), dtype="Int32"
            ),
        }
    )


def test_arm_stats_known_values() -> None:
    s = arm_stats(_rows("s", 101, 100.0, 3, 0.9, errors=0), 10)
    assert s.count == 101 and s.error_rate == 0.0
    assert s.p95_latency_ms == pytest.approx(np.percentile(np.linspace(1, 100, 101), 95))
    assert s.mean_confidence == pytest.approx(0.9)
    assert s.prediction_hist[3] == 1.0 and sum(s.prediction_hist) == pytest.approx(1.0)
    assert (s.labelled, s.accuracy) == (10, 1.0)


def test_bad_canary_fails_the_controller_checks() -> None:
    tel = pd.concat(
        [_rows("stable", 200, 10.0, 1, 0.9), _rows("canary", 100, 40.0, 2, 0.6, errors=10)]
    )
    gate = gate_result(tel, "canary", "stable")
    assert gate.canary.error_rate == pytest.approx(0.1) and gate.stable.error_rate == 0.0
    failed = {c.name for c in evaluate_gate(gate, GateThresholds()) if not c.passed}
    assert {"error_rate", "confidence_drop", "p95_latency_ratio", "prediction_shift"} <= failed
    same = gate_result(
        pd.concat([_rows("stable", 200, 10.0, 1, 0.9), _rows("canary", 100, 10.0, 1, 0.9)]),
        "canary",
        "stable",
    )
    assert all(c.passed for c in evaluate_gate(same, GateThresholds()))


def test_gate_from_the_ingested_table(tmp_path) -> None:
    store = open_store(str(tmp_path / "s"))
    put_batch(store, telemetry_records("d1", range(0, 30), bundle_id="stable-b"))
    put_batch(store, telemetry_records("d2", range(0, 20), bundle_id="canary-b", latency_ms=50.0))
    assert ingest(store).reconciles
    gate = gate_from_store(
        store,
        "pi-fleet-eu",
        "canary-b",
        "stable-b",
        pd.Timestamp("2026-11-20", tz="UTC"),
        pd.Timestamp("2026-11-21", tz="UTC"),
    )
    assert (gate.canary.count, gate.stable.count) == (20, 30)
    assert gate.canary.p95_latency_ms == pytest.approx(
        50.0
    ) and gate.stable.p95_latency_ms == pytest.approx(5.0)

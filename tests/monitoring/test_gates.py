"""Gates: known arm statistics from telemetry, and the controller's verdict on them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from device.store import open_store
from monitoring.gates import arm_stats, gate_from_store, gate_result
from monitoring.ingest import ingest
from registry.controller import GateThresholds, evaluate_gate
from tests.monitoring.conftest import enrolled, put_batch, telemetry_records


def _rows(
    bundle: str, n: int, latency: float, top1: int, conf: float, errors: int = 0, devices: int = 10
) -> pd.DataFrame:
    """n rows from `devices` devices in equal blocks (the errors first: in the first device(s))."""
    ev = ["error"] * errors + ["inference"] * (n - errors)
    return pd.DataFrame(
        {
            "device_id": [f"{bundle}-{i * devices // n}" for i in range(n)],
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
    s = arm_stats(_rows("s", 101, 100.0, 3, 0.9, errors=0, devices=1), 10)
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


def test_gate_from_the_ingested_table(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("EDGEOPS_HOME", str(tmp_path / "home"))
    store = open_store(str(tmp_path / "s"))
    put_batch(store, telemetry_records("d1", range(0, 30), bundle_id="stable-b"))
    put_batch(store, telemetry_records("d2", range(0, 20), bundle_id="canary-b", latency_ms=50.0))
    assert ingest(store, devices=enrolled()).reconciles
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


def test_devices_weigh_the_same_and_only_canary_members_count() -> None:
    """200 forged refusals from one device: one failing device, and none if the salt keeps
    that device out of the canary; rows-based counting would have rolled back."""
    from device.protocol import in_canary

    salt, pct = "pi-fleet-eu-rollout-3", 50.0
    ids = [f"dev-{i:03d}" for i in range(200)]
    inside = [d for d in ids if in_canary(pct, d, salt)]
    outside = [d for d in ids if not in_canary(pct, d, salt)]
    assert len(inside) > 70 and len(outside) > 70

    def arm(bundle: str, devices: list[str], per: int = 5) -> pd.DataFrame:
        n = len(devices) * per
        df = _rows(bundle, n, 10.0, 1, 0.9, devices=len(devices))
        df["device_id"] = [devices[i * len(devices) // n] for i in range(n)]
        return df

    def forged(device: str) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "device_id": device,
                "bundle_id": "canary",
                "event": ["refusal"] * 200,
                "top1": pd.array([None] * 200, dtype="Int32"),
                "confidence": np.nan,
                "latency_ms": np.nan,
                "label": pd.array([None] * 200, dtype="Int32"),
            }
        )

    honest = pd.concat([arm("canary", inside[:60]), arm("stable", outside[:60])])
    for mallory in (outside[65], inside[65]):
        tel = pd.concat([honest, forged(mallory)])
        by_rows = arm_stats(tel[tel["bundle_id"] == "canary"], 10)
        assert by_rows.count == 500 and by_rows.devices == 61
        gate = gate_result(tel, "canary", "stable", percentage=pct, salt=salt)
        checks = {c.name: c for c in evaluate_gate(gate, GateThresholds())}
        assert checks["error_rate"].passed and checks["error_rate_increase"].passed
        member = mallory in inside
        assert gate.canary.devices == 60 + member
        assert gate.canary.error_rate == pytest.approx(member / 61)
        assert gate.stable.devices == 60  # canary members never count for stable
    # the membership rule: a stable-bundle row from a canary member is not stable evidence
    tel = pd.concat([honest, arm("stable", inside[60:65])])
    assert gate_result(tel, "canary", "stable", percentage=pct, salt=salt).stable.devices == 60

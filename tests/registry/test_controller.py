"""The controller's pure decision over typed gate results, with known values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from device.protocol import BundleRef, format_time
from edgeops.errors import RolloutError
from registry.controller import (
    ArmStats,
    GateResult,
    GateThresholds,
    decide,
    evaluate_gate,
    prediction_shift,
)
from registry.rollout_state import RolloutPlan, RolloutState

NOW = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
CAND = BundleRef("c" * 64, "2", "tflite-f32")


def _state(
    status: str = "running", started: datetime = NOW - timedelta(minutes=30), step: int = 1
) -> RolloutState:
    plan = RolloutPlan("d-tflite-f32", "d", "2", "tflite-f32", CAND, min_dwell_s=600, min_count=50)
    return RolloutState("pi", status, 1, plan, step, format_time(started))


def _arm(
    count: int = 200,
    err: float = 0.01,
    p95: float = 10.0,
    conf: float = 0.9,
    hist: tuple[float, ...] = (0.5, 0.5),
    labelled: int = 0,
    acc: float | None = None,
) -> ArmStats:
    return ArmStats(count, err, p95, conf, hist, labelled, acc)


def test_prediction_shift_known_values() -> None:
    assert prediction_shift((0.5, 0.5), (0.5, 0.5)) == 0.0
    assert prediction_shift((1.0, 0.0), (0.0, 1.0)) == pytest.approx(1.0)
    assert prediction_shift((10, 10), (0.5, 0.5)) == 0.0  # counts or shares
    assert 0 < prediction_shift((0.6, 0.4), (0.4, 0.6)) < 0.2


def test_healthy_canary_advances_after_dwell_and_count() -> None:
    d = decide(_state(), GateResult(_arm(), _arm()), NOW)
    assert d.action == "advance" and "next: 25%" in d.reasons[0]
    assert all(c.passed for c in d.checks)
    d = decide(_state(step=4), GateResult(_arm(), _arm()), NOW)
    assert d.action == "advance" and "next: complete" in d.reasons[0]


def test_holds_until_dwell_and_count() -> None:
    d = decide(_state(started=NOW - timedelta(minutes=5)), GateResult(_arm(count=10), _arm()), NOW)
    assert d.action == "hold"
    assert d.reasons == ("dwell 300s of 600s", "canary telemetry 10 of 50")
    assert decide(_state(), None, NOW).reasons == ("no telemetry for this step yet",)
    assert decide(_state("paused"), GateResult(_arm(), _arm()), NOW).reasons == (
        "rollout is paused, not running",
    )


@pytest.mark.parametrize(
    ("canary", "check"),
    [
        (_arm(err=0.2), "error_rate,error_rate_increase"),
        (_arm(err=0.04), "error_rate_increase"),
        (_arm(p95=20.0), "p95_latency_ratio"),
        (_arm(conf=0.7), "confidence_drop"),
        (_arm(hist=(0.95, 0.05)), "prediction_shift"),
        (_arm(labelled=40, acc=0.8), "accuracy_drop"),
    ],
)
def test_each_failing_check_rolls_back(canary: ArmStats, check: str) -> None:
    stable = _arm(labelled=40, acc=0.95)
    d = decide(_state(started=NOW), GateResult(canary, stable), NOW)  # fail fast: no dwell needed
    assert d.action == "rollback"
    assert [c.name for c in d.checks if not c.passed] == check.split(",")
    assert d.reasons[0].startswith("gate failed:")


def test_too_few_samples_hold_instead_of_rolling_back() -> None:
    d = decide(_state(), GateResult(_arm(count=5, err=0.4), _arm()), NOW)
    assert d.action == "hold" and "waiting for 20" in d.reasons[0]


def test_accuracy_needs_enough_labels() -> None:
    checks = evaluate_gate(
        GateResult(_arm(labelled=10, acc=0.1), _arm(labelled=10, acc=0.9)), GateThresholds()
    )
    assert "accuracy_drop" not in [c.name for c in checks]


def test_plan_validates_steps() -> None:
    with pytest.raises(RolloutError, match="end at 100"):
        RolloutPlan("m", "m", "1", "t", CAND, steps=(1.0, 50.0))
    with pytest.raises(RolloutError, match="rise strictly"):
        RolloutPlan("m", "m", "1", "t", CAND, steps=(5.0, 1.0, 100.0))


def test_state_round_trips_through_json() -> None:
    s = _state().record(NOW, "alice", "advance", "running", "why", step_index=2)
    back = RolloutState.from_json(s.to_json())
    assert (
        back == s
        and back.history[-1].percentage == 25.0
        and back.history[-1].from_status == "running"
    )

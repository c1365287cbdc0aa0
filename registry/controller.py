"""The rollout controller's decision, as a pure function: advance, hold or roll back, with reasons.

Inputs are typed: `GateResult` compares the canary arm with the stable arm over the current
step's telemetry (monitoring.gates computes it from Parquet telemetry); `GateThresholds` come
from the rollout plan (registry.rollout_state owns them and the state; this module reads that
one, never the reverse). A failing check with enough canary samples rolls back at once (fail
fast); too few samples or a dwell time not yet served holds; everything green, dwelled and
counted advances. Nothing here reads a store or a clock: the caller passes `now`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

from registry.rollout_state import GateThresholds, RolloutState

__all__ = [
    "ArmStats",
    "Check",
    "Decision",
    "GateResult",
    "GateThresholds",
    "decide",
    "evaluate_gate",
    "prediction_shift",
]

Action = Literal["advance", "hold", "rollback"]


@dataclass(frozen=True)
class ArmStats:
    """Telemetry summary of one arm (canary or stable) over the gate window."""

    count: int
    error_rate: float
    p95_latency_ms: float
    mean_confidence: float
    prediction_hist: tuple[float, ...] = ()  # share of top-1 per class
    labelled: int = 0
    accuracy: float | None = None
    devices: int = 0  # distinct devices behind the rows (monitoring.gates weighs each the same)


@dataclass(frozen=True)
class GateResult:
    canary: ArmStats
    stable: ArmStats
    window_start: datetime | None = None
    window_end: datetime | None = None


@dataclass(frozen=True)
class Check:
    name: str
    value: float
    limit: float
    passed: bool
    reason: str


@dataclass(frozen=True)
class Decision:
    action: Action
    reasons: tuple[str, ...]
    checks: tuple[Check, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "reasons": list(self.reasons),
            "checks": [asdict(c) for c in self.checks],
        }


def prediction_shift(p: Sequence[float], q: Sequence[float]) -> float:
    """Jensen-Shannon distance (base 2, in [0, 1]) between two class histograms."""
    n = max(len(p), len(q))
    if n == 0:
        return 0.0
    a = [float(p[i]) if i < len(p) else 0.0 for i in range(n)]
    b = [float(q[i]) if i < len(q) else 0.0 for i in range(n)]
    sa, sb = sum(a), sum(b)
    if sa <= 0 or sb <= 0:
        return 0.0
    a, b = [x / sa for x in a], [x / sb for x in b]
    m = [(x + y) / 2 for x, y in zip(a, b, strict=True)]

    def kl(x: list[float]) -> float:
        return sum(xi * math.log2(xi / mi) for xi, mi in zip(x, m, strict=True) if xi > 0)

    return math.sqrt(max(0.0, (kl(a) + kl(b)) / 2))


def _check(name: str, value: float, limit: float, what: str) -> Check:
    ok = value <= limit
    verdict = "within" if ok else "exceeds"
    return Check(
        name, round(value, 4), limit, ok, f"{what} {value:.4g} {verdict} limit {limit:.4g}"
    )


def evaluate_gate(gate: GateResult, t: GateThresholds) -> tuple[Check, ...]:
    c, s = gate.canary, gate.stable
    checks = [
        _check("error_rate", c.error_rate, t.max_error_rate, "canary error rate"),
        _check(
            "error_rate_increase",
            c.error_rate - s.error_rate,
            t.max_error_rate_increase,
            "error rate increase",
        ),
        _check(
            "confidence_drop",
            s.mean_confidence - c.mean_confidence,
            t.max_confidence_drop,
            "confidence drop",
        ),
    ]
    if s.p95_latency_ms > 0:
        ratio = c.p95_latency_ms / s.p95_latency_ms
        checks.append(
            _check("p95_latency_ratio", ratio, t.max_p95_latency_ratio, "p95 latency ratio")
        )
    if c.prediction_hist and s.prediction_hist:
        shift = prediction_shift(c.prediction_hist, s.prediction_hist)
        checks.append(
            _check("prediction_shift", shift, t.max_prediction_shift, "prediction shift (JS)")
        )
    if (
        c.accuracy is not None
        and s.accuracy is not None
        and min(c.labelled, s.labelled) >= t.min_labelled
    ):
        checks.append(
            _check("accuracy_drop", s.accuracy - c.accuracy, t.max_accuracy_drop, "accuracy drop")
        )
    return tuple(checks)


def decide(state: RolloutState, gate: GateResult | None, now: datetime) -> Decision:
    """What the controller should do with a rollout now."""
    if state.status != "running" or state.plan is None:
        return Decision("hold", (f"rollout is {state.status}, not running",))
    plan = state.plan
    if gate is None:
        return Decision("hold", ("no telemetry for this step yet",))
    checks = evaluate_gate(gate, plan.thresholds)
    failed = [c for c in checks if not c.passed]
    if failed:
        if gate.canary.count >= plan.thresholds.min_samples_to_fail:
            return Decision("rollback", tuple(f"gate failed: {c.reason}" for c in failed), checks)
        return Decision(
            "hold",
            (
                f"gate failing on {gate.canary.count} canary records, waiting for "
                f"{plan.thresholds.min_samples_to_fail} before rolling back",
            ),
            checks,
        )
    waits = []
    dwelled = (now - state.step_started()).total_seconds()
    if dwelled < plan.min_dwell_s:
        waits.append(f"dwell {dwelled:.0f}s of {plan.min_dwell_s:.0f}s")
    if gate.canary.count < plan.min_count:
        waits.append(f"canary telemetry {gate.canary.count} of {plan.min_count}")
    if waits:
        return Decision("hold", tuple(waits), checks)
    pct = plan.steps[state.step_index]
    nxt = (
        "complete"
        if state.step_index + 1 >= len(plan.steps)
        else f"{plan.steps[state.step_index + 1]:g}%"
    )
    return Decision(
        "advance", (f"gate passed at {pct:g}% on {gate.canary.count} records; next: {nxt}",), checks
    )

"""Rollouts from the release side: publishing to a cohort (stable at once, or a canary first),
and the gate-aware checks a release manager's commands run (`edgeops release status/advance`).

The gate evidence is computed as the controller computes it (monitoring.gates over the step's
telemetry with the rollout's percentage and salt, monitoring.canary_evidence for accuracy, then
registry.controller.decide and apply_evidence), so what `release status` shows and what
`release advance` refuses are what the controller would decide at that moment. Nothing here
imports Prefect: the CLI's read-only commands stay quick and quiet.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from components.profiles import DeviceCatalog
    from device.protocol import BundleRef
    from edgeops.settings import Settings
    from monitoring.canary_evidence import CanaryEvidence
    from registry.controller import ArmStats, Decision
    from registry.rollout_state import RolloutState
    from registry.rollouts import RolloutManager


def rollout_manager(settings: Settings, catalog: DeviceCatalog | None = None,
                    client: MlflowClient | None = None) -> Any:
    from registry.channel_access import channel_repository
    from registry.rollouts import RolloutManager

    return RolloutManager(channel_repository(settings), catalog or settings.devices(),
                          client or settings.mlflow_client(), keys_dir=settings.keys_dir)


def start_canary(client: MlflowClient, settings: Settings, catalog: DeviceCatalog, cohort: str,
                 registered: dict[str, Any], actor: str = "release-pipeline", reason: str = "") -> str:
    """Plan and start a rollout of a registered version on a cohort; returns its status.

    The rollout begins at its first step (a canary percentage); the controller or a release
    manager moves it on. A rollout already running on the cohort is left alone: the new
    version stays registered and published, and the refusal is returned as the status.
    """
    return _start_canary(rollout_manager(settings, catalog, client), cohort, registered, actor, reason)[0]


def _start_canary(manager: RolloutManager, cohort: str, registered: dict[str, Any], actor: str,
                  reason: str = "") -> tuple[str, RolloutState | None]:
    from edgeops.errors import RolloutError

    try:
        manager.plan(cohort, registered["name"], registered["version"], actor=actor,
                     reason=reason or f"new release {registered['name']} v{registered['version']}")
        state = manager.start(cohort, actor=actor, reason="canary: first step")
    except RolloutError as exc:
        return f"not started: {exc}", None
    return state.status, state


def release_to_cohort(client: MlflowClient, settings: Settings, catalog: DeviceCatalog, cohort: str,
                      registered: dict[str, Any], ref: BundleRef, rollout: bool,
                      actor: str = "release-pipeline") -> dict[str, Any]:
    """Publish a bundle to a cohort: its stable at once when the cohort has none yet, when the
    bundle already is its stable, or without a staged rollout; else a canary at the first step.
    Returns {"role", "replaces"}: `replaces` is the stable it replaces, by registered model and
    version (None for a first publication), as the rollout state recorded it."""
    from edgeops.errors import RolloutError
    from registry.rollout_state import RegisteredVersion

    manager = rollout_manager(settings, catalog, client)
    reg = RegisteredVersion(registered["name"], str(registered["version"]))
    current = manager.channel(cohort)
    if current is None or current.stable is None or not rollout or current.stable.bundle_id == ref.bundle_id:
        try:
            state = manager.publish_stable(cohort, reg, registered["model_name"], ref, actor=actor)
        except RolloutError as exc:
            if current is not None and current.stable is not None and current.stable.bundle_id == ref.bundle_id:
                return {"role": "stable", "replaces": None}  # already its stable; a rollout runs beside
            return {"role": f"not made stable ({exc})", "replaces": None}
        prev = state.previous_stable_version
        return {"role": "stable", "replaces": prev.to_dict() if prev else None}
    status, started = _start_canary(manager, cohort, registered, actor)
    prev = started.previous_stable_version if started else None
    return {"role": "canary" if status == "running" else f"candidate ({status})",
            "replaces": prev.to_dict() if prev else None}


# --- gate-aware commands -----------------------------------------------------------------------
@dataclass(frozen=True)
class GateReport:
    """Where a rollout's current step stands: dwell, telemetry counts, each gate check, the
    accuracy evidence, and the controller's decision (advance only when everything is met)."""

    cohort: str
    status: str
    percentage: float
    dwell_s: float
    min_dwell_s: float
    min_count: int
    canary: ArmStats | None
    stable: ArmStats | None
    evidence: CanaryEvidence | None
    decision: Decision

    @property
    def dwell_remaining_s(self) -> float:
        return max(0.0, self.min_dwell_s - self.dwell_s)

    @property
    def ready(self) -> bool:
        return self.decision.action == "advance"

    def rows(self) -> list[tuple[str, str, str, str]]:
        """(gate, value, limit or interval, state) for a table."""
        from components.evidence import wilson
        from registry.controller import prediction_shift

        rows = [("dwell", f"{self.dwell_s:.0f}s", f"{self.min_dwell_s:.0f}s",
                 "met" if self.dwell_remaining_s == 0 else f"{self.dwell_remaining_s:.0f}s remaining")]
        c, s = self.canary, self.stable
        count = c.count if c else 0
        rows.append(("canary records", f"{count} ({c.devices if c else 0} devices)", f">= {self.min_count}",
                     "met" if count >= self.min_count else "unmet"))
        rows.append(("stable records", f"{s.count} ({s.devices} devices)" if s else "0", "-", "-"))
        for check in self.decision.checks:
            rows.append((check.name, f"{check.value:.4g}", f"<= {check.limit:.4g}", "pass" if check.passed else "FAIL"))
        if c and s and c.prediction_hist and s.prediction_hist and not any(
                k.name == "prediction_shift" for k in self.decision.checks):
            rows.append(("prediction_shift", f"{prediction_shift(c.prediction_hist, s.prediction_hist):.4g}", "-", "-"))
        for arm, stats in (("canary", c), ("stable", s)):
            if stats is not None and stats.labelled and stats.accuracy is not None:
                lo, hi = wilson(round(stats.accuracy * stats.labelled), stats.labelled)
                rows.append((f"labelled accuracy, {arm}", f"{stats.accuracy:.4f}",
                             f"95% CI {lo:.4f}-{hi:.4f}, n={stats.labelled}", "-"))
            else:
                rows.append((f"labelled accuracy, {arm}", "-", "no labels yet", "-"))
        ev = self.evidence
        if ev is not None:
            for arm, est in (("canary", ev.canary), ("stable", ev.stable)):
                if est is not None:
                    lo, hi = est.interval()
                    word = "estimated (CBPE)" if est.method == "cbpe" else "measured"
                    rows.append((f"{word} accuracy, {arm}", f"{est.accuracy:.4f}",
                                 f"95% CI {lo:.4f}-{hi:.4f}, n={est.n}", "-"))
            rows.append(("accuracy canary - stable", f"{ev.diff:+.4f}", f"[{ev.low:+.4f}, {ev.high:+.4f}]",
                         ev.verdict))
        return rows

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        ev = self.evidence
        return {
            "cohort": self.cohort, "status": self.status, "percentage": self.percentage,
            "dwell_s": round(self.dwell_s, 1), "min_dwell_s": self.min_dwell_s,
            "dwell_remaining_s": round(self.dwell_remaining_s, 1), "min_count": self.min_count,
            "canary": asdict(self.canary) if self.canary else None,
            "stable": asdict(self.stable) if self.stable else None,
            "accuracy_evidence": None if ev is None else {
                "verdict": ev.verdict, "diff": ev.diff, "low": ev.low, "high": ev.high, "reason": ev.reason,
                "canary": _estimate(ev.canary), "stable": _estimate(ev.stable)},
            "decision": self.decision.to_dict(),
            "gates": [dict(zip(("gate", "value", "limit", "state"), r, strict=True)) for r in self.rows()],
        }


def _estimate(est: Any) -> dict[str, Any] | None:
    if est is None:
        return None
    lo, hi = est.interval()
    return {"accuracy": est.accuracy, "ci": [lo, hi], "n": est.n, "method": est.method}


def gate_report(manager: RolloutManager, state: RolloutState, now: datetime | None = None) -> GateReport | None:
    """The controller's view of a running or paused rollout's current step (None otherwise)."""
    from monitoring.canary_evidence import apply_evidence
    from registry.controller import Decision, decide

    if state.plan is None or state.status not in ("running", "paused"):
        return None
    now = now or manager.clock()
    gate = step_gate(manager, state, now)
    # a paused rollout is judged as if it ran, so its page shows what resuming would face
    judged = state if state.status == "running" else _as_running(state)
    decision = decide(judged, gate, now)
    evidence = step_evidence(manager, state, now)
    if evidence is not None:
        decision = apply_evidence(decision, evidence)
    if state.status == "paused":
        decision = Decision("hold", ("rollout is paused; resume it first", *decision.reasons), decision.checks)
    return GateReport(state.cohort, state.status, state.percentage,
                      (now - state.step_started()).total_seconds(), state.plan.min_dwell_s, state.plan.min_count,
                      gate.canary if gate else None, gate.stable if gate else None, evidence, decision)


def step_gate(manager: RolloutManager, state: RolloutState, now: datetime, n_classes: int | None = None) -> Any:
    """Canary vs stable over the current step's telemetry [step start, now), only canary members
    counting for the canary (as flows.controller's store gate source reads it)."""
    import json

    import pandas as pd

    from monitoring.gates import gate_from_store
    from registry.bundles import bundle_file
    from registry.rollouts import rollout_salt

    if state.plan is None or state.previous_stable is None:
        return None
    classes = n_classes or len(json.loads(bundle_file(manager.store, state.plan.candidate.bundle_id, "labels.json")))
    return gate_from_store(manager.store, state.cohort, state.plan.candidate.bundle_id,
                           state.previous_stable.bundle_id, pd.Timestamp(state.step_started()), pd.Timestamp(now),
                           n_classes=classes, percentage=state.percentage, salt=rollout_salt(state))


def step_evidence(manager: RolloutManager, state: RolloutState, now: datetime) -> CanaryEvidence | None:
    """Canary vs stable accuracy over the current step (estimated, or measured with enough
    labels), with an interval on the difference."""
    import pandas as pd

    from monitoring.canary_evidence import evidence_from_store
    from registry.rollouts import rollout_salt

    if state.plan is None or state.previous_stable is None:
        return None
    return evidence_from_store(manager.store, state.cohort, state.plan.candidate.bundle_id,
                               state.previous_stable.bundle_id, pd.Timestamp(state.step_started()), pd.Timestamp(now),
                               percentage=state.percentage, salt=rollout_salt(state))  # the gates' arms


def _as_running(state: RolloutState) -> RolloutState:
    from dataclasses import replace

    return replace(state, status="running")


def advance_checked(manager: RolloutManager, cohort: str, *, actor: str, reason: str = "",
                    force: bool = False) -> tuple[RolloutState, GateReport | None]:
    """A release manager's advance: refused (RolloutError) while the controller would not
    advance (dwell, telemetry counts, a failing gate, no accuracy evidence), unless `force`
    with a reason, which the history records beside the gates it overrode."""
    from edgeops.errors import RolloutError

    state = manager.state(cohort)
    if state.status != "running":
        return manager.advance(cohort, actor=actor, reason=reason), None  # refuses with its own line
    report = gate_report(manager, state)
    assert report is not None
    if not report.ready:
        unmet = "; ".join(report.decision.reasons)
        if not force:
            raise RolloutError(f"not advancing {cohort} at {state.percentage:g}%: {unmet} "
                               "(the controller advances when these are met; --force --reason TEXT overrides)")
        if not reason.strip():
            raise RolloutError("--force needs --reason TEXT: why the gates are overridden goes in the history")
        reason = f"forced: {reason.strip()} (overriding: {unmet})"
    elif not reason:
        reason = "; ".join(report.decision.reasons)
    return manager.advance(cohort, actor=actor, reason=reason, expected_step=state.step_index), report

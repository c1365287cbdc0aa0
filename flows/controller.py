"""The rollout controller as a Prefect flow: for each running rollout, read the gate, decide,
apply, and leave a markdown artifact per cohort. Deployed on an interval (prefect.yaml).

The decision itself is `registry.controller.decide` (pure). The gate comes from a callable so
the fleet simulator and tests can hand one in; by default it is computed from the cohort's
compacted telemetry for the current step with `monitoring.gates.gate_from_store`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from edgeops.errors import RolloutError
from registry.controller import Decision, GateResult, decide

if TYPE_CHECKING:
    from registry.rollout_state import RolloutState
    from registry.rollouts import RolloutManager

GateSource = Callable[["RolloutState", datetime], GateResult | None]


def store_gate_source(manager: RolloutManager, n_classes: int | None = None) -> GateSource:
    """Canary vs stable from the telemetry table, over [step start, now): the same gate and
    accuracy evidence `edgeops release status` shows (flows.rollout.step_gate, step_evidence),
    only canary members counting for the canary."""
    from flows.rollout import step_evidence, step_gate

    def source(state: RolloutState, now: datetime) -> GateResult | None:
        return step_gate(manager, state, now, n_classes=n_classes)

    def evidence(state: RolloutState, now: datetime) -> Any:
        return step_evidence(manager, state, now)

    source.evidence = evidence  # type: ignore[attr-defined]  # control_one asks it too
    return source


def decision_markdown(state: RolloutState, decision: Decision, applied: str) -> str:
    plan = state.plan
    head = (
        f"# Rollout controller: {state.cohort}\n\n"
        f"candidate **{plan.registered_model if plan else '?'} v{plan.version if plan else '?'}** at "
        f"**{state.percentage:g}%** (step {state.step_index + 1}/{len(plan.steps) if plan else '?'})\n\n"
        f"decision: **{decision.action}** ({applied})\n\n"
    )
    reasons = "\n".join(f"- {r}" for r in decision.reasons) + "\n\n"
    rows = ["| check | value | limit | passed |", "|---|---|---|---|"]
    rows += [
        f"| {c.name} | {c.value:.4g} | {c.limit:.4g} | {'yes' if c.passed else '**no**'} |"
        for c in decision.checks
    ]
    return head + reasons + ("\n".join(rows) if decision.checks else "_no gate checks yet_") + "\n"


def control_one(
    manager: RolloutManager,
    state: RolloutState,
    gate_source: GateSource,
    actor: str,
    artifact: bool = False,
) -> dict[str, Any]:
    """Decide and apply for one cohort; the flow runs this as a task per running rollout."""
    now = manager.clock()
    decision = decide(state, gate_source(state, now), now)
    evidence = getattr(gate_source, "evidence", None)  # accuracy evidence (store gate sources)
    if evidence is not None and (ev := evidence(state, now)) is not None:
        from monitoring.canary_evidence import apply_evidence

        decision = apply_evidence(decision, ev)  # no promotion without it; worse rolls back
    reason = "; ".join(decision.reasons)
    applied = "no change"
    try:
        if decision.action == "advance":
            new = manager.advance(
                state.cohort, actor=actor, reason=reason, expected_step=state.step_index
            )
            applied = f"now {new.status} at {new.percentage:g}%"
        elif decision.action == "rollback":
            new = manager.rollback(state.cohort, actor=actor, reason=reason)
            applied = "repointed to the previous stable"
    except (
        RolloutError
    ) as exc:  # someone acted first (paused, rolled back, advanced): their call wins
        applied = f"not applied: {exc}"
    if artifact:
        _artifact(state, decision, applied)
    return {
        "action": decision.action,
        "reasons": list(decision.reasons),
        "applied": applied,
        "checks": [c.name for c in decision.checks if not c.passed],
    }


def _artifact(state: RolloutState, decision: Decision, applied: str) -> None:
    from prefect.artifacts import create_markdown_artifact

    key = re.sub(r"[^a-z0-9-]", "-", f"rollout-{state.cohort}".lower())
    create_markdown_artifact(
        decision_markdown(state, decision, applied),
        key=key,
        description=f"rollout controller decision for {state.cohort}",
    )


def control_pass(
    manager: RolloutManager, gate_source: GateSource | None = None, actor: str = "controller"
) -> dict[str, dict[str, Any]]:
    """One pass without Prefect (the simulator, tests): {cohort: decision summary}."""
    from registry.rollouts import active_cohorts

    reconcile_all(manager)
    source = gate_source or store_gate_source(manager)
    out = {s.cohort: control_one(manager, s, source, actor) for s in active_cohorts(manager)}
    return {**out, **server_pass(manager, actor)}


def server_pass(manager: RolloutManager, actor: str) -> dict[str, dict[str, Any]]:
    """The server cohorts' share rollouts (no channel: the registry's aliases and the router's
    request log), stepped with the same decision and evidence as the device cohorts."""
    from flows.serving import control_server_cohorts

    if manager.client is None:
        return {}
    return control_server_cohorts(manager.client, manager.store, manager.catalog, manager.clock(), actor)


def reconcile_all(manager: RolloutManager) -> list[str]:
    """Every cohort's channel brought in line with its rollout state (whatever the status):
    repairs a channel changed without its state. Returns the cohorts repaired."""
    repo = manager.repo
    delegated = set(repo.cohorts(repo.begin()))
    return [c for c in sorted(manager.catalog.cohorts) if c in delegated and manager.reconcile(c)]


control_task = task(
    control_one,
    name="control-rollout",
    task_run_name="control-{state.cohort}",
    cache_policy=NO_CACHE,
)


@flow(name="rollout-controller")
def rollout_controller(actor: str = "controller") -> dict[str, dict[str, Any]]:
    """One pass over every running rollout, configured from the environment (Settings);
    each decision is a Prefect markdown artifact `rollout-<cohort>` and a history entry."""
    from registry.rollouts import active_cohorts

    manager = manager_from_settings()
    if not manager.repo.exists() and not manager.repo.keystore.has_root():
        print("no update channel yet (nothing released on this store): nothing to control")
        return {}  # a fresh `edgeops up`: the schedule runs before the first release
    repaired = reconcile_all(manager)
    if repaired:
        print(f"channel repaired to match the rollout state: {', '.join(repaired)}")
    source = store_gate_source(manager)
    out = {
        s.cohort: control_task(manager, s, source, actor, artifact=True)
        for s in active_cohorts(manager)
    }
    servers = server_pass(manager, actor)
    for cohort, d in servers.items():
        _server_artifact(cohort, d)
    return {**out, **servers}


def _server_artifact(cohort: str, d: dict[str, Any]) -> None:
    from prefect.artifacts import create_markdown_artifact

    key = re.sub(r"[^a-z0-9-]", "-", f"rollout-{cohort}".lower())
    body = (f"# Rollout controller: {cohort} (server, share of requests)\n\n"
            f"canary at **{d.get('share', 0):g}%** of requests ({d.get('canary_requests', 0)} canary / "
            f"{d.get('stable_requests', 0)} stable rows this step)\n\ndecision: **{d['action']}** ({d['applied']})\n\n"
            + "\n".join(f"- {r}" for r in d["reasons"]) + "\n")
    create_markdown_artifact(body, key=key, description=f"rollout controller decision for {cohort}")


def manager_from_settings() -> RolloutManager:
    from edgeops.settings import Settings
    from registry.channel_access import channel_repository
    from registry.rollouts import RolloutManager

    settings = Settings.from_env()
    return RolloutManager(
        channel_repository(settings),
        settings.devices(),
        settings.mlflow_client(),
        keys_dir=settings.keys_dir,
    )

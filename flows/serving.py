"""Releasing to cohorts that take a registered version rather than a device bundle: model servers
(SavedModel through MLflow's scoring server, registry.serving) and hosts that load a directory
format (an OpenVINO IR). The registry's aliases are the release: `<cohort>-stable`, and on later
releases `<cohort>-canary` at the first step of a share rollout (registry.share_rollout) that
registry.serving's router follows.

The rollout controller steps a server cohort's share with the same decision as a device cohort
(registry.controller.decide: failing gates roll back, dwell and counts hold, then advance), its
gate and accuracy evidence computed from the router's request log (monitoring.gates.arm_stats and
monitoring.canary_evidence.compare_arms, the functions device telemetry goes through).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from components.profiles import DeviceCatalog, DeviceProfile
    from device.store import ObjectStore
    from registry.share_rollout import ShareRollout


def takes_registered_version(profile: DeviceProfile, variant_path: Path | str) -> bool:
    """True for server cohorts and for variants that are directories (no single-file bundle)."""
    return profile.runs_on == "server" or Path(variant_path).is_dir()


def release_by_alias(client: MlflowClient, cohort: str, registered: dict[str, Any], rollout: bool,
                     runs_on: str = "server", now: datetime | None = None) -> dict[str, Any]:
    """Point the cohort's alias at the registered version: stable on the first release (or without
    a rollout, or for a host that loads the directory: no share to split), else a share rollout
    whose first step sends its share of requests to the new version."""
    from edgeops.errors import RolloutError
    from registry.mlflow_models import cohort_alias, set_cohort_alias
    from registry.share_rollout import start_share_rollout

    name, version = registered["name"], str(registered["version"])
    aliases = {k: str(v) for k, v in client.get_registered_model(name).aliases.items()}
    stable = aliases.get(cohort_alias(cohort, "stable"))
    base = {"published": True, "target": registered["target"], "registered": f"{name}/{version}"}
    if stable is None or stable == version or not rollout or runs_on != "server":
        set_cohort_alias(client, name, cohort, "stable", version)
        return {**base, "role": "stable", "serves": f"models:/{name}@{cohort_alias(cohort, 'stable')}"}
    try:
        r = start_share_rollout(client, name, cohort, version, now or datetime.now(UTC))
    except RolloutError as exc:
        return {**base, "role": f"candidate (not started: {exc})", "serves": f"models:/{name}/{version}"}
    return {**base, "role": f"canary ({r.percentage:g}% of requests)",
            "serves": f"models:/{name}@{cohort_alias(cohort, 'canary')}"}


def registered_stable_predictions(client: MlflowClient, cohorts: list[str], x01: Any, y: Any
                                  ) -> list[tuple[float, Any]]:
    """(accuracy, top-1) on this release's test split of what each cohort's `<cohort>-stable`
    version predicts (cohorts released by alias: servers, OpenVINO hosts), each through its own
    preprocessing spec, so the candidate is judged against it image by image (paired)."""
    import mlflow
    import numpy as np

    from device.preprocessing import normalize
    from registry.serving import cohort_model

    found = []
    for cohort in cohorts:
        name = cohort_model(client, cohort)
        if name is None:
            continue
        model = mlflow.pyfunc.load_model(f"models:/{name}@{cohort}-stable")
        spec = getattr(model.unwrap_python_model(), "spec", None)
        if spec is None or (spec.height, spec.width, spec.channels) != tuple(x01.shape[1:]):
            continue  # no spec to run it with, or another input shape: not comparable here
        pred = np.asarray(model.predict(normalize(x01, spec))).argmax(axis=1)
        found.append((float((pred == np.asarray(y)).mean()), pred))
    return found


def share_gate(store: ObjectStore, r: ShareRollout, now: datetime) -> tuple[Any, Any]:
    """(GateResult, CanaryEvidence) of the current step from the router's request log: the canary
    arm is what the canary version answered, the stable arm what the stable answered."""
    import pandas as pd

    from monitoring.canary_evidence import compare_arms
    from monitoring.gates import arm_stats
    from registry.controller import GateResult
    from registry.serving import read_requests

    start = r.step_started()
    rows = pd.DataFrame(read_requests(store, r.cohort, start, now))
    cols = ["device_id", "event", "version", "top1", "latency_ms", "confidence", "label", "probs"]
    rows = rows.reindex(columns=cols) if not rows.empty else pd.DataFrame(columns=cols)
    classes = max((len(p) for p in rows["probs"] if isinstance(p, list)), default=10)
    canary, stable = rows[rows["version"] == r.canary], rows[rows["version"] == r.stable]
    gate = GateResult(arm_stats(canary, classes), arm_stats(stable, classes), start, now)
    canary_inf, stable_inf = canary[canary["event"] == "inference"], stable[stable["event"] == "inference"]
    evidence = compare_arms(canary_inf, stable_inf, margin=r.plan.margin,
                            min_rows=max(r.plan.min_count, 1), min_labels=r.plan.thresholds.min_labelled)
    return gate, evidence


def control_share(client: MlflowClient, store: ObjectStore, r: ShareRollout, now: datetime,
                  actor: str = "controller") -> dict[str, Any]:
    """Decide and apply one server cohort's step, as flows.controller.control_one does for devices."""
    from typing import cast

    from edgeops.errors import RolloutError
    from monitoring.canary_evidence import apply_evidence
    from registry.controller import decide
    from registry.share_rollout import advance_share, rollback_share

    gate, evidence = share_gate(store, r, now)
    # ShareRollout carries what decide reads (status, plan's steps/dwell/count/thresholds, step)
    decision = apply_evidence(decide(cast(Any, r), gate if gate.canary.count else None, now), evidence)
    reason = "; ".join(decision.reasons)
    applied = "no change"
    try:
        if decision.action == "advance":
            applied = advance_share(client, r, now, actor, reason)
        elif decision.action == "rollback":
            applied = rollback_share(client, r, now, actor, reason)
    except RolloutError as exc:  # someone acted first: their call wins
        applied = f"not applied: {exc}"
    return {"action": decision.action, "reasons": list(decision.reasons), "applied": applied,
            "checks": [c.name for c in decision.checks if not c.passed], "share": r.percentage,
            "canary_requests": gate.canary.count, "stable_requests": gate.stable.count}


def control_server_cohorts(client: MlflowClient, store: ObjectStore, catalog: DeviceCatalog, now: datetime,
                           actor: str = "controller") -> dict[str, dict[str, Any]]:
    """One controller pass over the server cohorts with a running share rollout."""
    from edgeops.errors import EdgeOpsError
    from registry.serving import cohort_model
    from registry.share_rollout import read_share_rollout

    out: dict[str, dict[str, Any]] = {}
    for cohort, c in sorted(catalog.cohorts.items()):
        if catalog.profiles[c.profile].runs_on != "server":
            continue
        try:
            name = cohort_model(client, cohort, "canary")
            r = read_share_rollout(client, name, cohort) if name else None
            if r is not None:
                out[cohort] = control_share(client, store, r, now, actor)
        except EdgeOpsError as exc:  # one cohort's trouble never stops the others' pass
            out[cohort] = {"action": "hold", "reasons": [str(exc)], "applied": "no change", "checks": []}
    return out

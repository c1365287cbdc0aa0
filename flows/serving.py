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
    a rollout); later, for a server cohort, a share rollout whose first step sends its share of
    requests to the new version, and for hosts that load a directory (OpenVINO) the canary alias
    as a candidate a release manager promotes."""
    from edgeops.errors import RolloutError
    from registry.mlflow_models import cohort_alias, set_cohort_alias
    from registry.share_rollout import start_share_rollout

    name, version = registered["name"], str(registered["version"])
    aliases = {k: str(v) for k, v in client.get_registered_model(name).aliases.items()}
    stable = aliases.get(cohort_alias(cohort, "stable"))
    # `replaces`: the stable it is judged against and would replace (flows.report's paired row)
    replaces = {"registered_model": name, "version": stable} if stable and stable != version else None
    base = {"published": True, "target": registered["target"], "registered": f"{name}/{version}",
            "replaces": replaces}
    if stable is None or stable == version or not rollout:
        set_cohort_alias(client, name, cohort, "stable", version)
        return {**base, "role": "stable", "serves": f"models:/{name}@{cohort_alias(cohort, 'stable')}"}
    if runs_on != "server":  # hosts load the IR themselves: no share of requests to split here
        set_cohort_alias(client, name, cohort, "canary", version)
        return {**base, "role": "candidate (hosts load it when a release manager moves the stable alias)",
                "serves": f"models:/{name}@{cohort_alias(cohort, 'canary')}"}
    try:
        r = start_share_rollout(client, name, cohort, version, now or datetime.now(UTC))
    except RolloutError as exc:
        return {**base, "role": f"candidate (not started: {exc})", "serves": f"models:/{name}/{version}"}
    return {**base, "role": f"canary ({r.percentage:g}% of requests)",
            "serves": f"models:/{name}@{cohort_alias(cohort, 'canary')}"}


def model_location(client: MlflowClient, name: str, version: str) -> str:
    """Where the version's files are, readable without the fluent tracking URI (a `models:/`
    location would resolve against whatever `mlflow.set_tracking_uri` last said)."""
    uri = client.get_model_version_download_uri(name, version)
    if uri.startswith("models:/"):
        mv = client.get_model_version(name, version)
        uri = client.get_logged_model(mv.model_id).artifact_location
    return uri


def registered_stable_predictions(client: MlflowClient, cohorts: list[str], x01: Any, y: Any
                                  ) -> list[tuple[float, Any]]:
    """(accuracy, top-1) on this release's test split of what each cohort's `<cohort>-stable`
    version predicts (cohorts released by alias: servers, OpenVINO hosts), each through its own
    preprocessing spec, so the candidate is judged against it image by image (paired)."""
    import mlflow
    import numpy as np
    from mlflow.exceptions import MlflowException

    from device.preprocessing import normalize
    from registry.mlflow_models import cohort_alias
    from registry.serving import cohort_model

    found = []
    for cohort in cohorts:
        name = cohort_model(client, cohort)
        if name is None:
            continue
        mv = client.get_model_version_by_alias(name, cohort_alias(cohort, "stable"))
        try:
            model = mlflow.pyfunc.load_model(model_location(client, name, mv.version))
        except (MlflowException, OSError) as exc:  # the release goes on; the rollout gates still judge it
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            print(f"cohort {cohort}: its stable {name} v{mv.version} cannot be loaded for the paired test "
                  f"({first}); judged without it")
            continue
        try:
            spec = getattr(model.unwrap_python_model(), "spec", None)
        except MlflowException:  # a flavor without a Python model (ONNX): no spec to read here
            spec = None
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


def run_server_cohort(settings: Any, cohort: str, x01: Any, labels: Any, *, scenario: Any = None,
                      params: Any = None, start: datetime | None = None, batch: int = 8,
                      timeout_s: float = 300.0) -> str:
    """The server cohort's traffic in the fleet run: its released versions behind the share router
    on loopback, field frames (drawn through the drift scenario over the simulated hours) sent as
    real HTTP requests by the cohort's clients, a share of them scored with the user's label. The
    router's request log lands in the store, where the controller's next pass reads it. One line
    for the fleet summary; a model server that cannot start is that line, and the run goes on."""
    import json
    import urllib.error
    import urllib.request
    from datetime import timedelta

    import mlflow
    import numpy as np
    from mlflow.exceptions import MlflowException

    from device.preprocessing import normalize
    from flows.web_cohort import field_frames
    from registry.mlflow_models import cohort_alias
    from registry.serving import RequestLog, ServingError, cohort_model, serve_cohort

    params = params or settings.params().fleet
    client = settings.mlflow_client()
    name = cohort_model(client, cohort)
    if name is None:
        return f"cohort {cohort}: nothing released to the model server yet"
    stable = client.get_model_version_by_alias(name, cohort_alias(cohort, "stable"))
    try:  # the clients' preprocessing: the stable version's own spec
        spec = mlflow.pyfunc.load_model(model_location(client, name, stable.version)).unwrap_python_model().spec
    except (MlflowException, OSError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        return f"cohort {cohort}: {name} v{stable.version} cannot be loaded: {first}"
    clients = params.devices_per_cohort
    n = max(batch, min(1000, round(params.inferences_per_hour * params.hours * clients)))
    images, y, at = field_frames(x01, labels, scenario, n, params.hours, params.step_minutes, params.seed)
    x = normalize(images.astype(np.float32) / 255, spec)
    scored = np.random.default_rng(params.seed + 2).random(n) < params.label_rate
    t0 = (start or datetime.now(UTC)).replace(microsecond=0)
    now = [t0]
    right: dict[str, list[int]] = {}
    try:
        with serve_cohort(client, settings.mlflow_tracking_uri, name, cohort,
                          log=RequestLog(settings.store(), cohort, clock=lambda: now[0]), timeout_s=timeout_s
                          ) as service:
            for k, i in enumerate(range(0, n, batch)):
                rows = slice(i, min(i + batch, n))
                now[0] = t0 + timedelta(hours=at[i])
                req = urllib.request.Request(
                    f"{service.url}/invocations", data=json.dumps({"inputs": x[rows].tolist()}).encode(),
                    method="POST", headers={
                        "Content-Type": "application/json", "X-Client-Id": f"{cohort}-client-{k % clients:03d}",
                        "X-Edgeops-Labels": ",".join(str(int(v)) if s else "" for v, s in
                                                     zip(y[rows], scored[rows], strict=True))})
                with urllib.request.urlopen(req, timeout=60) as r:
                    top1 = np.asarray(json.loads(r.read())["predictions"]).argmax(axis=1)
                    role = f"{r.headers['X-Edgeops-Role']} v{r.headers['X-Edgeops-Version']}"
                right.setdefault(role, []).extend((top1 == y[rows]).astype(int).tolist())
            share = service.router.share
    except ServingError as exc:
        return str(exc)  # "cohort <name>: the model server ..."
    except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
        return f"cohort {cohort}: model server stopped answering: {exc}"
    arms = "; ".join(f"{role}: top-1 {np.mean(v):.1%} on {len(v)}" for role, v in sorted(right.items()))
    split = f", canary at {share:g}% of requests" if share else ""
    return (f"{name} in MLflow's scoring server behind the share router{split}: {arms} field frames in "
            f"{-(-n // batch)} HTTP requests, {int(scored.sum())} scored; request log in the store")


def run_host_cohort(settings: Any, cohort: str, x01: Any, labels: Any, *, scenario: Any = None,
                    params: Any = None) -> str | None:
    """A cohort of hosts that load the registered version themselves (an OpenVINO IR): the version
    behind `<cohort>-stable` loaded through its registry entry in its own runtime (OpenVINO on CPU)
    and run on field frames drawn through the scenario. None when nothing is released to it."""
    import mlflow
    import numpy as np
    from mlflow.exceptions import MlflowException

    from device.preprocessing import normalize
    from flows.web_cohort import field_frames
    from registry.mlflow_models import cohort_alias
    from registry.serving import cohort_model

    params = params or settings.params().fleet
    client = settings.mlflow_client()
    name = cohort_model(client, cohort)
    if name is None:
        return None
    mv = client.get_model_version_by_alias(name, cohort_alias(cohort, "stable"))
    try:
        model = mlflow.pyfunc.load_model(model_location(client, name, mv.version))
        spec = model.unwrap_python_model().spec
    except (MlflowException, OSError, AttributeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        return f"cohort {cohort}: {name} v{mv.version} cannot be loaded here: {first}"
    n = max(1, min(1000, round(params.inferences_per_hour * params.hours * params.devices_per_cohort)))
    images, y, _ = field_frames(x01, labels, scenario, n, params.hours, params.step_minutes, params.seed)
    top1 = np.asarray(model.predict(normalize(images.astype(np.float32) / 255, spec))).argmax(axis=1)
    return (f"{name} v{mv.version} (@{cohort_alias(cohort, 'stable')}) loaded from the registry in its own "
            f"runtime ({mv.tags.get('target', '?')}): top-1 {np.mean(top1 == y):.1%} on {n} field frames")

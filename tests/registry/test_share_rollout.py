"""The server cohort's staged rollout by share of requests: the controller's pass reads the
router's request log, holds for dwell and counts, advances the share, completes (the canary
becomes the stable) and rolls back on a failing gate or on worse accuracy; bad input is one line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from components.profiles import DeviceCatalog
from device.protocol import format_time
from device.store import open_store
from edgeops.errors import RolloutError
from flows.serving import control_server_cohorts, release_by_alias
from registry.controller import GateThresholds
from registry.mlflow_models import set_cohort_alias
from registry.serving import RequestLog, cohort_versions, read_requests
from registry.share_rollout import SharePlan, advance_share, read_share_rollout, start_share_rollout

COHORT = "inference-servers"
NAME = "digits-savedmodel"
T0 = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)


@pytest.fixture
def catalog() -> DeviceCatalog:
    profile = {"max_model_bytes": 10**9, "arena_bytes": 10**9, "latency_budget_ms": 10, "throughput_macs_per_s": 1e11}
    return DeviceCatalog.model_validate({
        "profiles": {"server": {"targets": ["savedmodel"], "runs_on": "server", **profile},
                     "pi": {"targets": ["tflite-f32"], **profile}},
        "cohorts": {COHORT: {"profile": "server"}, "pi-fleet-eu": {"profile": "pi"}},
    })


@pytest.fixture
def versions(mlflow_client, tmp_path):
    """A registered model with two versions (the registry entries only: no server runs here)."""
    mlflow_client.create_registered_model(NAME)
    for v in ("1", "2"):
        (tmp_path / v).mkdir()
        mlflow_client.create_model_version(NAME, source=str(tmp_path / v))
    set_cohort_alias(mlflow_client, NAME, COHORT, "stable", "1")
    return mlflow_client


PLAN = SharePlan(steps=(10.0, 50.0, 100.0), min_dwell_s=600, min_count=60,
                 thresholds=GateThresholds(min_labelled=30), margin=0.1)


def _traffic(log: RequestLog, at: datetime, version: str, role: str, n: int, accuracy: float,
             errors: int = 0, seed: int = 0) -> None:
    """`n` logged requests answered by `version`, right on `accuracy` of their labels."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = int(rng.integers(10))
        right = i < round(accuracy * n)
        top1 = label if right else (label + 1) % 10
        probs = np.full(10, 0.1 / 9)
        probs[top1] = 0.9
        rows.append({"at": format_time(at + timedelta(seconds=i)), "device_id": f"client-{i % 40}",
                     "version": version, "role": role, "status": 200, "latency_ms": 5.0, "event": "inference",
                     "probs": probs.tolist(), "top1": top1, "confidence": 0.9, "label": label})
    rows += [{"at": format_time(at), "device_id": f"client-{i}", "version": version, "role": role,
              "status": 500, "latency_ms": 5.0, "event": "error"} for i in range(errors)]
    log.add(rows)
    log.flush()


def test_share_steps_through_the_plan_and_completes(versions, catalog, tmp_path) -> None:
    client, store = versions, open_store(str(tmp_path / "store"))
    log = RequestLog(store, COHORT)
    start_share_rollout(client, NAME, COHORT, "2", T0, PLAN)
    assert cohort_versions(client, NAME, COHORT) == ("1", "2", 10.0)

    # nothing logged yet: hold
    d = control_server_cohorts(client, store, catalog, T0 + timedelta(minutes=1))[COHORT]
    assert d["action"] == "hold" and "no telemetry" in d["reasons"][0]
    _traffic(log, T0 + timedelta(minutes=1), "2", "canary", 100, 0.95)
    _traffic(log, T0 + timedelta(minutes=1), "1", "stable", 400, 0.95, seed=1)
    assert len(read_requests(store, COHORT, T0, T0 + timedelta(hours=1))) == 500
    # healthy, but the step has not dwelled its 10 minutes
    d = control_server_cohorts(client, store, catalog, T0 + timedelta(minutes=5))[COHORT]
    assert d["action"] == "hold" and any("dwell" in r for r in d["reasons"])
    d = control_server_cohorts(client, store, catalog, T0 + timedelta(minutes=11))[COHORT]
    assert d["action"] == "advance", d
    assert cohort_versions(client, NAME, COHORT) == ("1", "2", 50.0)
    assert client.get_model_version(NAME, "2").tags[f"rollout.{COHORT}"] == "running 50%"

    # the new step counts only its own requests: held until the canary answered enough again
    t1 = T0 + timedelta(minutes=11)
    d = control_server_cohorts(client, store, catalog, t1 + timedelta(minutes=11))[COHORT]
    assert d["action"] == "hold"
    _traffic(log, t1 + timedelta(minutes=1), "2", "canary", 200, 0.96, seed=2)
    _traffic(log, t1 + timedelta(minutes=1), "1", "stable", 200, 0.95, seed=3)
    assert control_server_cohorts(client, store, catalog, t1 + timedelta(minutes=11))[COHORT]["action"] == "advance"
    t2 = t1 + timedelta(minutes=11)
    _traffic(log, t2 + timedelta(minutes=1), "2", "canary", 300, 0.96, seed=4)
    _traffic(log, t2 + timedelta(minutes=1), "1", "stable", 100, 0.95, seed=5)  # before the step took
    d = control_server_cohorts(client, store, catalog, t2 + timedelta(minutes=11))[COHORT]
    assert d["action"] == "advance" and d["applied"].startswith("completed")
    assert cohort_versions(client, NAME, COHORT) == ("2", None, 0.0)  # v2 serves every request
    assert read_share_rollout(client, NAME, COHORT) is None
    history = client.get_model_version(NAME, "2").tags[f"share_history.{COHORT}"]
    assert [w in history for w in ("start", "advance", "complete")] == [True, True, True]


@pytest.mark.parametrize("errors, canary_accuracy, why", [
    (30, 0.95, "error rate"),  # a failing gate: 30 of the canary's clients got errors
    (0, 0.55, "accuracy canary"),  # credibly worse accuracy on scored requests
])
def test_failing_gate_or_worse_accuracy_rolls_back(versions, catalog, tmp_path, errors, canary_accuracy,
                                                   why) -> None:
    client, store = versions, open_store(str(tmp_path / "store"))
    log = RequestLog(store, COHORT)
    start_share_rollout(client, NAME, COHORT, "2", T0, PLAN)
    _traffic(log, T0 + timedelta(minutes=1), "2", "canary", 150, canary_accuracy, errors=errors)
    _traffic(log, T0 + timedelta(minutes=1), "1", "stable", 400, 0.95, seed=1)
    d = control_server_cohorts(client, store, catalog, T0 + timedelta(minutes=2))[COHORT]  # no dwell for a failure
    assert d["action"] == "rollback" and why in " ".join(d["reasons"]), d
    assert cohort_versions(client, NAME, COHORT) == ("1", None, 0.0)  # every request to the stable
    assert client.get_model_version(NAME, "2").tags[f"rollout.{COHORT}"] == "rolled_back"
    assert control_server_cohorts(client, store, catalog, T0 + timedelta(minutes=3)) == {}  # nothing running


def test_release_by_alias_and_stale_steps(versions, tmp_path) -> None:
    client = versions
    reg = {"name": NAME, "version": "2", "target": "savedmodel"}
    out = release_by_alias(client, COHORT, reg, rollout=True, now=T0)
    assert out["role"] == "canary (1% of requests)"  # the default plan's first step
    assert out["replaces"] == {"registered_model": NAME, "version": "1"}  # the report's paired row
    assert release_by_alias(client, COHORT, reg, rollout=True, now=T0)["role"] == out["role"]  # retried: same
    r = read_share_rollout(client, NAME, COHORT)
    advance_share(client, r, T0, "test", "step")
    with pytest.raises(RolloutError, match="expected v2 at step 1, found v2 at step 2"):
        advance_share(client, r, T0, "test", "a second controller with a stale read")  # never steps twice
    client.create_model_version(NAME, source=str(tmp_path / "1"))
    busy = release_by_alias(client, COHORT, {**reg, "version": "3"}, rollout=True, now=T0)
    assert busy["role"].startswith("candidate (not started: cohort inference-servers: a rollout of")
    # a host that loads the directory (OpenVINO): the first release is its stable, a later one a
    # candidate behind <cohort>-canary (no share of requests to split, no controller steps)
    host = release_by_alias(client, "intel-vision-line", {**reg, "version": "1"}, rollout=True, runs_on="agent")
    assert host["role"] == "stable"
    host = release_by_alias(client, "intel-vision-line", reg, rollout=True, runs_on="agent", now=T0)
    assert host["role"].startswith("candidate") and host["serves"] == f"models:/{NAME}@intel-vision-line-canary"
    with pytest.raises(RolloutError, match="steps must rise"):
        SharePlan(steps=(50.0, 10.0, 100.0))


def test_the_controllers_pass_steps_server_cohorts_beside_device_rollouts(versions, catalog, local_repo) -> None:
    """flows.controller.control_pass (the simulator's and the scheduled flow's pass) covers the
    server cohort: its share moves on the same pass as the device rollouts are judged."""
    from flows.controller import control_pass
    from registry.rollouts import RolloutManager

    client = versions
    now = [T0 + timedelta(minutes=1)]
    manager = RolloutManager(local_repo, catalog, client, clock=lambda: now[0])
    start_share_rollout(client, NAME, COHORT, "2", T0, PLAN)
    log = RequestLog(local_repo.store, COHORT)
    _traffic(log, T0 + timedelta(minutes=1), "2", "canary", 100, 0.95)
    _traffic(log, T0 + timedelta(minutes=1), "1", "stable", 400, 0.95, seed=1)
    assert control_pass(manager)[COHORT]["action"] == "hold"  # dwell not served
    now[0] = T0 + timedelta(minutes=11)
    out = control_pass(manager)
    assert out[COHORT]["action"] == "advance" and "pi-fleet-eu" not in out  # no device rollout running
    assert cohort_versions(client, NAME, COHORT) == ("1", "2", 50.0)


def test_one_server_cohorts_trouble_does_not_stop_the_others_step(versions, tmp_path) -> None:
    """A second server cohort whose canary alias is ambiguous (set by hand in the MLflow UI on two
    registered models): its entry in the pass is a hold naming the cohort and why; the cohort after
    it still steps."""
    client, store = versions, open_store(str(tmp_path / "store"))
    profile = {"targets": ["savedmodel"], "runs_on": "server", "max_model_bytes": 10**9, "arena_bytes": 10**9,
               "latency_budget_ms": 10, "throughput_macs_per_s": 1e11}
    catalog = DeviceCatalog.model_validate({"profiles": {"server": profile},
                                            "cohorts": {"api-eu": {"profile": "server"}, COHORT: {"profile": "server"}}})
    for other in ("digits-a", "digits-b"):
        client.create_registered_model(other)
        client.create_model_version(other, source=str(tmp_path / "1"))
        client.set_registered_model_alias(other, "api-eu-canary", "1")  # by hand: no uniqueness check
    start_share_rollout(client, NAME, COHORT, "2", T0, PLAN)
    log = RequestLog(store, COHORT)
    _traffic(log, T0 + timedelta(minutes=1), "2", "canary", 100, 0.95)
    _traffic(log, T0 + timedelta(minutes=1), "1", "stable", 400, 0.95, seed=1)
    out = control_server_cohorts(client, store, catalog, T0 + timedelta(minutes=11))
    assert list(out) == ["api-eu", COHORT]  # the troubled cohort came first in the pass
    assert out["api-eu"]["action"] == "hold" and out["api-eu"]["applied"] == "no change"
    assert out["api-eu"]["reasons"] == ["cohort api-eu: api-eu-canary is set on several models: digits-a, digits-b"]
    assert out[COHORT]["action"] == "advance" and cohort_versions(client, NAME, COHORT) == ("1", "2", 50.0)

"""Rollouts end to end against the store (local and moto's S3): plan, steps, completion,
automatic rollback on a failing gate, concurrent commands, refusals, and the MLflow mirror."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from rollout_helpers import measure_arm, release

from device.channel import ChannelClient
from device.protocol import Channel, choose
from edgeops.errors import IntegrityError, RolloutError
from registry.channels import set_stable
from registry.controller import GateResult, decide
from registry.rollouts import RolloutManager

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # real MLflow registry + moto + subprocesses: ~2 min per store


class SimClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def tick(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def held_out(tiny_tflite):
    from sklearn.datasets import load_digits

    _, spec, _ = tiny_tflite
    d = load_digits()
    x = ((d.images[200:400] / 16.0).astype(np.float32)[..., None] - spec.mean[0]) / spec.std[0]
    return x, d.target[200:400]


def device_view(mgr: RolloutManager, where: Path, cohort: str = "pi-fleet-eu") -> Channel:
    """The channel as a device sees it: tuf.ngclient from the exported root."""
    return ChannelClient(mgr.store, where, mgr.repo.export_root()).session().channel(cohort)


@pytest.fixture
def world(repo, mlflow_client, experiment_run, tiny_tflite, catalog, tmp_path):
    path, spec, x = tiny_tflite
    v1, ref1 = release(mlflow_client, experiment_run, repo, path, spec, x)
    set_stable(repo, "pi-fleet-eu", ref1)
    clock = SimClock()
    mgr = RolloutManager(repo, catalog, mlflow_client, clock=clock, keys_dir=tmp_path / "keys")
    return mgr, clock, v1, ref1


def test_full_rollout_to_100_percent(
    world, bad_tflite, tiny_tflite, mlflow_client, experiment_run, tmp_path
):
    mgr, clock, v1, ref1 = world
    _, spec, x = tiny_tflite
    v2, ref2 = release(mlflow_client, experiment_run, mgr.repo, bad_tflite, spec, x)
    s = mgr.plan(
        "pi-fleet-eu",
        "digits-tflite-f32",
        v2,
        actor="alice",
        reason="new data",
        min_dwell_s=60,
        min_count=10,
    )
    assert s.status == "planned" and s.plan.candidate == ref2 and s.previous_stable == ref1
    with pytest.raises(RolloutError, match="already planned"):
        mgr.plan("pi-fleet-eu", "digits-tflite-f32", v2, actor="bob")
    s = mgr.start("pi-fleet-eu", actor="alice")
    seen = []
    devices = [f"pi-{i:04d}" for i in range(1000)]
    canaries_before: set[str] = set()
    while s.status == "running":
        m = device_view(mgr, tmp_path / "dev")
        assert m.percentage == s.percentage and m.candidate == ref2 and m.stable == ref1
        canaries = {d for d in devices if choose(m, d) == ref2}
        assert canaries_before <= canaries  # sticky as the percentage grows
        assert abs(len(canaries) / len(devices) - m.percentage / 100) < 0.05
        canaries_before = canaries
        seen.append(m.percentage)
        clock.tick(120)
        s = mgr.advance("pi-fleet-eu", actor="alice")
    assert seen == [1.0, 5.0, 25.0, 50.0, 100.0] and s.status == "completed"
    m = device_view(mgr, tmp_path / "dev")
    assert m.stable == ref2 and m.candidate is None and all(choose(m, d) == ref2 for d in devices)
    actions = [t.action for t in mgr.state("pi-fleet-eu").history]
    assert actions == ["plan", "start", "advance", "advance", "advance", "advance", "complete"]
    revisions = [t.manifest_revision for t in mgr.state("pi-fleet-eu").history[1:]]
    assert revisions == sorted(revisions) and revisions[-1] == m.revision
    assert all(t.actor == "alice" and t.at for t in mgr.state("pi-fleet-eu").history)
    rm = mlflow_client.get_registered_model("digits-tflite-f32")
    assert (
        str(rm.aliases.get("pi-fleet-eu-stable")) == v2 and "pi-fleet-eu-canary" not in rm.aliases
    )
    tags = mlflow_client.get_model_version("digits-tflite-f32", v2).tags
    assert tags["rollout.pi-fleet-eu"].startswith("completed")
    with pytest.raises(RolloutError, match="already stable"):
        mgr.plan("pi-fleet-eu", "digits-tflite-f32", v2, actor="alice")


def test_failing_gate_rolls_back_by_itself(
    world, bad_tflite, tiny_tflite, held_out, mlflow_client, experiment_run, tmp_path
):
    from flows.controller import control_pass

    mgr, clock, v1, ref1 = world
    path, spec, x = tiny_tflite
    v2, ref2 = release(mlflow_client, experiment_run, mgr.repo, bad_tflite, spec, x)
    mgr.plan("pi-fleet-eu", "digits-tflite-f32", v2, actor="alice", min_dwell_s=60, min_count=50)
    mgr.start("pi-fleet-eu", actor="alice")
    xh, yh = held_out
    gate = GateResult(canary=measure_arm(bad_tflite, xh, yh), stable=measure_arm(path, xh, yh))
    decision = decide(mgr.state("pi-fleet-eu"), gate, clock.now)
    assert decision.action == "rollback", decision
    assert any("accuracy drop" in r or "prediction shift" in r for r in decision.reasons)
    clock.tick(30)
    results = control_pass(mgr, lambda state, now: gate, actor="controller")
    assert results["pi-fleet-eu"]["action"] == "rollback"
    s = mgr.state("pi-fleet-eu")
    assert s.status == "rolled_back" and s.history[-1].actor == "controller"
    assert "gate failed" in s.history[-1].reason
    m = device_view(mgr, tmp_path / "dev")
    assert m.stable == ref1 and m.candidate is None and choose(m, "any-device") == ref1
    rm = mlflow_client.get_registered_model("digits-tflite-f32")
    assert (
        str(rm.aliases.get("pi-fleet-eu-stable")) == v1 and "pi-fleet-eu-canary" not in rm.aliases
    )


def test_healthy_candidate_is_advanced_by_the_controller(
    world, tiny_tflite, held_out, mlflow_client, experiment_run, tmp_path
):
    from flows.controller import control_pass

    mgr, clock, v1, ref1 = world
    path, spec, x = tiny_tflite
    twin = tmp_path / "twin.tflite"  # same weights, new bytes: a healthy retrain
    twin.write_bytes(path.read_bytes() + b"\0" * 16)
    v2, _ = release(mlflow_client, experiment_run, mgr.repo, twin, spec, x)
    mgr.plan("pi-fleet-eu", "digits-tflite-f32", v2, actor="alice", min_dwell_s=600, min_count=50)
    mgr.start("pi-fleet-eu", actor="alice")
    xh, yh = held_out
    stable = measure_arm(path, xh, yh)
    # The twin runs the same graph: its latency is the stable's. Wall-clock p95 on a shared,
    # loaded machine is noise that would make this correctness test flaky, so it is not re-timed.
    canary = replace(measure_arm(twin, xh, yh), p95_latency_ms=stable.p95_latency_ms)
    gate = GateResult(canary=canary, stable=stable)
    out = control_pass(mgr, lambda s, now: gate)
    assert out["pi-fleet-eu"]["action"] == "hold" and "dwell" in " ".join(
        out["pi-fleet-eu"]["reasons"]
    )
    for _ in range(5):
        clock.tick(601)
        out = control_pass(mgr, lambda s, now: gate)
        assert out["pi-fleet-eu"]["action"] == "advance"
    assert mgr.state("pi-fleet-eu").status == "completed"


def test_refusals(world, tiny_tflite, mlflow_client, experiment_run):
    mgr, clock, v1, _ = world
    path, spec, x = tiny_tflite
    with pytest.raises(RolloutError, match="unknown cohort 'nope'"):
        mgr.plan("nope", "digits-tflite-f32", v1, actor="a")
    with pytest.raises(RolloutError, match="no registry version digits-tflite-f32/99"):
        mgr.plan("pi-fleet-eu", "digits-tflite-f32", 99, actor="a")
    v_unblessed, _ = release(
        mlflow_client, experiment_run, mgr.repo, path, spec, x, blessed=False
    )
    with pytest.raises(RolloutError, match="not blessed"):
        mgr.plan("pi-fleet-eu", "digits-tflite-f32", v_unblessed, actor="a")
    v_int8, _ = release(
        mlflow_client, experiment_run, mgr.repo, path, spec, x, target="tflite-int8"
    )
    with pytest.raises(RolloutError, match="cohort pi-fleet-eu .profile pi. runs tflite-f32"):
        mgr.plan("pi-fleet-eu", "digits-tflite-int8", v_int8, actor="a")
    with pytest.raises(RolloutError, match="cannot advance on pi-fleet-eu: rollout is none"):
        mgr.advance("pi-fleet-eu", actor="a")
    with pytest.raises(RolloutError, match="cannot start"):
        mgr.start("pi-fleet-eu", actor="a")


def test_pause_resume_and_manual_rollback(
    world, bad_tflite, tiny_tflite, mlflow_client, experiment_run, tmp_path
):
    mgr, clock, v1, ref1 = world
    _, spec, x = tiny_tflite
    v2, ref2 = release(mlflow_client, experiment_run, mgr.repo, bad_tflite, spec, x)
    mgr.plan("pi-fleet-eu", "digits-tflite-f32", v2, actor="a", steps=(10, 100))
    mgr.start("pi-fleet-eu", actor="a")
    s = mgr.pause("pi-fleet-eu", actor="b", reason="weekend")
    assert s.status == "paused" and s.percentage == 10
    with pytest.raises(RolloutError, match="cannot advance"):
        mgr.advance("pi-fleet-eu", actor="a")
    clock.tick(3600)
    s = mgr.resume("pi-fleet-eu", actor="b")
    assert s.step_started() == clock.now
    s = mgr.rollback("pi-fleet-eu", actor="b", reason="customer complaint")
    assert s.status == "rolled_back" and s.history[-1].reason == "customer complaint"
    assert mgr.channel("pi-fleet-eu").stable == ref1
    # a new rollout after a rollback gets a new id and salt; history keeps both
    mgr.plan("pi-fleet-eu", "digits-tflite-f32", v2, actor="a")
    assert mgr.state("pi-fleet-eu").rollout_id == 2 and len(mgr.history("pi-fleet-eu")) == 6


def test_device_refuses_replayed_expired_and_forged_channel(world, tmp_path):
    """What the old manifest checks were, now TUF's: a replayed older timestamp, an expired
    one and a role edited without the key are refused by a device; nothing changes for it."""
    from registry.tuf_repo import Lifetimes

    mgr, clock, _, ref1 = world
    store = mgr.store
    before = device_view(mgr, tmp_path / "dev")
    old_ts = store.get("tuf/metadata/timestamp.json")
    set_stable(mgr.repo, "pi-fleet-eu", ref1)  # a new (identical) channel revision
    after = device_view(mgr, tmp_path / "dev")
    assert after.revision > before.revision and after.stable == ref1
    store.put("tuf/metadata/timestamp.json", old_ts)  # replay
    with pytest.raises(IntegrityError, match="timestamp"):
        device_view(mgr, tmp_path / "dev")
    mgr.repo.refresh()  # the key holders renew: the release side builds on what it saw last
    assert device_view(mgr, tmp_path / "dev").revision == after.revision
    stale = mgr.repo
    stale.clock, stale.lifetimes = (lambda: datetime.now(UTC) - timedelta(days=3)), Lifetimes()
    stale.refresh()  # a timestamp that expired two days ago
    with pytest.raises(IntegrityError, match="[Ee]xpired"):
        device_view(mgr, tmp_path / "dev2")
    stale.clock = lambda: datetime.now(UTC)
    stale.refresh()
    v = after.revision
    key = f"tuf/metadata/{v}.cohort-pi-fleet-eu.json"
    forged = store.get(key).replace(b'"basis_points":0', b'"basis_points":10000')
    store.put(key, forged)
    with pytest.raises(IntegrityError, match="cohort-pi-fleet-eu"):
        device_view(mgr, tmp_path / "dev3")


_ADVANCER = """
import sys
from pathlib import Path
from components.profiles import DeviceCatalog
from device.store import open_store
from registry.rollouts import RolloutManager
from registry.tuf_keys import Keystore
from registry.tuf_repo import TufRepository
url, endpoint, keys, name = sys.argv[1], sys.argv[2] or None, sys.argv[3], sys.argv[4]
catalog = DeviceCatalog.model_validate({"profiles": {"pi": {"targets": ["tflite-f32"], "max_model_bytes": 1,
    "arena_bytes": 1, "latency_budget_ms": 1, "throughput_macs_per_s": 1}}, "cohorts": {"pi-fleet-eu": {"profile": "pi"}}})
mgr = RolloutManager(TufRepository(open_store(url, endpoint), Keystore(Path(keys))), catalog)
mgr.advance("pi-fleet-eu", actor=name, reason="concurrent " + name)
"""


def test_concurrent_advance_from_processes_loses_nothing(
    world, bad_tflite, tiny_tflite, mlflow_client, experiment_run, tmp_path
):
    mgr, clock, v1, ref1 = world
    _, spec, x = tiny_tflite
    v2, ref2 = release(mlflow_client, experiment_run, mgr.repo, bad_tflite, spec, x)
    steps = (1, 2, 3, 4, 5, 10, 100)
    mgr.plan("pi-fleet-eu", "digits-tflite-f32", v2, actor="a", steps=steps)
    mgr.start("pi-fleet-eu", actor="a")
    store = mgr.store
    url = store.url.split(" at ")[0]
    endpoint = getattr(store, "endpoint_url", None) or ""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _ADVANCER, url, endpoint, str(tmp_path / "keys"), f"p{i}"],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(5)
    ]
    errs = [p.communicate(timeout=180)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errs
    s = mgr.state("pi-fleet-eu")
    assert s.step_index == 5 and s.percentage == 10
    assert sorted(t.actor for t in s.history if t.action == "advance") == [
        f"p{i}" for i in range(5)
    ]
    m = mgr.channel("pi-fleet-eu")
    assert m.percentage == 10 and m.candidate == ref2  # the manifest matches the newest state


def test_encrypted_cohort_rolls_out_its_own_encrypted_bundle(
    world, tiny_tflite, mlflow_client, experiment_run, tmp_path
):
    from edgeops.errors import RegistryError
    from registry.bundles import publish_bundle, read_bundle
    from registry.keys import load_or_create_cohort_key

    mgr, clock, _, _ = world
    path, spec, x = tiny_tflite
    v, _ = release(
        mlflow_client, experiment_run, mgr.repo, path, spec, x, target="tflite-int8"
    )
    with pytest.raises(RegistryError, match="no bundle published for digits version .* encrypted"):
        mgr.plan("mcu-line-a", "digits-tflite-int8", v, actor="a")
    key = load_or_create_cohort_key(tmp_path / "keys", "mcu-line-a")
    ref = publish_bundle(
        mgr.repo,
        path,
        spec,
        model_name="digits",
        model_version=v,
        target="tflite-int8",
        encryption_key=key,
    )
    mgr.plan("mcu-line-a", "digits-tflite-int8", v, actor="a", steps=(100,))
    s = mgr.start("mcu-line-a", actor="a")
    assert s.plan.candidate == ref and mgr.channel("mcu-line-a").candidate == ref
    bundle = read_bundle(mgr.repo, ref, encryption_key=key)
    assert bundle.metadata.encrypted and bundle.model_bytes == path.read_bytes()
    assert mgr.advance("mcu-line-a", actor="a").status == "completed"

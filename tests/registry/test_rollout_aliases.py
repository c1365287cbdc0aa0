"""The MLflow mirror tells the truth: `<cohort>-stable` and `<cohort>-canary` sit on exactly the
registered models and versions the cohort's signed channel names, after every transition, also
when the candidate is a different registered model than the stable (a pruned variant replacing
the float model's), after a rollback, and after a second release."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from rollout_helpers import release

from edgeops.errors import RolloutError
from registry.rollout_state import RegisteredVersion
from registry.rollouts import RolloutManager

pytestmark = pytest.mark.slow  # real MLflow registry on SQLite, real bundles

COHORT = "pi-fleet-eu"
FLOAT, PRUNED = "digits-tflite-f32", "digits-prune-tflite-f32"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(minutes=20)
        return self.now


def aliases(client) -> dict[str, dict[str, str]]:
    """{alias: {registered model: version}} for this cohort's two aliases."""
    out: dict[str, dict[str, str]] = {f"{COHORT}-stable": {}, f"{COHORT}-canary": {}}
    for rm in client.search_registered_models():
        for alias, version in (rm.aliases or {}).items():
            if alias in out:
                out[alias][rm.name] = str(version)
    return out


def expect(client, stable: tuple[str, str] | None, canary: tuple[str, str] | None) -> None:
    got = aliases(client)
    assert got[f"{COHORT}-stable"] == (dict([stable]) if stable else {})
    assert got[f"{COHORT}-canary"] == (dict([canary]) if canary else {})


def test_aliases_follow_the_channel_through_every_transition(
    local_repo, mlflow_client, experiment_run, tiny_tflite, bad_tflite, catalog, tmp_path
) -> None:
    path, spec, x = tiny_tflite
    mgr = RolloutManager(local_repo, catalog, mlflow_client, clock=Clock(), keys_dir=tmp_path / "k")
    v1, ref1 = release(mlflow_client, experiment_run, local_repo, path, spec, x)

    # first publication: the history starts here, the stable alias is on the float model
    s = mgr.publish_stable(COHORT, RegisteredVersion(FLOAT, v1), "digits", ref1, actor="pipeline")
    assert [t.action for t in s.history] == ["publish"] and s.history[0].model == FLOAT
    assert mgr.channel(COHORT).stable == ref1
    expect(mlflow_client, (FLOAT, v1), None)
    assert mgr.publish_stable(COHORT, RegisteredVersion(FLOAT, v1), "digits", ref1, actor="pipeline") == s
    with pytest.raises(RolloutError, match="first stable"):
        mgr.rollback(COHORT, actor="bob")

    # a pruned variant (another registered model) is the candidate
    p1, pref1 = release(mlflow_client, experiment_run, local_repo, bad_tflite, spec, x, model_name="digits-prune")
    s = mgr.plan(COHORT, PRUNED, p1, actor="alice", steps=(10, 100), min_dwell_s=0, min_count=0)
    assert s.previous_stable_version == RegisteredVersion(FLOAT, v1)  # not digits-prune-...
    assert s.summary()["stable_model"] == FLOAT and s.summary()["model"] == PRUNED
    expect(mlflow_client, (FLOAT, v1), None)
    mgr.start(COHORT, actor="alice")
    expect(mlflow_client, (FLOAT, v1), (PRUNED, p1))
    mgr.advance(COHORT, actor="alice")  # 10% -> 100%
    expect(mlflow_client, (FLOAT, v1), (PRUNED, p1))

    # rollback: one stable alias, on the model devices run again; the candidate carries none
    s = mgr.rollback(COHORT, actor="bob", reason="bad feedback")
    assert mgr.channel(COHORT).stable == ref1 and s.stable_version == RegisteredVersion(FLOAT, v1)
    expect(mlflow_client, (FLOAT, v1), None)
    assert mgr.rollback(COHORT, actor="bob") == s  # re-run: nothing changes
    expect(mlflow_client, (FLOAT, v1), None)
    row = {r["cohort"]: r for r in mgr.cohorts()}[COHORT]
    assert row["stable"]["registered_model"] == FLOAT and row["candidate"] is None

    # a second release of the pruned model goes all the way: the stable alias moves models
    p2, pref2 = release(mlflow_client, experiment_run, local_repo, path, spec, x, model_name="digits-prune")
    mgr.plan(COHORT, PRUNED, p2, actor="alice", steps=(50, 100), min_dwell_s=0, min_count=0)
    mgr.start(COHORT, actor="alice")
    expect(mlflow_client, (FLOAT, v1), (PRUNED, p2))
    mgr.advance(COHORT, actor="alice")
    s = mgr.advance(COHORT, actor="alice")  # past the last step: promoted to stable
    assert s.status == "completed" and mgr.channel(COHORT).stable == pref2
    expect(mlflow_client, (PRUNED, p2), None)
    assert s.summary()["stable_model"] == PRUNED and s.summary()["stable_version"] == p2
    row = {r["cohort"]: r for r in mgr.cohorts()}[COHORT]
    assert row["stable"]["registered_model"] == PRUNED and row["stable"]["model_version"] == p2

    # rolling back a completed rollout returns the float model's stable and its alias
    mgr.rollback(COHORT, actor="bob")
    assert mgr.channel(COHORT).stable == ref1
    expect(mlflow_client, (FLOAT, v1), None)
    actions = [t.action for t in mgr.state(COHORT).history]
    assert actions == ["publish", "plan", "start", "advance", "rollback", "plan", "start", "advance",
                       "complete", "rollback"]


def test_publishing_a_stable_is_refused_while_a_rollout_runs(
    local_repo, mlflow_client, experiment_run, tiny_tflite, bad_tflite, catalog, tmp_path
) -> None:
    path, spec, x = tiny_tflite
    mgr = RolloutManager(local_repo, catalog, mlflow_client, clock=Clock(), keys_dir=tmp_path / "k")
    v1, ref1 = release(mlflow_client, experiment_run, local_repo, path, spec, x)
    mgr.publish_stable(COHORT, RegisteredVersion(FLOAT, v1), "digits", ref1, actor="pipeline")
    v2, ref2 = release(mlflow_client, experiment_run, local_repo, bad_tflite, spec, x)
    mgr.plan(COHORT, FLOAT, v2, actor="alice")
    mgr.start(COHORT, actor="alice")
    v3, ref3 = release(mlflow_client, experiment_run, local_repo, path, spec, x, model_name="digits-prune")
    with pytest.raises(RolloutError, match="is running on pi-fleet-eu"):
        mgr.publish_stable(COHORT, RegisteredVersion(PRUNED, v3), "digits-prune", ref3, actor="pipeline")
    assert mgr.channel(COHORT).stable == ref1 and mgr.channel(COHORT).candidate == ref2
    expect(mlflow_client, (FLOAT, v1), (FLOAT, v2))


def test_publish_path_records_the_first_stable_then_starts_a_canary(
    local_repo, mlflow_client, experiment_run, tiny_tflite, bad_tflite, catalog, tmp_path, monkeypatch
) -> None:
    """What flows.publish calls per cohort (flows.rollout.release_to_cohort): the first release is
    the stable, recorded in the history with its alias; a retry changes nothing; the next release
    of another registered model is a canary and names the stable it replaces for the report."""
    import yaml

    from edgeops.settings import Settings
    from flows.rollout import release_to_cohort

    devices = tmp_path / "devices.yaml"
    devices.write_text(yaml.safe_dump(catalog.model_dump(
        exclude={"profiles": {"__all__": {"name"}}, "cohorts": {"__all__": {"name"}}})))
    for k, v in {"EDGEOPS_HOME": str(tmp_path / "home"), "EDGEOPS_STORE_URL": local_repo.store.url,
                 "EDGEOPS_KEYS_DIR": str(tmp_path / "keys"), "EDGEOPS_DEVICES": str(devices),
                 "MLFLOW_TRACKING_URI": mlflow_client.tracking_uri}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    settings = Settings.from_env()
    path, spec, x = tiny_tflite
    v1, ref1 = release(mlflow_client, experiment_run, local_repo, path, spec, x)
    reg1 = {"name": FLOAT, "version": v1, "model_name": "digits", "target": "tflite-f32"}
    assert release_to_cohort(mlflow_client, settings, catalog, COHORT, reg1, ref1, True) == {
        "role": "stable", "replaces": None}
    assert release_to_cohort(mlflow_client, settings, catalog, COHORT, reg1, ref1, True)["role"] == "stable"
    mgr = RolloutManager(local_repo, catalog, mlflow_client)
    assert [t.action for t in mgr.state(COHORT).history] == ["publish"]  # the retry changed nothing
    expect(mlflow_client, (FLOAT, v1), None)
    p1, pref1 = release(mlflow_client, experiment_run, local_repo, bad_tflite, spec, x, model_name="digits-prune")
    reg2 = {"name": PRUNED, "version": p1, "model_name": "digits-prune", "target": "tflite-f32"}
    out = release_to_cohort(mlflow_client, settings, catalog, COHORT, reg2, pref1, True)
    assert out == {"role": "canary", "replaces": {"registered_model": FLOAT, "version": v1}}
    assert mgr.channel(COHORT).candidate == pref1 and mgr.channel(COHORT).stable == ref1
    expect(mlflow_client, (FLOAT, v1), (PRUNED, p1))

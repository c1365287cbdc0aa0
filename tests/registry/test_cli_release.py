"""The release manager's CLI on a real store and MLflow registry: tables, --json, exit codes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from rich.console import Console
from rollout_helpers import release
from typer.testing import CliRunner

import flows.controller  # noqa: F401  # Prefect imported before CliRunner swaps the streams
from edgeops.cli.release import cohorts_app, parse_duration, parse_steps, release_app
from edgeops.errors import ConfigError
from registry.rollout_state import RegisteredVersion
from registry.rollouts import RolloutManager

pytestmark = pytest.mark.slow  # trains nothing, but registers real models in MLflow


@pytest.fixture
def env(
    tmp_path: Path,
    local_repo,
    mlflow_client,
    experiment_run,
    tiny_tflite,
    bad_tflite,
    catalog,
    monkeypatch,
):
    path, spec, x = tiny_tflite
    v1, ref1 = release(mlflow_client, experiment_run, local_repo, path, spec, x)
    RolloutManager(local_repo, catalog, mlflow_client).publish_stable(  # as flows.publish does
        "pi-fleet-eu", RegisteredVersion("digits-tflite-f32", v1), "digits", ref1, actor="release-pipeline"
    )
    v2, _ = release(mlflow_client, experiment_run, local_repo, bad_tflite, spec, x)
    devices = tmp_path / "devices.yaml"
    devices.write_text(
        yaml.safe_dump(
            catalog.model_dump(
                exclude={"profiles": {"__all__": {"name"}}, "cohorts": {"__all__": {"name"}}}
            )
        )
    )
    values = {
        "EDGEOPS_HOME": str(tmp_path / "home"),
        "EDGEOPS_STORE_URL": local_repo.store.url,
        "EDGEOPS_KEYS_DIR": str(tmp_path / "keys"),
        "EDGEOPS_DEVICES": str(devices),
        "MLFLOW_TRACKING_URI": mlflow_client.tracking_uri,
        "EDGEOPS_ACTOR": "carol",
    }
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    import edgeops.cli.release as cli

    monkeypatch.setattr(cli, "console", Console(width=220))
    monkeypatch.setattr(cli, "err_console", Console(width=220, stderr=True))
    return v1, v2


def test_release_commands_end_to_end(env) -> None:
    v1, v2 = env
    r = CliRunner()
    out = r.invoke(cohorts_app, ["list", "--json"])
    assert out.exit_code == 0, out.output
    rows = {row["cohort"]: row for row in json.loads(out.output)}
    assert (
        rows["pi-fleet-eu"]["stable"]["model_version"] == v1
        and rows["mcu-line-a"]["stable"] is None
    )
    out = r.invoke(
        release_app,
        [
            "plan",
            "pi-fleet-eu",
            "-m",
            "digits-tflite-f32",
            "-v",
            v2,
            "--steps",
            "10,100",
            "--dwell",
            "1m",
            "--json",
        ],
    )
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["status"] == "planned"
    again = r.invoke(release_app, ["plan", "pi-fleet-eu", "-m", "digits-tflite-f32", "-v", v2])
    assert again.exit_code == 11 and "already planned" in again.output
    assert r.invoke(release_app, ["start", "pi-fleet-eu"]).exit_code == 0
    out = r.invoke(release_app, ["status", "pi-fleet-eu", "--json"])
    assert json.loads(out.output)[0]["percentage"] == 10
    out = r.invoke(release_app, ["status"])
    assert out.exit_code == 0 and "pi-fleet-eu" in out.output and "running" in out.output
    assert r.invoke(release_app, ["pause", "pi-fleet-eu", "-r", "looks odd"]).exit_code == 0
    assert r.invoke(release_app, ["advance", "pi-fleet-eu"]).exit_code == 11
    assert r.invoke(release_app, ["resume", "pi-fleet-eu"]).exit_code == 0
    out = r.invoke(release_app, ["rollback", "pi-fleet-eu", "--reason", "bad feedback", "--json"])
    assert out.exit_code == 0 and json.loads(out.output)["status"] == "rolled_back"
    hist = json.loads(r.invoke(release_app, ["history", "pi-fleet-eu", "--json"]).output)
    # the history starts at the first publication
    assert [h["action"] for h in hist] == ["publish", "plan", "start", "pause", "resume", "rollback"]
    assert hist[0]["model"] == "digits-tflite-f32" and hist[0]["version"] == v1
    assert all(h["actor"] == "carol" for h in hist[1:]) and hist[3]["reason"] == "looks odd"
    table = r.invoke(release_app, ["history", "pi-fleet-eu"])
    assert table.exit_code == 0 and "bad feedback" in table.output
    rows = {
        row["cohort"]: row for row in json.loads(r.invoke(cohorts_app, ["list", "--json"]).output)
    }
    assert (
        rows["pi-fleet-eu"]["stable"]["model_version"] == v1
        and rows["pi-fleet-eu"]["candidate"] is None
    )


def test_cli_errors_are_one_line_with_exit_codes(env) -> None:
    r = CliRunner()
    out = r.invoke(release_app, ["advance", "nope"])
    assert (
        out.exit_code == 11
        and "unknown cohort 'nope'" in out.output
        and "Traceback" not in out.output
    )
    out = r.invoke(release_app, ["plan", "mcu-line-a", "-m", "digits-tflite-f32", "-v", "1"])
    assert out.exit_code == 11 and "runs tflite-int8" in out.output
    out = r.invoke(
        release_app,
        ["plan", "pi-fleet-eu", "-m", "digits-tflite-f32", "-v", "1", "--dwell", "soon"],
    )
    assert out.exit_code == 2 and "bad duration" in out.output


def test_second_machine_without_keys_reads_but_never_signs(env, tmp_path, monkeypatch) -> None:
    """A machine pointed at the same store with no keys: read-only commands need a trusted root
    and create no key; given the exported root it reads and verifies, and a command that must
    sign fails with one line while the channel stays as the key holders left it."""
    from edgeops.cli.keys import keys_app

    r = CliRunner()
    _, v2 = env
    assert r.invoke(release_app, ["plan", "pi-fleet-eu", "-m", "digits-tflite-f32", "-v", v2]).exit_code == 0
    assert r.invoke(release_app, ["start", "pi-fleet-eu"]).exit_code == 0
    root = tmp_path / "exported-root.json"
    out = r.invoke(keys_app, ["export-root", str(root)])
    assert out.exit_code == 0 and "root v1" in out.output
    second = tmp_path / "second-machine-keys"
    monkeypatch.setenv("EDGEOPS_KEYS_DIR", str(second))
    out = r.invoke(release_app, ["status", "--json"])
    assert out.exit_code == 2 and "no trusted update-channel root" in out.output
    assert not second.exists() or not any(second.rglob("*.pem"))  # nothing minted
    assert r.invoke(keys_app, ["trust", str(root)]).exit_code == 0
    out = r.invoke(release_app, ["status", "pi-fleet-eu", "--json"])
    assert out.exit_code == 0 and json.loads(out.output)[0]["status"] == "running"
    out = r.invoke(release_app, ["rollback", "pi-fleet-eu"])
    assert out.exit_code == 2 and "no release signing key on this machine" in out.output
    assert len(out.output.strip().splitlines()) == 1 and "Traceback" not in out.output
    assert not any(second.rglob("*.pem"))
    out = r.invoke(release_app, ["status", "pi-fleet-eu", "--json"])
    assert json.loads(out.output)[0]["status"] == "running"  # unchanged


def test_parsers() -> None:
    assert (
        parse_duration("90") == 90 and parse_duration("10m") == 600 and parse_duration("2h") == 7200
    )
    assert parse_steps("1, 5,100") == (1.0, 5.0, 100.0)
    with pytest.raises(ConfigError):
        parse_steps("a,b")


def test_controller_flow_runs_in_prefect_and_leaves_an_artifact(env, monkeypatch, tmp_path) -> None:
    """The deployed flow: settings from the environment, gate from the (empty) telemetry table,
    a hold decision, and a markdown artifact `rollout-pi-fleet-eu` in Prefect."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterKey,
        FlowRunFilter,
        TaskRunFilter,
    )
    from prefect.client.schemas.sorting import ArtifactSort

    from flows.controller import rollout_controller

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    _, v2 = env
    r = CliRunner()
    assert (
        r.invoke(
            release_app, ["plan", "pi-fleet-eu", "-m", "digits-tflite-f32", "-v", v2]
        ).exit_code
        == 0
    )
    assert r.invoke(release_app, ["start", "pi-fleet-eu"]).exit_code == 0
    out = rollout_controller(actor="controller-test")
    assert out["pi-fleet-eu"]["action"] == "hold"
    assert "canary telemetry 0 of 50" in out["pi-fleet-eu"]["reasons"]
    arts = get_client(sync_client=True).read_artifacts(
        artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["rollout-pi-fleet-eu"])),
        flow_run_filter=FlowRunFilter(),
        task_run_filter=TaskRunFilter(),
        offset=0,
        limit=5,
        sort=ArtifactSort.UPDATED_DESC,
    )
    assert arts and "decision: **hold**" in arts[0].data
    hist = json.loads(r.invoke(release_app, ["history", "pi-fleet-eu", "--json"]).output)
    assert [h["action"] for h in hist] == ["publish", "plan", "start"]  # a hold changes nothing


def test_advance_is_refused_while_gates_are_unmet(env) -> None:
    """A step with no dwell served and no canary telemetry: status shows each gate's evidence,
    advance refuses with the reasons, --force needs a reason, and the forced advance records it."""
    _, v2 = env
    r = CliRunner()
    plan = ["plan", "pi-fleet-eu", "-m", "digits-tflite-f32", "-v", v2, "--steps", "5,100", "--dwell", "10m"]
    assert r.invoke(release_app, plan).exit_code == 0
    assert r.invoke(release_app, ["start", "pi-fleet-eu"]).exit_code == 0
    out = r.invoke(release_app, ["status", "pi-fleet-eu", "--json"])
    row = json.loads(out.output)[0]
    assert row["model"] == "digits-tflite-f32" and row["stable_model"] == "digits-tflite-f32"
    gates = row["gates"]
    assert 590 <= gates["dwell_remaining_s"] <= 600 and gates["decision"]["action"] == "hold"
    assert {g["gate"] for g in gates["gates"]} >= {"dwell", "canary records", "stable records",
                                                   "labelled accuracy, canary"}
    table = r.invoke(release_app, ["status", "pi-fleet-eu"])
    assert table.exit_code == 0 and "remaining" in table.output and "controller now: hold" in table.output
    out = r.invoke(release_app, ["advance", "pi-fleet-eu"])
    assert out.exit_code == 11 and "not advancing pi-fleet-eu at 5%" in out.output
    assert "canary telemetry 0 of 50" in out.output and "Traceback" not in out.output
    out = r.invoke(release_app, ["advance", "pi-fleet-eu", "--force"])
    assert out.exit_code == 11 and "--force needs --reason" in out.output
    state = json.loads(r.invoke(release_app, ["status", "pi-fleet-eu", "--json"]).output)[0]
    assert state["percentage"] == 5  # both refusals changed nothing
    out = r.invoke(release_app, ["advance", "pi-fleet-eu", "--force", "-r", "hotfix for a crash", "--json"])
    assert out.exit_code == 0 and json.loads(out.output)["percentage"] == 100
    last = json.loads(r.invoke(release_app, ["history", "pi-fleet-eu", "--json"]).output)[-1]
    assert last["action"] == "advance" and last["reason"].startswith("forced: hotfix for a crash")
    assert "canary telemetry 0 of 50" in last["reason"]
    out = r.invoke(release_app, ["advance", "pi-fleet-eu", "--force", "-r", "promote now", "--json"])
    assert out.exit_code == 0 and json.loads(out.output)["status"] == "completed"
    from mlflow import MlflowClient

    aliases = MlflowClient(os.environ["MLFLOW_TRACKING_URI"]).get_registered_model("digits-tflite-f32").aliases
    assert str(aliases["pi-fleet-eu-stable"]) == v2 and "pi-fleet-eu-canary" not in aliases  # mirrored


def test_candidates_and_one_controller_pass(env) -> None:
    v1, v2 = env
    r = CliRunner()
    out = r.invoke(release_app, ["candidates", "pi-fleet-eu", "--json"])
    assert out.exit_code == 0, out.output
    rows = json.loads(out.output)
    assert [(c["registered_model"], c["version"]) for c in rows] == [
        ("digits-tflite-f32", v2), ("digits-tflite-f32", v1)]
    assert rows[1]["on_cohort"] == "stable" and rows[0]["on_cohort"] is None
    assert json.loads(r.invoke(release_app, ["candidates", "mcu-line-a", "--json"]).output) == []
    table = r.invoke(release_app, ["candidates", "mcu-line-a"])
    assert table.exit_code == 0 and "no blessed, releasable version" in table.output
    out = r.invoke(release_app, ["controller", "--once", "--json"])
    assert out.exit_code == 0 and json.loads(out.output) == {}
    assert r.invoke(release_app, ["plan", "pi-fleet-eu", "-m", "digits-tflite-f32", "-v", v2]).exit_code == 0
    assert r.invoke(release_app, ["start", "pi-fleet-eu"]).exit_code == 0
    out = r.invoke(release_app, ["controller", "--once", "--json"])
    decision = json.loads(out.output)["pi-fleet-eu"]
    assert decision["action"] == "hold" and decision["applied"] == "no change"
    out = r.invoke(release_app, ["controller", "--once"])
    assert out.exit_code == 0 and "pi-fleet-eu" in out.output and "hold" in out.output
    rows = json.loads(r.invoke(release_app, ["candidates", "pi-fleet-eu", "--json"]).output)
    assert rows[0]["on_cohort"] == "canary, candidate (running)"


def test_plan_without_model_and_version_takes_the_newest_candidate(env) -> None:
    """`release plan <cohort>` alone plans the first row of `release candidates` and says so; the
    same when only --model is given; --version alone is refused; a newest candidate that already
    runs on the cohort is not planned again."""
    v1, v2 = env
    r = CliRunner()
    out = r.invoke(release_app, ["plan", "pi-fleet-eu", "-v", v2])
    assert out.exit_code == 2 and "--version needs --model" in out.output
    out = r.invoke(release_app, ["plan", "pi-fleet-eu"])
    assert out.exit_code == 0, out.output
    assert f"planning digits-tflite-f32 version {v2}" in out.output and "newest blessed" in out.output
    state = json.loads(r.invoke(release_app, ["status", "pi-fleet-eu", "--json"]).output)[0]
    assert (state["status"], state["model"], state["version"]) == ("planned", "digits-tflite-f32", v2)
    again = r.invoke(release_app, ["plan", "pi-fleet-eu", "-m", "digits-tflite-f32"])
    assert again.exit_code == 11 and f"version {v2}, is already there (candidate (planned))" in again.output
    out = r.invoke(release_app, ["plan", "mcu-line-a"])
    assert out.exit_code == 11 and "no blessed, releasable version for mcu-line-a" in out.output

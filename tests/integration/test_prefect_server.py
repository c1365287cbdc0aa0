"""The retraining deployment on a real `prefect server` with a process worker, fired the way the
drift trigger fires it (`run_deployment` on the deployment name flows.monitoring uses)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from scale_stack import REPO, PrefectStack, two_cohort_catalog

from edgeops.cli.ops import deploy
from edgeops.services import log_tail

TINY = {
    "prepare": {"max_images": 300},
    "train": {"epochs": 2, "distill": {"enabled": False}},
    "compress": {"methods": []},  # distillation and tfmot are tested in tests/components
    "convert": {"targets": ["tflite-f32", "tflite-int8"], "representative_samples": 50, "latency_runs": 5,
                "min_agreement": 0.8},  # the parity gate is tested elsewhere; here: the engines
}
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def _wait_for_flow_run(flow_run_id, timeout: float):
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(flow_run_id)
            if run.state is not None and run.state.type.value in FINAL:
                return run
            if time.monotonic() > deadline:
                return run
            time.sleep(2)


def _link_artifacts(flow_run_id) -> list[str]:
    """The edgeops link artifacts on this test's server (Prefect 3.8 stores a link artifact as
    markdown `[text](url)`); the release made them in its subflow run."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts()
    return [str(a.data) for a in artifacts if (a.key or "").startswith("mlflow-")]


@pytest.mark.slow
def test_drift_fires_retrain_deployment_on_worker(prefect_stack: PrefectStack, tmp_path: Path) -> None:
    from mlflow import MlflowClient
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from components.data import write_example_digits
    from flows.monitoring import RETRAIN_DEPLOYMENT

    data = tmp_path / "digits"
    write_example_digits(data)
    out = deploy(prefect_stack.env, REPO)  # every deployment in prefect.yaml
    for name in ("release", "retrain", "monitor", "rollout-controller"):
        assert name in out

    reason = "drift: cohort pi-fleet data drift share 0.8"
    with temporary_settings(updates={PREFECT_API_URL: prefect_stack.api_url}):
        started = run_deployment(
            RETRAIN_DEPLOYMENT,
            parameters={"data_dir": str(data), "reason": reason, "merge_feedback": True, "overrides": TINY},
            job_variables={"env": {"EDGEOPS_DEVICES": str(two_cohort_catalog(tmp_path / "devices.yaml"))}},
            timeout=0,
        )
        assert started.work_pool_name == "edgeops-process"
        run = _wait_for_flow_run(started.id, timeout=900)

    worker_log = log_tail(prefect_stack.worker.log, 30)
    assert run.state is not None and run.state.type.value == "COMPLETED", (
        f"flow run ended {run.state}: {worker_log}"
    )
    assert str(started.id) in prefect_stack.worker.log.read_text()  # this worker ran it

    # The run's side effects landed in the worker's EDGEOPS_HOME: a release run with the drift reason
    home = Path(prefect_stack.env["EDGEOPS_HOME"])
    db = f"sqlite:///{home / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=db, registry_uri=db)
    runs = client.search_runs(
        [client.get_experiment_by_name("edgeops").experiment_id], "tags.`edgeops.kind` = 'release'"
    )
    assert len(runs) == 1
    assert runs[0].info.status == "FINISHED"
    assert runs[0].data.tags["edgeops.trigger"] == f"retrain: {reason}"
    # MLflow -> Prefect: the run names the flow run, its page and the deployment that made it
    tags = runs[0].data.tags
    assert tags["prefect.root_flow_run_id"] == str(started.id)  # the release runs as a subflow
    assert tags["prefect.deployment"] == "retrain"
    assert tags["mlflow.source.name"] == "prefect:retrain/release-pipeline"
    assert tags["prefect.flow_run_url"].endswith(f"/runs/flow-run/{tags['prefect.flow_run_id']}")
    experiment = client.get_experiment_by_name("edgeops")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    # Prefect -> MLflow: link artifacts to the release run and its registered versions
    with temporary_settings(updates={PREFECT_API_URL: prefect_stack.api_url}):
        links = _link_artifacts(started.id)
    assert any(f"/runs/{runs[0].info.run_id})" in link for link in links), links
    assert any("/#/models/" in link for link in links), links
    versions = client.search_model_versions(f"tags.run_id = '{runs[0].info.run_id}'")
    assert {v.tags.get("target") for v in versions} >= {"tflite-f32", "tflite-int8"}
    assert (home / "store" / "tuf" / "metadata" / "timestamp.json").is_file()  # the update channel

    # The monitor's own path on a server: request_retrain emits `edgeops.retrain.requested` and
    # the deployment trigger in prefect.yaml (not our code) creates the retrain run, rendering the
    # event's reason and cause runs into its parameters. The pool is paused first so the run is
    # only created, not executed (that part is the run above).
    with temporary_settings(updates={PREFECT_API_URL: prefect_stack.api_url}):
        triggered = _triggered_retrain(prefect_stack, "harm: pi-fleet-eu/1 @ 2026-11-20 10:00",
                                       ["run-a", "run-b"])
    assert triggered.parameters["reason"] == "harm: pi-fleet-eu/1 @ 2026-11-20 10:00"
    from flows.retrain import run_ids

    assert run_ids(triggered.parameters["cause_runs"]) == ["run-a", "run-b"]


def _triggered_retrain(stack: PrefectStack, reason: str, causes: list[str], timeout: float = 120):
    """Emit the retrain event the way the monitor does (a separate process pointed at the
    server, as a monitor flow run is) and wait for the flow run the trigger creates."""
    import subprocess
    import sys

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolUpdate
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    from flows.monitoring import RETRAIN_DEPLOYMENT

    with get_client(sync_client=True) as client:
        client.update_work_pool("edgeops-process", WorkPoolUpdate(is_paused=True))
        deployment = client.read_deployment_by_name(RETRAIN_DEPLOYMENT)
        emit = (
            "import sys; from edgeops.settings import Settings; from flows.monitoring import request_retrain;"
            "from prefect.events.worker import EventsWorker;"
            "how, event = request_retrain(Settings.from_env(), sys.argv[1], ['pi-fleet-eu'], None,"
            " {'cause_runs': sys.argv[2:]});"
            "EventsWorker.drain_all(); assert how == 'event' and event, (how, event)"
        )
        done = subprocess.run([sys.executable, "-c", emit, reason, *causes], env=stack.env, cwd=REPO,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        deadline = time.monotonic() + timeout
        while True:
            runs = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])))
            found = [r for r in runs if r.parameters.get("reason") == reason]
            if found or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert found, f"no retrain run from the trigger within {timeout:.0f} s"
        client.delete_flow_run(found[0].id)
        client.update_work_pool("edgeops-process", WorkPoolUpdate(is_paused=False))
    return found[0]

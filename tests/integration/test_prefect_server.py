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

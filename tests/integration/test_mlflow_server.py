"""The release pipeline against `mlflow server` (PostgreSQL backend, artifacts proxied to moto's
S3) and an S3 object store, read back over HTTP only through the MLflow REST client."""

from __future__ import annotations

from pathlib import Path

import pytest
from scale_stack import MlflowServer, two_cohort_catalog

TINY = {
    "prepare": {"max_images": 300},
    "train": {"epochs": 2, "distill": {"enabled": False}},
    "compress": {"methods": []},  # distillation and tfmot are tested in tests/components
    "convert": {"targets": ["tflite-f32", "tflite-int8"], "representative_samples": 50, "latency_runs": 5,
                "min_agreement": 0.8},  # the parity gate is tested elsewhere; here: the engines
}


def _first_file(client, run_id: str, path: str | None = None) -> str | None:
    for info in client.list_artifacts(run_id, path):
        if not info.is_dir:
            return info.path
        found = _first_file(client, run_id, info.path)
        if found:
            return found
    return None


@pytest.mark.slow
def test_release_on_mlflow_server_postgres_s3(
    mlflow_server: MlflowServer, s3_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3
    import mlflow
    import numpy as np
    import psycopg2
    from mlflow import MlflowClient

    from components.data import write_example_digits
    from components.prepare import PreparedData
    from device.preprocessing import normalize
    from flows.release import release_pipeline
    from flows.tracking import LOG_CALLS

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    monkeypatch.setenv("EDGEOPS_HOME", str(tmp_path / "edgeops"))
    monkeypatch.setenv("EDGEOPS_DEVICES", str(two_cohort_catalog(tmp_path / "devices.yaml")))
    data = tmp_path / "digits"
    write_example_digits(data)
    LOG_CALLS.reset()

    result = release_pipeline(str(data), model_name="digits-server", overrides=TINY)

    client = MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)
    run = client.get_run(result["run_id"])
    assert run.info.status == "FINISHED"
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")  # proxied: clients never see S3
    assert run.data.params["train.epochs"] == "2"
    assert run.data.tags["edgeops.data_version"] == result["data_version"]
    assert LOG_CALLS.batches > 0 and LOG_CALLS.values > LOG_CALLS.batches  # batched, not one per value

    children = client.search_runs([result["experiment_id"]], f"tags.mlflow.parentRunId = '{run.info.run_id}'")
    stages = {c.data.tags["mlflow.runName"] for c in children}
    assert {"prepare", "train", "convert-tflite-f32", "convert-tflite-int8", "register", "publish"} <= stages

    versions = client.search_model_versions(f"tags.run_id = '{run.info.run_id}'")
    verified = [v for v in versions if v.tags.get("verified") != "false"]  # Core ML: converted, not run
    assert {v.tags["target"] for v in verified} == {"tflite-f32", "tflite-int8"}
    for v in versions:
        assert v.tags["data_version"] == result["data_version"]
        assert v.run_id  # the stage run that logged the model

    # An artifact: listed and downloaded over HTTP, stored by the server in S3 (moto).
    train = next(c for c in children if c.data.tags["mlflow.runName"] == "train")
    artifact = _first_file(client, train.info.run_id)
    assert artifact is not None
    local = Path(client.download_artifacts(train.info.run_id, artifact, str(tmp_path / "dl")))
    assert local.stat().st_size > 0
    s3 = boto3.client("s3", endpoint_url=s3_env["AWS_ENDPOINT_URL"])
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=mlflow_server.bucket, Prefix="mlartifacts/")["Contents"]]
    assert any(k.endswith(artifact) for k in keys)

    # The registered int8 model loads over HTTP as a pyfunc and predicts on held-out images.
    int8 = next(v for v in versions if v.tags["target"] == "tflite-int8")
    mlflow.set_tracking_uri(mlflow_server.url)
    model = mlflow.pyfunc.load_model(f"models:/{int8.name}/{int8.version}")
    prepared = PreparedData.load(Path(result["work_dir"]) / "prepared")
    probs = np.asarray(model.predict(normalize(prepared.x_test[:8], prepared.spec)))
    assert probs.shape == (8, len(prepared.labels))
    assert np.allclose(probs.sum(axis=1), 1.0, atol=0.05)  # dequantised softmax

    # The backend store really is PostgreSQL.
    with psycopg2.connect(mlflow_server.backend_store_uri.replace("+psycopg2", "")) as conn, conn.cursor() as cur:
        cur.execute("SELECT status FROM runs WHERE run_uuid = %s", (run.info.run_id,))
        assert cur.fetchone() == ("FINISHED",)

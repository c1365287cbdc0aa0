"""The server cohort in the fleet run: field frames as real HTTP requests through the share router
to MLflow's scoring server, scored ones carrying their labels, logged to the store; stable and
canary in their shares; a version whose server cannot start (its scoring server exits, or its
files cannot be loaded) is one line naming the cohort."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
COHORT = "inference-servers"


@pytest.mark.slow
def test_server_cohort_traffic_in_the_fleet_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow

    from edgeops.settings import Settings

    for key, value in {"EDGEOPS_HOME": tmp_path / "home", "EDGEOPS_STORE_URL": tmp_path / "store",
                       "EDGEOPS_KEYS_DIR": tmp_path / "keys", "EDGEOPS_DEVICES": REPO / "devices.yaml"}.items():
        monkeypatch.setenv(key, str(value))
    # the fluent API too (log_model inside register_variant), as the release flow's environment has it
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'home' / 'mlflow.db'}")
    settings = Settings.from_env()
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_registry_uri(settings.mlflow_tracking_uri)
    try:
        _fleet_run(settings, tmp_path)
    finally:
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])


def _fleet_run(settings: Any, tmp_path: Path) -> None:
    from sklearn.datasets import load_digits

    import components  # noqa: F401  (legacy Keras before tensorflow)
    from components.convert.savedmodel import to_savedmodel
    from components.keras import keras, tf
    from device.preprocessing import PreprocessingSpec, normalize
    from flows.serving import model_location, run_server_cohort
    from registry.mlflow_models import Lineage, register_variant, set_cohort_alias
    from registry.serving import read_requests
    from registry.share_rollout import SharePlan, start_share_rollout

    client = settings.mlflow_client()
    exp = client.create_experiment("t", artifact_location=(tmp_path / "artifacts").as_uri())
    run = client.create_run(exp).info.run_id

    d = load_digits()
    x01 = (d.images / 16.0).astype(np.float32)[..., None]
    spec = PreprocessingSpec(8, 8, 1, (float(x01.mean()),), (float(x01.std()),), tuple("0123456789"))
    versions = []
    for seed in (1, 2):
        tf.random.set_seed(seed)
        model = keras.Sequential([keras.layers.Input((8, 8, 1)), keras.layers.Flatten(),
                                  keras.layers.Dense(10, activation="softmax")])
        model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
        model.fit(normalize(x01[:1200], spec), d.target[:1200], epochs=seed, verbose=0)
        export = to_savedmodel(model, tmp_path / f"sm{seed}", name="digits", version=seed)
        mv = register_variant(client, run, export, spec, normalize(x01[:2], spec), model_name="digits",
                              target="savedmodel", lineage=Lineage("data", "c", f"release-{seed}", "models:/m"))
        versions.append(str(mv.version))
    name = "digits-savedmodel"
    field, labels = x01[1200:1400], d.target[1200:1400]
    params = settings.params().fleet.model_copy(update={"devices_per_cohort": 3, "hours": 1.0,
                                                        "inferences_per_hour": 40, "label_rate": 0.5,
                                                        "step_minutes": 20.0})
    start = datetime(2026, 12, 2, 10, tzinfo=UTC)

    assert run_server_cohort(settings, COHORT, field, labels, params=params) == (
        f"cohort {COHORT}: nothing released to the model server yet")
    set_cohort_alias(client, name, COHORT, "stable", versions[0])
    line = run_server_cohort(settings, COHORT, field, labels, params=params, start=start, timeout_s=900)
    assert line.startswith(f"{name} in MLflow's scoring server behind the share router: stable v1: top-1"), line
    assert "on 120 field frames in 15 HTTP requests" in line
    rows = read_requests(settings.store(), COHORT, start, start + timedelta(hours=1))
    assert len(rows) == 120 and {r["version"] for r in rows} == {"1"} and {r["status"] for r in rows} == {200}
    scored = int((np.random.default_rng(params.seed + 2).random(120) < 0.5).sum())
    assert sum(r["label"] is not None for r in rows) == scored and f"{scored} scored" in line
    assert {r["device_id"] for r in rows} == {f"{COHORT}-client-{i:03d}" for i in range(3)}
    assert min(r["at"] for r in rows) >= "2026-12-02T10:00:00Z" and max(r["at"] for r in rows) < "2026-12-02T11"

    # a share rollout running: both versions answer, in the step's share of requests
    start_share_rollout(client, name, COHORT, versions[1], start, SharePlan(steps=(50.0, 100.0)))
    line = run_server_cohort(settings, COHORT, field, labels, params=params, start=start + timedelta(hours=1),
                             timeout_s=900)
    assert "canary at 50% of requests: canary v2: top-1" in line and "; stable v1: top-1" in line, line
    rows = read_requests(settings.store(), COHORT, start + timedelta(hours=1), start + timedelta(hours=2))
    assert {r["version"] for r in rows} == {"1", "2"}

    # the canary's files gone: its scoring server exits at start (the stable's is stopped with it);
    # one line naming the cohort and the server's own reason, no exception: the fleet run goes on
    shutil.rmtree(urlparse(model_location(client, name, versions[1])).path)
    line = run_server_cohort(settings, COHORT, field, labels, params=params, timeout_s=900)
    assert line.startswith(f"cohort {COHORT}: the model server exited with "), line
    assert f"(models:/{name}/{versions[1]})" in line and "\n" not in line, line

    # the stable's files gone: its server cannot start; one line naming the cohort, no exception
    shutil.rmtree(urlparse(model_location(client, name, versions[0])).path)
    line = run_server_cohort(settings, COHORT, field, labels, params=params)
    assert line.startswith(f"cohort {COHORT}: ") and "\n" not in line, line


@pytest.mark.slow
def test_a_host_cohort_runs_its_registered_openvino_ir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """intel-vision-line's hosts load the registered IR themselves: the fleet run loads the version
    behind `intel-vision-line-stable` from the registry in OpenVINO and runs field frames."""
    import mlflow
    from sklearn.datasets import load_digits

    import components  # noqa: F401  (legacy Keras before tensorflow)
    from components.convert.openvino import to_openvino
    from components.keras import keras, tf
    from device.preprocessing import PreprocessingSpec, normalize
    from edgeops.settings import Settings
    from flows.serving import run_host_cohort
    from registry.mlflow_models import Lineage, register_variant, set_cohort_alias

    for key, value in {"EDGEOPS_HOME": tmp_path / "home", "EDGEOPS_DEVICES": REPO / "devices.yaml",
                       "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'home' / 'mlflow.db'}"}.items():
        monkeypatch.setenv(key, str(value))
    settings = Settings.from_env()
    client = settings.mlflow_client()
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_registry_uri(settings.mlflow_tracking_uri)
    try:
        run = client.create_run(client.create_experiment("t", (tmp_path / "a").as_uri())).info.run_id
        d = load_digits()
        x01 = (d.images / 16.0).astype(np.float32)[..., None]
        spec = PreprocessingSpec(8, 8, 1, (float(x01.mean()),), (float(x01.std()),), tuple("0123456789"))
        tf.random.set_seed(0)
        model = keras.Sequential([keras.layers.Input((8, 8, 1)), keras.layers.Flatten(),
                                  keras.layers.Dense(10, activation="softmax")])
        model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
        model.fit(normalize(x01[:1200], spec), d.target[:1200], epochs=5, verbose=0)
        ir = to_openvino(model, tmp_path / "ir")
        params = settings.params().fleet.model_copy(update={"devices_per_cohort": 2, "hours": 1.0,
                                                            "inferences_per_hour": 30, "step_minutes": 30.0})
        field, labels = x01[1200:1500], d.target[1200:1500]
        assert run_host_cohort(settings, "intel-vision-line", field, labels, params=params) is None  # nothing yet
        mv = register_variant(client, run, ir, spec, normalize(x01[:2], spec), model_name="digits",
                              target="openvino", lineage=Lineage("data", "c", "release-1", "models:/m"))
        set_cohort_alias(client, "digits-openvino", "intel-vision-line", "stable", mv.version)
        line = run_host_cohort(settings, "intel-vision-line", field, labels, params=params)
    finally:
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])
    from flows.web_cohort import field_frames

    images, y, _ = field_frames(field, labels, None, 60, 1.0, 30.0, params.seed)
    expected = (model.predict(normalize(images.astype(np.float32) / 255, spec), verbose=0).argmax(1) == y).mean()
    head = "digits-openvino v1 (@intel-vision-line-stable) loaded from the registry in its own runtime (openvino): top-1 "
    assert line.startswith(head) and line.endswith("% on 60 field frames"), line
    got = float(line[len(head):].split("%")[0]) / 100
    assert abs(got - expected) <= 1 / 60 + 1e-9  # OpenVINO's f32 agrees with Keras (a near tie may flip one)

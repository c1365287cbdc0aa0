"""Registry fixtures: a tiny real TFLite model, stores, the update channel, a throwaway MLflow."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from device.preprocessing import PreprocessingSpec
from device.store import ObjectStore, open_store
from registry.tuf_keys import Keystore
from registry.tuf_repo import TufRepository


@pytest.fixture(scope="session")
def tiny_tflite(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, PreprocessingSpec, np.ndarray]:
    """A real (untrained-ish) 8x8 digits classifier converted by TFLiteConverter, f32."""
    import tensorflow as tf
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images[:200] / 16.0).astype(np.float32)[..., None]
    spec = PreprocessingSpec(
        8, 8, 1, (float(x.mean()),), (float(x.std()),), tuple(str(i) for i in range(10))
    )
    xn = (x - spec.mean[0]) / spec.std[0]
    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential(
        [
            tf.keras.layers.Input((8, 8, 1)),
            tf.keras.layers.Flatten(),
            tf.keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(xn, d.target[:200], epochs=3, verbose=0)
    path = tmp_path_factory.mktemp("tflite") / "model.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return path, spec, xn


@pytest.fixture
def keystore(tmp_path: Path) -> Keystore:
    return Keystore(tmp_path / "keys")


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return open_store(str(tmp_path / "store"))
    env = request.getfixturevalue("s3_env")
    return open_store(env["EDGEOPS_STORE_URL"], env["AWS_ENDPOINT_URL"])


@pytest.fixture
def local_store(tmp_path: Path) -> ObjectStore:
    return open_store(str(tmp_path / "store"))


@pytest.fixture
def repo(store: ObjectStore, keystore: Keystore, catalog) -> TufRepository:
    """The update channel in `store`, every catalog cohort delegated, keys in `keystore`."""
    r = TufRepository(store, keystore)
    r.init(sorted(catalog.cohorts))
    return r


@pytest.fixture
def local_repo(local_store: ObjectStore, keystore: Keystore, catalog) -> TufRepository:
    r = TufRepository(local_store, keystore)
    r.init(sorted(catalog.cohorts))
    return r


@pytest.fixture(scope="session")
def _mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, migrated MLflow SQLite database, made once and copied per test (fast)."""
    from mlflow import MlflowClient

    db = tmp_path_factory.mktemp("mlflow") / "template.db"
    MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()
    return db


@pytest.fixture
def mlflow_client(tmp_path: Path, _mlflow_template: Path) -> Iterator:
    """A throwaway SQLite tracking store; the fluent URI too, for pyfunc.load_model in tests."""
    import shutil

    import mlflow
    from mlflow import MlflowClient

    shutil.copy(_mlflow_template, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield client
    finally:
        mlflow.set_tracking_uri(previous)
        mlflow.set_registry_uri(previous)


@pytest.fixture
def experiment_run(mlflow_client, tmp_path: Path) -> str:
    exp = mlflow_client.create_experiment("t", artifact_location=(tmp_path / "artifacts").as_uri())
    return mlflow_client.create_run(exp).info.run_id


@pytest.fixture(scope="session")
def bad_tflite(tmp_path_factory: pytest.TempPathFactory, tiny_tflite) -> Path:
    """A real but broken candidate: same shape, weights never trained (a bad release)."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(1)
    model = tf.keras.Sequential(
        [
            tf.keras.layers.Input((8, 8, 1)),
            tf.keras.layers.Flatten(),
            tf.keras.layers.Dense(10, activation="softmax"),
        ]
    )
    path = tmp_path_factory.mktemp("bad") / "model.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return path


@pytest.fixture
def catalog():
    from components.profiles import DeviceCatalog

    return DeviceCatalog.model_validate(
        {
            "profiles": {
                "pi": {
                    "targets": ["tflite-f32"],
                    "max_model_bytes": 10**7,
                    "arena_bytes": 10**7,
                    "latency_budget_ms": 50,
                    "throughput_macs_per_s": 1e9,
                },
                "mcu": {
                    "targets": ["tflite-int8"],
                    "int8_only": True,
                    "max_model_bytes": 10**6,
                    "arena_bytes": 10**6,
                    "latency_budget_ms": 200,
                    "throughput_macs_per_s": 5e7,
                },
            },
            "cohorts": {
                "pi-fleet-eu": {"profile": "pi"},
                "mcu-line-a": {"profile": "mcu", "encrypt": True},
            },
        }
    )

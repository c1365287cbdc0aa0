"""Core ML: converted here, registered as "converted, not run" (no Core ML runtime on Linux),
never blessed, releasable or loadable as a pyfunc."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from registry.mlflow_models import Lineage, register_unverified

LINEAGE = Lineage("data-md5", "commit", "release-run", "models:/m-1")


@pytest.fixture(scope="module")
def keras_model():
    import components  # noqa: F401  (legacy Keras before tensorflow)
    from components.keras import keras, tf

    tf.random.set_seed(0)
    return keras.Sequential([keras.layers.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation="relu"),
                             keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])


@pytest.mark.slow
def test_coreml_converts_registers_as_not_run(keras_model, mlflow_client, experiment_run, tmp_path) -> None:
    import coremltools as ct
    from mlflow.exceptions import MlflowException

    from components.convert.coreml import NOT_RUN, to_coreml

    variants = {t: to_coreml(keras_model, t, tmp_path) for t in ("coreml-f16", "coreml-f32")}
    for target, v in variants.items():
        assert v.path.name == f"model-{target}.mlpackage" and (v.path / "Manifest.json").exists()
        assert v.bytes > 1000 and v.status == NOT_RUN
    if sys.platform != "darwin":  # why it is not verified: Core ML runs only on Apple platforms
        ml = ct.models.MLModel(str(variants["coreml-f16"].path))
        with pytest.raises(Exception, match="only supported on macOS"):
            ml.predict({ml.get_spec().description.input[0].name: np.zeros((1, 8, 8, 1), np.float32)})

    v = variants["coreml-f16"]
    mv = register_unverified(mlflow_client, experiment_run, v.path, model_name="digits", target=v.target,
                             lineage=LINEAGE, status=v.status)
    tags = mlflow_client.get_model_version(mv.name, mv.version).tags
    assert mv.name == "digits-coreml-f16"
    assert tags["verified"] == "false" and tags["releasable"] == "false" and tags["blessed"] == "false"
    assert tags["status"].startswith("converted, not run") and tags["data_version"] == "data-md5"
    again = register_unverified(mlflow_client, experiment_run, v.path, model_name="digits", target=v.target,
                                lineage=LINEAGE, status=v.status)
    assert again.version == mv.version  # idempotent per release run
    import mlflow

    with pytest.raises(MlflowException):  # nothing here can run it, so it is not a pyfunc
        mlflow.pyfunc.load_model(f"models:/{mv.name}/{mv.version}")


def test_unverified_targets_are_checked(keras_model, tmp_path: Path) -> None:
    from components.convert.coreml import to_coreml
    from components.profiles import load_devices
    from edgeops.errors import ConversionError

    devices = Path(__file__).resolve().parents[2] / "devices.yaml"
    assert load_devices(devices).profiles["iphone"].unverified_targets == ("coreml-f16",)
    bad = tmp_path / "d.yaml"
    bad.write_text(devices.read_text().replace("unverified_targets: [coreml-f16]", "unverified_targets: [tflite-f16]"))
    from edgeops.errors import ConfigError

    with pytest.raises(ConfigError, match="unverified_targets"):
        load_devices(bad)
    with pytest.raises(ConversionError, match="not a Core ML target"):
        to_coreml(keras_model, "coreml-int4", tmp_path)

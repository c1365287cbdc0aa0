"""TFLite variants as MLflow registry versions: loadable pyfunc, lineage tags, blessing rule."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from edgeops.errors import BlessingError
from registry.mlflow_models import (
    Lineage,
    register_variant,
    set_cohort_alias,
)


@dataclass(frozen=True)
class _Blessing:
    blessed: bool
    target: str = "tflite-f32"
    reasons: tuple[str, ...] = ()


LINEAGE = Lineage(
    data_version="md5:abc", git_commit="deadbeef", run_id="r0", parent_model="models:/m-parent"
)


def test_register_loads_as_pyfunc_with_lineage(mlflow_client, experiment_run, tiny_tflite) -> None:
    import mlflow

    from device.runtime import TFLiteRunner

    path, spec, x = tiny_tflite
    mv = register_variant(
        mlflow_client,
        experiment_run,
        path,
        spec,
        x[:4],
        model_name="digits",
        target="tflite-f32",
        lineage=LINEAGE,
        blessing=_Blessing(True),
        releasable=True,
        extra_tags={"bundle_id": "b" * 64},
    )
    assert mv.name == "digits-tflite-f32" and str(mv.version) == "1"
    tags = mlflow_client.get_model_version(mv.name, mv.version).tags
    assert tags["data_version"] == "md5:abc" and tags["git_commit"] == "deadbeef"
    assert (
        tags["target"] == "tflite-f32"
        and tags["releasable"] == "true"
        and tags["blessed"] == "true"
    )
    assert tags["bundle_id"] == "b" * 64 and tags["parent_model"] == "models:/m-parent"
    logged = mlflow_client.get_logged_model(mv.source.rsplit("/", 1)[-1])  # source: models:/<id>
    assert logged.name == "digits-tflite-f32" and logged.tags["model_name"] == "digits"  # not "model"
    model = mlflow.pyfunc.load_model(f"models:/{mv.name}/{mv.version}")
    got = model.predict(x[:16])
    assert got.shape == (16, 10)
    np.testing.assert_allclose(got, TFLiteRunner(path).predict(x[:16]), atol=1e-6)
    assert model.unwrap_python_model().spec == spec  # the preprocessing ships with the model

    set_cohort_alias(mlflow_client, mv.name, "pi-fleet-eu", "stable", mv.version)
    assert (
        str(mlflow_client.get_model_version_by_alias(mv.name, "pi-fleet-eu-stable").version) == "1"
    )
    set_cohort_alias(mlflow_client, mv.name, "pi-fleet-eu", "stable", None)
    set_cohort_alias(mlflow_client, mv.name, "pi-fleet-eu", "canary", None)  # absent: no error
    assert "pi-fleet-eu-stable" not in mlflow_client.get_registered_model(mv.name).aliases


def test_releasable_needs_a_passing_blessing(mlflow_client, experiment_run, tiny_tflite) -> None:
    path, spec, x = tiny_tflite
    kw = dict(model_name="digits", target="tflite-f32", lineage=LINEAGE, releasable=True)
    with pytest.raises(BlessingError, match="without a blessing"):
        register_variant(mlflow_client, experiment_run, path, spec, x[:2], **kw)
    with pytest.raises(BlessingError, match="not blessed: too slow"):
        register_variant(
            mlflow_client,
            experiment_run,
            path,
            spec,
            x[:2],
            blessing=_Blessing(False, reasons=("too slow",)),
            **kw,
        )
    assert mlflow_client.search_registered_models() == []
    mv = register_variant(
        mlflow_client, experiment_run, path, spec, x[:2], **{**kw, "releasable": False}
    )
    assert mlflow_client.get_model_version(mv.name, mv.version).tags["releasable"] == "false"


def test_onnx_variant_registers_with_the_onnx_flavor(mlflow_client, experiment_run, tiny_tflite,
                                                     tmp_path) -> None:
    import mlflow
    import onnxruntime as ort
    import tensorflow as tf
    import tf2onnx

    _, spec, x = tiny_tflite
    model = tf.keras.Sequential([tf.keras.layers.Input((8, 8, 1)), tf.keras.layers.Flatten(),
                                 tf.keras.layers.Dense(10, activation="softmax")])
    path = tmp_path / "model.onnx"
    tf2onnx.convert.from_keras(model, input_signature=[tf.TensorSpec((None, 8, 8, 1), tf.float32, name="input")],
                               opset=17, output_path=str(path))
    mv = register_variant(mlflow_client, experiment_run, path, spec, x[:4], model_name="digits", target="onnx",
                          lineage=LINEAGE)
    assert mv.name == "digits-onnx"
    assert mlflow_client.get_model_version(mv.name, mv.version).tags["target"] == "onnx"
    out = mlflow.pyfunc.load_model(f"models:/{mv.name}/{mv.version}").predict(x[:8])
    served = np.asarray(next(iter(out.values())) if isinstance(out, dict) else out)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(served, session.run(None, {"input": x[:8]})[0], atol=1e-6)

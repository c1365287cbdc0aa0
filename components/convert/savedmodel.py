"""A SavedModel in TF Serving's layout, <dir>/<name>/<version>/, for server cohorts."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from components.convert import EXPORT_LOCK
from components.keras import keras, tf
from edgeops.errors import ConversionError


def to_savedmodel(model: keras.Model, base: Path, name: str = "model", version: int = 1) -> Path:
    """Export with a `serving_default` signature taking `input` (N,H,W,C) float32."""
    export = base / name / str(version)
    shape = (None, *model.input_shape[1:])

    @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32, name="input")])
    def serve(x: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"probs": model(x, training=False)}

    try:
        with EXPORT_LOCK:
            tf.saved_model.save(model, str(export), signatures={"serving_default": serve})
    except Exception as exc:  # TF raises assorted types from tracing
        raise ConversionError(
            "savedmodel", f"tf.saved_model.save: {str(exc).splitlines()[0]}"
        ) from exc
    return export


class SavedModelRunner:
    """Loads the export the way TF Serving does (the serving signature), not the Keras object."""

    def __init__(self, export: Path) -> None:
        self._loaded = tf.saved_model.load(str(export))
        self._fn = self._loaded.signatures["serving_default"]

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self._fn(input=tf.constant(x, tf.float32))["probs"].numpy().astype(np.float32)

    def tensor_dtypes(self) -> dict[str, object]:
        inp = self._fn.structured_input_signature[1]["input"].dtype.name
        out = self._fn.structured_outputs["probs"].dtype.name
        return {"input": inp, "output": out, "tensors": sorted({inp, out})}

    def ops(self) -> list[str]:
        return sorted({op.type for op in self._fn.graph.get_operations()})

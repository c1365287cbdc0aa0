"""TFLite targets through TF's own converter: float32, float16, dynamic range and full int8."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from components.convert import EXPORT_LOCK
from components.keras import keras, tf
from edgeops.errors import ConversionError

TFLITE_TARGETS = ("tflite-f32", "tflite-f16", "tflite-dynamic", "tflite-int8")


def _representative(x: np.ndarray) -> Callable[[], Iterator[list[np.ndarray]]]:
    def gen() -> Iterator[list[np.ndarray]]:
        for sample in x:
            yield [sample[None].astype(np.float32)]

    return gen


def to_tflite(
    model: keras.Model,
    target: str,
    representative: np.ndarray,
    path: Path,
    per_channel: bool = True,
) -> Path:
    """Write `model` as `target` to `path`. `representative` are normalized train inputs.

    per_channel=False quantises int8 weights per tensor: smaller files on small models, where
    a scale and an int64 zero point per output channel are a large share; less accurate.
    """
    with EXPORT_LOCK:
        conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if target == "tflite-f16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif target == "tflite-dynamic":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    elif target == "tflite-int8":
        # full integer: int8 kernels only, int8 in and out, ranges calibrated on train data
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = _representative(representative)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
        conv._experimental_disable_per_channel = not per_channel  # the converter's only switch
    elif target != "tflite-f32":
        raise ConversionError(target, f"not a TFLite target; known: {', '.join(TFLITE_TARGETS)}")
    try:
        with EXPORT_LOCK:
            flatbuffer = conv.convert()
    except Exception as exc:  # the converter raises many unrelated types (ConverterError, ...)
        raise ConversionError(target, f"TFLite converter: {str(exc).splitlines()[0]}") from exc
    path.write_bytes(flatbuffer)
    return path

"""ONNX through tf2onnx (opset 17), run by onnxruntime for verification and on Windows PCs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from components.convert import EXPORT_LOCK
from components.keras import keras, tf
from edgeops.errors import ConversionError

OPSET = 17
_ONNX_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(int8)": "int8"}


def to_onnx(model: keras.Model, path: Path) -> Path:
    import tf2onnx

    shape = (None, *model.input_shape[1:])
    spec = [tf.TensorSpec(shape, tf.float32, name="input")]
    try:
        with EXPORT_LOCK:
            tf2onnx.convert.from_keras(
                model, input_signature=spec, opset=OPSET, output_path=str(path)
            )
    except Exception as exc:  # tf2onnx raises bare ValueError/RuntimeError/KeyError by op
        raise ConversionError("onnx", f"tf2onnx: {str(exc).splitlines()[0]}") from exc
    return path


class OnnxRunner:
    """onnxruntime session with the same predict() as the TFLite runner."""

    def __init__(self, path: Path, num_threads: int = 1) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = num_threads
        opts.inter_op_num_threads = 1
        self._sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self._input = self._sess.get_inputs()[0].name
        self._path = path

    def ops(self) -> list[str]:
        import onnx

        return [node.op_type for node in onnx.load(str(self._path)).graph.node]

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self._sess.run(None, {self._input: x.astype(np.float32)})[0], np.float32)

    def tensor_dtypes(self) -> dict[str, object]:
        inp = _ONNX_DTYPES.get(self._sess.get_inputs()[0].type, self._sess.get_inputs()[0].type)
        out = _ONNX_DTYPES.get(self._sess.get_outputs()[0].type, self._sess.get_outputs()[0].type)
        return {"input": inp, "output": out, "tensors": sorted({inp, out})}

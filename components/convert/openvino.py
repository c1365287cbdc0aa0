"""OpenVINO IR (.xml + .bin) for Intel CPUs/iGPUs/NPUs, converted from our SavedModel export.

Needs the `openvino` package (not in the default lock: see docs/targets.md). Verified with
OpenVINO's own runtime on CPU at f32 inference precision: on CPUs with AVX512-BF16 OpenVINO
otherwise picks bf16 by itself, which is a different model than the one we verified.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from components.convert import EXPORT_LOCK
from components.keras import keras
from edgeops.errors import ConversionError


def _ov():  # noqa: ANN202 - the module
    _no_telemetry()
    try:
        import openvino
    except ImportError as exc:
        raise ConversionError(
            "openvino", "the openvino package is not installed (openvino==2026.4.1)"
        ) from exc
    return openvino


def _no_telemetry() -> None:
    """Importing OpenVINO's converter sends usage telemetry to Google Analytics unless the user
    opted out or CI=true (openvino_telemetry assumes consent when no consent file exists). Its
    sender forks a process from our multi-threaded one, and that child can hang for good on a lock
    held at the fork (seen here: a release stuck in getaddrinfo). No release phones home: with
    `openvino_telemetry` marked unimportable, every ovc module falls back to OpenVINO's own no-op
    stub (its `except ImportError` path). There is no setting or variable for this."""
    if "openvino_telemetry" not in sys.modules:
        sys.modules["openvino_telemetry"] = None  # type: ignore[assignment]  # import raises ImportError


def to_openvino(model: keras.Model, out_dir: Path) -> Path:
    """Export a SavedModel, convert it with ov.convert_model, save IR with float32 weights."""
    from components.convert.savedmodel import to_savedmodel

    ov = _ov()
    export = to_savedmodel(model, out_dir / "savedmodel-for-openvino")
    ir_dir = out_dir / "openvino"
    ir_dir.mkdir(parents=True, exist_ok=True)
    try:
        with EXPORT_LOCK:
            ir = ov.convert_model(str(export))
        ov.save_model(ir, str(ir_dir / "model.xml"), compress_to_fp16=False)
    except Exception as exc:  # OpenVINO raises its own OpConversionFailure, RuntimeError, ...
        raise ConversionError("openvino", f"ov.convert_model: {str(exc).splitlines()[0]}") from exc
    return ir_dir


class OpenVinoRunner:
    """The IR compiled for CPU by OpenVINO's runtime, with the same predict() as the others."""

    def __init__(self, ir_dir: Path, num_threads: int = 1) -> None:
        ov = _ov()
        core = ov.Core()
        self._model = core.read_model(str(ir_dir / "model.xml"))
        config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": num_threads}
        self._compiled = core.compile_model(self._model, "CPU", config)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self._compiled(x.astype(np.float32))[0], dtype=np.float32)

    def tensor_dtypes(self) -> dict[str, object]:
        inp = self._model.inputs[0].get_element_type().to_dtype().name
        out = self._model.outputs[0].get_element_type().to_dtype().name
        kinds = {
            op.get_output_element_type(0).to_dtype().name
            for op in self._model.get_ops()
            if op.get_output_size()
        }
        return {"input": inp, "output": out, "tensors": sorted(kinds)}

    def ops(self) -> list[str]:
        return [op.get_type_name() for op in self._model.get_ordered_ops()]

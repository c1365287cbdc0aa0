"""Convert a float Keras model to one target and verify the result in its real runtime.

Three phases (the TFX rewriter's, with the last one done): validate the input model; convert;
validate the output by loading the artifact in the runtime a device uses (LiteRT, onnxruntime,
TF Serving's signature) and running it against the float model. The pass/fail gate (top-1
agreement >= convert.min_agreement, and the TFLite Micro parity inputs) rests on the VALIDATION
split; test-split accuracy and agreement are recorded as reports only. A prepared object without
validation images falls back to test and says so (`Variant.gate_split`, the error text). Any
failure raises ConversionError(target, reason). Safe to call from several threads on different out_dirs.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from components.convert.verify import parity, profile_violations
from components.measure import Measurement
from edgeops.errors import ConversionError

if TYPE_CHECKING:
    from components.keras import keras
    from components.profiles import DeviceProfile
    from edgeops.params import ConvertParams

TARGETS = (
    "tflite-f32",
    "tflite-f16",
    "tflite-dynamic",
    "tflite-int8",
    "onnx",
    "savedmodel",
    "openvino",
)
_SUFFIX = {"onnx": ".onnx", "savedmodel": ""}
MICRO_PARITY_IMAGES = 200  # int8 files also run in TFLite Micro on these gate-split images (near-ties flip 1-2)


class PreparedLike(Protocol):
    x_train: np.ndarray
    x_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray
    spec: Any


@dataclass(frozen=True)
class Variant:
    """One model converted for one target, with what verification measured from the artifact."""

    target: str
    path: Path
    bytes: int
    gzip_bytes: int
    accuracy: float
    float_accuracy: float
    agreement: float
    max_abs_diff: float
    input_dtype: str
    output_dtype: str
    tensor_dtypes: tuple[str, ...]
    ops: tuple[str, ...]
    n_test: int
    measurement: Measurement | None = None  # bytes, MACs, latency, arena: see components.measure
    # Selection ranks on validation; the test split only judges the chosen variant (blessing),
    # paired image by image with its float parent and the cohort's stable.
    val_accuracy: float | None = None
    predictions: tuple[int, ...] = ()  # this artifact's top-1 per test image, in test order
    float_predictions: tuple[int, ...] = ()  # its parent Keras model's top-1 on the same images
    val_predictions: tuple[int, ...] = ()  # top-1 per validation image: paired choices (selection)
    # The agreement gate (and TFLite Micro parity) ran on this split: "validation", or "test" where
    # the prepared data had no validation images (and for variants.json written before the gate moved).
    gate_split: str = "test"
    gate_agreement: float | None = None  # top-1 agreement with the float model on the gate split
    gate_n: int = 0  # images the gate saw

    @property
    def wire_bytes(self) -> int:
        """What a device downloads (zstd, device.wire); the file size when unmeasured."""
        m = self.measurement
        return m.wire_bytes if m is not None and m.wire_bytes else self.bytes

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["path"] = str(self.path)
        d["tensor_dtypes"] = list(self.tensor_dtypes)
        d["ops"] = list(self.ops)
        d["measurement"] = self.measurement.to_dict() if self.measurement else None
        d["predictions"] = list(self.predictions)
        d["float_predictions"] = list(self.float_predictions)
        d["val_predictions"] = list(self.val_predictions)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Variant:
        """Inverse of to_dict (the DVC convert stage writes variants.json)."""
        m = d.get("measurement")
        return cls(
            **{
                k: v
                for k, v in d.items()
                if k not in ("path", "tensor_dtypes", "ops", "measurement", "predictions", "float_predictions",
                             "val_predictions")
            },
            path=Path(d["path"]),
            tensor_dtypes=tuple(d["tensor_dtypes"]),
            ops=tuple(d["ops"]),
            predictions=tuple(d.get("predictions", ())),
            float_predictions=tuple(d.get("float_predictions", ())),
            val_predictions=tuple(d.get("val_predictions", ())),
            measurement=Measurement(**m) if m else None,
        )


def model_inputs(x01: np.ndarray, spec: Any) -> np.ndarray:
    """The model input, from the one numpy preprocessing the device runs too."""
    from device.preprocessing import normalize

    return normalize(x01, spec)


def artifact_sizes(path: Path) -> tuple[int, int]:
    """(bytes, gzip bytes): a file as is; a directory as the sum of its files and a .tar.gz."""
    if path.is_file():
        data = path.read_bytes()
        return len(data), len(gzip.compress(data, compresslevel=9, mtime=0))
    files = sorted(p for p in path.rglob("*") if p.is_file())
    buf = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=9, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w") as tar,
    ):
        for f in files:
            tar.add(f, arcname=str(f.relative_to(path)), recursive=False)
    return sum(f.stat().st_size for f in files), len(buf.getvalue())


def keras_probs(model: keras.Model, x: np.ndarray, batch: int = 256) -> np.ndarray:
    """Eager calls, not model.predict: predict() rebuilds a shared function and races in threads."""
    out = [np.asarray(model(x[i : i + batch], training=False)) for i in range(0, len(x), batch)]
    return np.concatenate(out).astype(np.float32)


def validate_input(model: keras.Model, target: str, prepared: PreparedLike) -> np.ndarray:
    """Phase one: the model fits the data and gives finite probabilities. Returns them on test."""
    if target not in TARGETS:
        raise ConversionError(target, f"unknown target; known: {', '.join(TARGETS)}")
    spec = prepared.spec
    want = (spec.height, spec.width, spec.channels)
    if tuple(model.input_shape[1:]) != want:
        raise ConversionError(target, f"model input {model.input_shape[1:]} != data {want}")
    if model.output_shape[-1] != len(spec.labels):
        raise ConversionError(
            target, f"model has {model.output_shape[-1]} outputs, data {len(spec.labels)} labels"
        )
    if not all(np.isfinite(w).all() for w in model.get_weights()):
        raise ConversionError(target, "model weights hold NaN or infinity")
    if len(prepared.x_test) == 0 or len(prepared.x_train) == 0:
        raise ConversionError(target, "empty train or test split")
    probs = keras_probs(model, model_inputs(prepared.x_test, spec))
    if not np.allclose(probs.sum(axis=1), 1.0, atol=1e-3) or (probs < 0).any():
        raise ConversionError(
            target, "model output is not a probability distribution (softmax last?)"
        )
    return probs.astype(np.float32)


def _convert(
    model: keras.Model, target: str, prepared: PreparedLike, params: ConvertParams, out_dir: Path
) -> tuple[Path, Any]:
    """Phase two; returns the artifact and a runner over it from its real runtime."""
    path = out_dir / f"model-{target}{_SUFFIX.get(target, '.tflite')}"
    if target == "onnx":
        from components.convert.onnx import OnnxRunner, to_onnx

        return to_onnx(model, path), OnnxRunner(path)
    if target == "openvino":
        from components.convert.openvino import OpenVinoRunner, to_openvino

        ir_dir = to_openvino(model, out_dir)
        return ir_dir, OpenVinoRunner(ir_dir)
    if target == "savedmodel":
        from components.convert.savedmodel import SavedModelRunner, to_savedmodel

        export = to_savedmodel(model, out_dir / "savedmodel")
        return export, SavedModelRunner(export)
    from components.convert.tflite import to_tflite
    from device.runtime import RuntimeLoadError, TFLiteRunner

    rng = np.random.default_rng(0)
    idx = rng.permutation(len(prepared.x_train))[: params.representative_samples]
    rep = model_inputs(prepared.x_train[idx], prepared.spec)
    to_tflite(model, target, rep, path, per_channel=params.int8_per_channel)
    try:
        return path, TFLiteRunner(path)
    except RuntimeLoadError as exc:
        raise ConversionError(target, str(exc)) from exc


def _ops(runner: Any) -> list[Any]:
    return runner.ops() if hasattr(runner, "ops") else []


def gate_split(prepared: PreparedLike) -> tuple[str, np.ndarray, np.ndarray]:
    """(split name, x, y) the conversion gate decides on: validation; test only where the
    prepared object has no validation images (the name says so)."""
    x_val = getattr(prepared, "x_val", None)
    if x_val is not None and len(x_val):
        return "validation", x_val, np.asarray(prepared.y_val)
    return "test", prepared.x_test, np.asarray(prepared.y_test)


def convert_and_verify(
    model: keras.Model,
    target: str,
    prepared: PreparedLike,
    params: ConvertParams,
    out_dir: Path | str,
    profile: DeviceProfile | None = None,
    measure: bool = True,
) -> Variant:
    """Validate, convert, verify (and measure). With a profile, its dtype/op rules and size
    budget apply too; without one, blessing applies them per profile later."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    reference = validate_input(model, target, prepared)
    path, runner = _convert(model, target, prepared, params, out_dir)
    split, x_gate, y_gate = gate_split(prepared)
    gate_inputs = model_inputs(x_gate, prepared.spec)
    gate_probs = runner.predict(gate_inputs)
    gate_reference = reference if split == "test" else keras_probs(model, gate_inputs)
    gate = parity(gate_probs, gate_reference, y_gate)
    if gate.agreement < params.min_agreement:
        raise ConversionError(
            target,
            f"top-1 agreement {gate.agreement:.4f} < {params.min_agreement} with the float model "
            f"(max abs diff {gate.max_abs_diff:.4f}, on {gate.n} {split} images)",
        )
    # Reports only: the test split scores, it never decides.
    probs = gate_probs if split == "test" else runner.predict(model_inputs(prepared.x_test, prepared.spec))
    par = parity(probs, reference, np.asarray(prepared.y_test))
    size, gz = artifact_sizes(path)
    dtypes, ops = runner.tensor_dtypes(), _ops(runner)
    if profile is not None and (reasons := profile_violations(target, dtypes, ops, size, profile)):
        raise ConversionError(target, "; ".join(reasons))
    float_acc = float((reference.argmax(axis=1) == np.asarray(prepared.y_test)).mean())
    val_acc, val_pred = None, np.zeros(0, np.int64)
    if split == "validation":
        val_pred, val_acc = gate_probs.argmax(axis=1), gate.accuracy
    names = sorted({op["op"] if isinstance(op, dict) else op for op in ops})
    variant = Variant(
        target=target,
        path=path,
        bytes=size,
        gzip_bytes=gz,
        accuracy=par.accuracy,
        float_accuracy=float_acc,
        agreement=par.agreement,
        max_abs_diff=par.max_abs_diff,
        input_dtype=dtypes["input"],
        output_dtype=dtypes["output"],
        tensor_dtypes=tuple(dtypes["tensors"]),
        ops=tuple(names),
        n_test=par.n,
        val_accuracy=val_acc,
        predictions=tuple(int(i) for i in probs.argmax(axis=1)),
        float_predictions=tuple(int(i) for i in reference.argmax(axis=1)),
        val_predictions=tuple(int(i) for i in val_pred),
        gate_split=split,
        gate_agreement=gate.agreement,
        gate_n=gate.n,
    )
    if not measure:
        return variant
    from components.measure import measure_artifact

    sample = gate_inputs[:1]
    measured = measure_artifact(
        target, path, (size, gz), sample, runs=params.latency_runs, model=model,
        parity_inputs=gate_inputs[:MICRO_PARITY_IMAGES], min_agreement=params.min_agreement, parity_split=split,
    )
    return dataclasses.replace(variant, measurement=measured)

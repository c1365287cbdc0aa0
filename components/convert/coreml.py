"""Core ML (.mlpackage, ML program) for iPhones: converted here, NOT verified here.

Core ML itself is the only runtime for the file and it runs on Apple platforms only:
`MLModel.predict` raises "Model prediction is only supported on macOS" on Linux. So this target
skips the third phase every other target has (load the file in its runtime, compare with the
float model): what comes out is an `UnverifiedVariant`, registered as "converted, not run",
never blessed, and only a profile that lists the target under `unverified_targets` names it.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from components.convert import EXPORT_LOCK
from components.keras import keras
from edgeops.errors import ConversionError

PRECISIONS = {"coreml-f32": "FLOAT32", "coreml-f16": "FLOAT16"}
NOT_RUN = "converted, not run: Core ML runs only on Apple platforms (no runtime on this machine)"


@dataclass(frozen=True)
class UnverifiedVariant:
    """A converted artifact whose runtime is not available here: no accuracy, no agreement."""

    target: str
    path: Path
    bytes: int
    status: str = NOT_RUN


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def to_coreml(model: keras.Model, target: str, out_dir: Path) -> UnverifiedVariant:
    """`ct.convert(..., convert_to="mlprogram")` at the target's compute precision."""
    if target not in PRECISIONS:
        raise ConversionError(target, f"not a Core ML target (known: {', '.join(PRECISIONS)})")
    try:
        import coremltools as ct
    except ImportError as exc:
        raise ConversionError(target, "coremltools is not installed (coremltools==9.0)") from exc
    path = Path(out_dir) / f"model-{target}.mlpackage"
    shutil.rmtree(path, ignore_errors=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (1, *model.input_shape[1:])
    try:
        with EXPORT_LOCK:
            ml = ct.convert(model, source="tensorflow", convert_to="mlprogram",
                            compute_precision=getattr(ct.precision, PRECISIONS[target]),
                            inputs=[ct.TensorType(shape=shape)])
        ml.save(str(path))
    except Exception as exc:  # coremltools raises assorted types from its TF frontend
        raise ConversionError(target, f"coremltools: {str(exc).splitlines()[0]}") from exc
    return UnverifiedVariant(target, path, _dir_bytes(path))

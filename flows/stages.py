"""Stage steps over local paths: the one implementation behind both adapters.

The Prefect tasks in flows/release.py and the `edgeops stage ...` commands that dvc.yaml runs
call these same functions; they call the pure components and write each stage's outputs
(atomically where a component provides it) under the directory they are given.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from components.conversion import Variant
    from components.prepare import PreparedData
    from components.profiles import DeviceCatalog
    from components.training import TrainResult
    from components.validation import ValidationResult
    from edgeops.params import CompressParams, ConvertParams, PrepareParams, TrainParams


def prepare(data_dir: str | Path, params: PrepareParams, out: Path, ledger: Path | None = None) -> PreparedData:
    """Prepare straight into `out` (with `splits.csv`), streaming: the result memory-maps it.
    With a `ledger` (every image this data set ever had, and its split), images seen in an
    earlier data version keep their split; the ledger is updated only after the prepared data
    is saved."""
    from components.prepare import prepare as prepare_data
    from components.splits import ledger as merged_ledger
    from components.splits import read_split_manifest

    previous = read_split_manifest(ledger) if ledger is not None and ledger.exists() else None
    prepared = prepare_data(data_dir, params, previous=previous, previous_where=str(ledger), out=out)
    if ledger is not None:
        ledger.parent.mkdir(parents=True, exist_ok=True)
        tmp = ledger.with_suffix(".csv.tmp")
        merged_ledger(previous, prepared.splits).to_csv(tmp, index=False)
        tmp.replace(ledger)
    return prepared


def split_ledger(home: Path, data_dir: str | Path) -> Path:
    """Where the release flow keeps a data folder's split ledger: one per folder path."""
    import hashlib

    path = Path(data_dir).resolve()
    return home / "splits" / f"{path.name}-{hashlib.sha256(str(path).encode()).hexdigest()[:8]}.csv"


def validate(prepared: PreparedData, params: PrepareParams, report_dir: Path) -> ValidationResult:
    from components.validation import validate_prepared

    return validate_prepared(prepared, params, report_dir)


def raise_if_invalid(result: ValidationResult, params: PrepareParams) -> None:
    from components.validation import raise_if_failed

    raise_if_failed(result, params.fail_on_validation)


def train(prepared: PreparedData, params: TrainParams, out: Path) -> TrainResult:
    from components.training import train as train_model

    result = train_model(prepared, params)
    save_model(result.model, out)
    return result


def save_model(model: Any, out: Path) -> Path:
    """Keras 2 HDF5 in a temp name, then renamed: a reader never sees half a model."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / ".model.h5.tmp"
    model.save(tmp, save_format="h5")
    tmp.replace(out / "model.h5")
    return out / "model.h5"


def load_model(out: Path) -> Any:
    from components.keras import keras
    from edgeops.errors import TrainingError

    path = out / "model.h5" if out.is_dir() else out
    if not path.exists():
        raise TrainingError("trained model not found", where=str(path))
    return keras.models.load_model(path, compile=False)


def targets_for(params: ConvertParams, catalog: DeviceCatalog) -> list[str]:
    """The targets to build: those params ask for, or else every target some profile runs."""
    return list(params.targets) if params.targets else catalog.targets()


# Variants are named by target for the float model ("tflite-int8") and "<method>/<target>" for a
# compressed parent ("prune/tflite-int8"); a compressed parent is converted to full-integer int8,
# the target where pruning and QAT pay on a device.
COMPRESSED_TARGETS = ("tflite-int8",)


def variant_names(targets: list[str], parents: list[str]) -> list[str]:
    names = list(targets)
    for method in parents:
        if method != "float":
            names += [f"{method}/{t}" for t in COMPRESSED_TARGETS if t in targets]
    return names


def variant_method(name: str) -> str:
    return name.split("/", 1)[0] if "/" in name else "float"


def variant_target(name: str) -> str:
    return name.rsplit("/", 1)[-1]


def compress(model: Any, prepared: PreparedData, params: CompressParams) -> dict[str, Any]:
    from components.compression import compress as compress_model

    return compress_model(model, prepared, params)


def convert(model: Any, target: str, prepared: PreparedData, params: ConvertParams, out: Path) -> Variant:
    """Thread-safe: components.conversion serialises the Keras export step itself."""
    from components.conversion import convert_and_verify

    return convert_and_verify(model, target, prepared, params, out)


def accuracy_intervals(variant: Variant) -> tuple[dict[str, float | int], str]:
    """The variant's recorded accuracies with 95% Wilson intervals (components.evidence): test
    (reported, `n_test` images) and validation (its validation predictions). Returns metrics for
    DVC (value, low, high, n per split) and one line for the console; a split without a recorded
    count is left out, never given an interval it does not have."""
    import math

    from components.evidence import Estimate, wilson

    n_val = len(variant.val_predictions) or (variant.gate_n if variant.gate_split == "validation" else 0)
    metrics: dict[str, float | int] = {}
    parts = []
    for key, word, value, n in (("accuracy", "test", variant.accuracy, variant.n_test),
                                ("val_accuracy", "validation", variant.val_accuracy, n_val)):
        if value is None or math.isnan(value) or n <= 0:
            continue
        low, high = wilson(round(value * n), n)
        metrics |= {key: value, f"{key}_low": low, f"{key}_high": high, f"n_{word}": n}
        parts.append(f"{word} {Estimate(value, low, high, n)}")
    return metrics, "; ".join(parts)


def write_json(path: Path, payload: Any) -> Path:
    """Metrics files for DVC (`metrics:` entries), written via a temp file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str))
    tmp.replace(path)
    return path

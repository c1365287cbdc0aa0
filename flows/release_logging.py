"""What a reviewer sees in the MLflow UI for a release: data version input, validation report,
per-epoch curves, confusion matrix, the float model with signature and input example,
one child run per variant with its verification figures.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flows.tracking import log_artifact, log_batch

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from components.conversion import Variant
    from components.prepare import PreparedData
    from components.training import TrainResult
    from components.validation import ValidationResult
    from registry.data_versions import DataVersion

# Exact requirements for logged models: MLflow's own inference of them imports the model in a
# subprocess and costs ~30 s per model with TensorFlow.
TF_REQUIREMENTS = ["tensorflow==2.21.0", "tf-keras==2.21.0"]


def log_data_version(run_id: str, version: DataVersion, name: str, client: MlflowClient | None = None,
                     context: str = "training") -> None:
    """Record the data set as a run input whose digest is the DVC hash (the data version)."""
    import warnings

    from mlflow import MlflowClient
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import DatasetInput, InputTag

    client = client or MlflowClient()
    with warnings.catch_warnings():  # a local path matches two registered source types
        warnings.simplefilter("ignore", UserWarning)
        source = resolve_dataset_source(version.path)
    dataset = MetaDataset(source=source, name=name, digest=version.md5)
    tags = [InputTag("mlflow.data.context", context), InputTag("dvc.md5", version.md5),
            InputTag("dvc.nfiles", str(version.nfiles))]
    client.log_inputs(run_id, datasets=[DatasetInput(dataset._to_mlflow_entity(), tags)])


def log_prepare(client: MlflowClient, run_id: str, prepared: PreparedData, validation: ValidationResult,
                version: DataVersion, name: str) -> None:
    stats = validation.statistics
    metrics = {f"images_{k}": v for k, v in stats.get("per_split", {}).items()}
    metrics.update(images=stats.get("images"), skipped_files=stats.get("skipped_files"),
                   imbalance=stats.get("imbalance"), expectations=stats.get("expectations"),
                   expectations_failed=stats.get("failed"), validation_success=float(validation.success))
    log_batch(client, run_id, metrics=metrics,
              params={"classes": len(prepared.labels), "input_shape": f"{prepared.spec.height}x"
                      f"{prepared.spec.width}x{prepared.spec.channels}"},
              tags={"edgeops.data_version": version.md5,
                    "edgeops.validation": "passed" if validation.success else "; ".join(validation.failures)[:4000]})
    log_data_version(run_id, version, name, client)
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "preprocessing.json"
        spec.write_text(prepared.spec.to_json())
        log_artifact(client, run_id, spec, "data")
        manifest = Path(tmp) / "manifest.csv"
        prepared.manifest.to_csv(manifest, index=False)
        log_artifact(client, run_id, manifest, "data")
        splits = Path(tmp) / "splits.csv"  # which image was used for what in this data version
        prepared.splits.to_csv(splits, index=False)
        log_artifact(client, run_id, splits, "data")
    if validation.report_html is not None:
        log_artifact(client, run_id, Path(validation.report_html).parent, "validation_report")


def log_training(client: MlflowClient, run_id: str, trained: TrainResult, prepared: PreparedData,
                 model_dir: Path) -> str:
    """Curves, confusion matrix and the float model (signature + input example); returns its URI."""
    import mlflow
    from mlflow.models import infer_signature

    from components import plots
    from device.preprocessing import normalize

    metrics = {"test_accuracy": trained.test_accuracy, "final_val_accuracy": trained.val_accuracy,
               "params": trained.params_count, "macs": trained.macs, "train_seconds": trained.train_seconds}
    if trained.teacher is not None:
        metrics.update(teacher_test_accuracy=trained.teacher.test_accuracy, teacher_params=trained.teacher.params_count)
    log_batch(client, run_id, metrics=metrics, history=trained.history,
              tags={"edgeops.distilled": str(trained.distilled).lower()})
    with tempfile.TemporaryDirectory() as tmp:
        curves = plots.training_curves(trained.history, Path(tmp) / "training_curves.png")
        cm = plots.confusion_matrix(trained.confusion, trained.labels, Path(tmp) / "confusion_matrix.png")
        for path in (curves, cm):
            log_artifact(client, run_id, path, "plots")
    x = normalize(prepared.x_test[:8], prepared.spec)
    # MLflow validates the input example by loading the model and predicting with Keras's default
    # progress bar ("1/1 [=====]" in the console): route Keras's bars to its (quieted) log instead.
    from components.keras import keras

    interactive = keras.utils.is_interactive_logging_enabled()
    keras.utils.disable_interactive_logging()
    try:
        with mlflow.start_run(run_id=run_id, nested=True):
            info = mlflow.tensorflow.log_model(
                trained.model, name="float-model", signature=infer_signature(x, trained.model.predict(x, verbose=0)),
                input_example=x[:1], pip_requirements=TF_REQUIREMENTS,
            )
    finally:
        if interactive:
            keras.utils.enable_interactive_logging()
    return info.model_uri


def log_compression(client: MlflowClient, run_id: str, compressed: dict[str, Any]) -> None:
    """Sparsity and weight sharing reached by each tfmot method, and its fine-tuning curves."""
    metrics: dict[str, float] = {}
    history: dict[str, list[float]] = {}
    for method, c in compressed.items():
        metrics[f"{method}.sparsity"] = c.sparsity
        if c.unique_weights:
            metrics[f"{method}.max_unique_weights"] = max(c.unique_weights.values())
        history.update({f"{method}.{k}": v for k, v in c.history.items()})
    log_batch(client, run_id, metrics=metrics, history=history)


def log_variant(client: MlflowClient, run_id: str, variant: Variant) -> None:
    d = variant.to_dict()
    log_batch(client, run_id,
              metrics={k: d[k] for k in ("bytes", "gzip_bytes", "accuracy", "float_accuracy", "agreement",
                                         "max_abs_diff") if k in d},
              params={"target": variant.target, "input_dtype": d.get("input_dtype"),
                      "output_dtype": d.get("output_dtype")},
              tags={"edgeops.target": variant.target, "edgeops.ops": ",".join(d.get("ops", []))[:4000]})
    log_artifact(client, run_id, variant.path, "variant")


def summary_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per variant for tables (CLI, Prefect artifact, demo summary)."""
    rows = []
    for target, v in result.get("variants", {}).items():
        rows.append({"target": target, "accuracy": v.get("accuracy"), "bytes": v.get("bytes"),
                     "gzip_bytes": v.get("gzip_bytes"), "agreement": v.get("agreement")})
    return rows

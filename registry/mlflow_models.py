"""TFLite (and ONNX) variants as real MLflow registry entries, with lineage and release state as tags.

MLflow has no TFLite flavor: `TFLitePyfunc` runs the LiteRT interpreter through
`device.runtime.TFLiteRunner`, so `mlflow.pyfunc.load_model("models:/<name>/<version>")` serves
exactly what devices run. One registered model per target (`<model_name>-<target>`). Everything
goes through the `MlflowClient` the caller passes in (LoggedModel API), never a global URI.

A version is tagged `releasable=true` only with a passing blessing (`BlessingError` otherwise).
Aliases `<cohort>-stable` / `<cohort>-canary` show in the MLflow UI what runs where.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import mlflow.pyfunc
import numpy as np
from mlflow.exceptions import MlflowException

from edgeops.errors import BlessingError, RegistryError

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from device.preprocessing import PreprocessingSpec

ARTIFACT_NAME = "model"


class BlessingLike(Protocol):
    blessed: bool
    target: str
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Lineage:
    """Where a variant came from; every field becomes a model version tag."""

    data_version: str
    git_commit: str
    run_id: str
    parent_model: str  # URI of the float parent (e.g. models:/m-...)

    def tags(self) -> dict[str, str]:
        return {
            "data_version": self.data_version,
            "git_commit": self.git_commit,
            "run_id": self.run_id,
            "parent_model": self.parent_model,
        }


# MLflow 3 warns when a PythonModel subclass is created whose `predict` has no type hints (its
# type-hint validation). Ours take a float32 numpy batch, which those hints do not describe; the
# logged models carry signatures and input examples instead. MLflow sets its own "once" filter
# around that check, so a filter cannot reach it: the class creations below record their warnings
# and pass on every other one.
_UNTYPED_PREDICT = "Add type hints to the `predict` method"


def _pass_on(caught: list[warnings.WarningMessage]) -> None:
    for w in caught:
        if _UNTYPED_PREDICT not in str(w.message):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)

with warnings.catch_warnings(record=True) as _caught:  # see _UNTYPED_PREDICT

    class TFLitePyfunc(mlflow.pyfunc.PythonModel):
        """pyfunc over a .tflite file: normalized float32 (N,H,W,C) in (`device.preprocessing.preprocess`
        with the shipped spec, kept as `self.spec`), probabilities out."""

        def load_context(self, context: Any) -> None:
            from device.preprocessing import PreprocessingSpec
            from device.runtime import TFLiteRunner

            self.runner = TFLiteRunner(Path(context.artifacts["model"]))
            self.spec = PreprocessingSpec.from_json(
                Path(context.artifacts["preprocessing"]).read_text()
            )

        def predict(self, context, model_input, params=None):  # no hints: MLflow reads them as a schema
            x = np.asarray(model_input, dtype=np.float32)
            if x.ndim == len(self.runner.input_shape):
                x = x[None]
            return self.runner.predict(x)

_pass_on(_caught)


def registered_model_name(model_name: str, target: str) -> str:
    return f"{model_name}-{target}"


def _pins() -> list[str]:
    pins = []
    for dist in ("ai-edge-litert", "numpy"):
        try:
            pins.append(f"{dist}=={version(dist)}")
        except PackageNotFoundError:
            pins.append(dist)
    return pins


def _log_model_dir(client: MlflowClient, run_id: str, name: str, tags: dict[str, str] | None,
                   model_type: str, save: Any, where: str) -> str:
    """A LoggedModel of `run_id` whose files `save(out_dir)` writes; returns `models:/<id>`."""
    run = client.get_run(run_id)
    logged = client.create_logged_model(
        run.info.experiment_id, name=name, source_run_id=run_id, tags=tags, model_type=model_type
    )
    try:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp, "model")
            save(out, Path(tmp))
            client.log_model_artifacts(logged.model_id, str(out))
        client.finalize_logged_model(logged.model_id, "READY")
    except (MlflowException, OSError) as exc:
        client.finalize_logged_model(logged.model_id, "FAILED")
        raise RegistryError(f"logging the {model_type} model failed: {exc}", where=where) from exc
    return f"models:/{logged.model_id}"


def log_tflite_model(
    client: MlflowClient,
    run_id: str,
    model_path: Path | str,
    spec: PreprocessingSpec,
    input_example: np.ndarray,
    *,
    name: str = ARTIFACT_NAME,
    tags: dict[str, str] | None = None,
) -> str:
    """Log a TFLite file as an MLflow LoggedModel of `run_id`; returns its `models:/<id>` URI."""
    from mlflow.models import infer_signature

    from device.runtime import TFLiteRunner

    example = np.asarray(input_example, dtype=np.float32)[:2]
    signature = infer_signature(example, TFLiteRunner(Path(model_path)).predict(example))

    def save(out: Path, tmp: Path) -> None:
        spec_path = tmp / "preprocessing.json"
        spec_path.write_text(spec.to_json())
        mlflow.pyfunc.save_model(
            str(out),
            python_model=TFLitePyfunc(),
            artifacts={"model": str(model_path), "preprocessing": str(spec_path)},
            signature=signature,
            input_example=example,
            pip_requirements=_pins(),
        )

    return _log_model_dir(client, run_id, name, tags, "tflite", save, str(model_path))


def log_onnx_model(
    client: MlflowClient,
    run_id: str,
    model_path: Path | str,
    spec: PreprocessingSpec,
    input_example: np.ndarray,
    *,
    name: str = ARTIFACT_NAME,
    tags: dict[str, str] | None = None,
) -> str:
    """Log an ONNX file with MLflow's own onnx flavor (pyfunc serves it with onnxruntime)."""
    import mlflow.onnx
    import onnx
    import onnxruntime as ort
    from mlflow.models import infer_signature

    example = np.asarray(input_example, dtype=np.float32)[:2]
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {session.get_inputs()[0].name: example})[0]
    signature = infer_signature(example, outputs)

    def save(out: Path, tmp: Path) -> None:
        spec_path = tmp / "preprocessing.json"
        spec_path.write_text(spec.to_json())
        mlflow.onnx.save_model(onnx.load(str(model_path)), str(out), signature=signature,
                               input_example=example, onnx_execution_providers=["CPUExecutionProvider"])
        (out / "preprocessing.json").write_text(spec.to_json())

    return _log_model_dir(client, run_id, name, tags, "onnx", save, str(model_path))


with warnings.catch_warnings(record=True) as _caught:  # see _UNTYPED_PREDICT

    class DirectoryPyfunc(mlflow.pyfunc.PythonModel):
        """pyfunc over a directory format, run by its own runtime: a SavedModel through its serving
        signature (what TF Serving calls) or an OpenVINO IR compiled for CPU at f32. Same contract as
        TFLitePyfunc: normalized float32 (N,H,W,C) in, probabilities out."""

        def __init__(self, target: str) -> None:
            self.target = target

        def load_context(self, context: Any) -> None:
            from device.preprocessing import PreprocessingSpec

            self.runner = _directory_runner(self.target, Path(context.artifacts["model"]))
            self.spec = PreprocessingSpec.from_json(Path(context.artifacts["preprocessing"]).read_text())

        def predict(self, context, model_input, params=None):  # no hints: MLflow reads them as a schema
            x = np.asarray(model_input, dtype=np.float32)
            if x.ndim == 3:
                x = x[None]
            return self.runner.predict(x)

_pass_on(_caught)


def _directory_runner(target: str, path: Path) -> Any:
    if target == "savedmodel":
        from components.convert.savedmodel import SavedModelRunner

        return SavedModelRunner(path)
    from components.convert.openvino import OpenVinoRunner

    return OpenVinoRunner(path)


def log_directory_model(
    client: MlflowClient,
    run_id: str,
    model_path: Path | str,
    spec: PreprocessingSpec,
    input_example: np.ndarray,
    *,
    name: str = ARTIFACT_NAME,
    tags: dict[str, str] | None = None,
) -> str:
    """Log a SavedModel export (`<name>/<version>/`) or an OpenVINO IR folder as a pyfunc whose
    artifact is the whole directory; `mlflow models serve` then serves the registered version."""
    from mlflow.models import infer_signature

    target = (tags or {}).get("target", "savedmodel")
    example = np.asarray(input_example, dtype=np.float32)[:2]
    signature = infer_signature(example, _directory_runner(target, Path(model_path)).predict(example))
    runtime = "tensorflow" if target == "savedmodel" else "openvino"

    def save(out: Path, tmp: Path) -> None:
        spec_path = tmp / "preprocessing.json"
        spec_path.write_text(spec.to_json())
        mlflow.pyfunc.save_model(
            str(out),
            python_model=DirectoryPyfunc(target),
            artifacts={"model": str(model_path), "preprocessing": str(spec_path)},
            signature=signature,
            input_example=example,
            pip_requirements=[*_pins()[1:], f"{runtime}=={version(runtime)}"],
        )

    return _log_model_dir(client, run_id, name, tags, target, save, str(model_path))


LOGGERS = {"onnx": log_onnx_model, "savedmodel": log_directory_model, "openvino": log_directory_model}


def register_unverified(
    client: MlflowClient,
    run_id: str,
    path: Path | str,
    *,
    model_name: str,
    target: str,
    lineage: Lineage,
    status: str,
    extra_tags: dict[str, str] | None = None,
) -> ModelVersion:
    """Register an artifact that could not be run here (a Core ML .mlpackage) as files only: no
    pyfunc (nothing here can load it), tagged verified=false with its status, never releasable."""
    import shutil

    name = registered_model_name(model_name, target)
    existing = _version_of_release(client, name, lineage.run_id)
    if existing is not None:
        return existing

    def save(out: Path, tmp: Path) -> None:
        shutil.copytree(path, out / Path(path).name)

    model_uri = _log_model_dir(client, run_id, name, {"target": target, "model_name": model_name}, target, save,
                               str(path))
    tags = {**lineage.tags(), "target": target, "verified": "false", "status": status, "blessed": "false",
            "releasable": "false", **(extra_tags or {})}
    try:
        try:
            client.create_registered_model(name, tags={"target": target, "model_name": model_name})
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        return client.create_model_version(name, source=model_uri, run_id=run_id, tags=tags,
                                           description=f"{target}: {status}",
                                           model_id=model_uri.split("/", 1)[1].lstrip("/"))
    except MlflowException as exc:
        raise RegistryError(f"registering {name} failed: {exc.message}", where=str(path)) from exc


def loggable(target: str) -> bool:
    """Targets the registry holds: TFLite (pyfunc), ONNX (onnx flavor), and the directory formats
    SavedModel and OpenVINO IR (pyfunc over the directory)."""
    return target.startswith("tflite") or target in LOGGERS


def register_variant(
    client: MlflowClient,
    run_id: str,
    model_path: Path | str,
    spec: PreprocessingSpec,
    input_example: np.ndarray,
    *,
    model_name: str,
    target: str,
    lineage: Lineage,
    blessing: BlessingLike | None = None,
    releasable: bool = False,
    description: str | None = None,
    extra_tags: dict[str, str] | None = None,
) -> ModelVersion:
    """Log and register one variant as a new version of `<model_name>-<target>`.

    Idempotent per release: if this release run (`lineage.run_id`) already registered a version
    of the model (a retried task after a lost reply), that version is returned, not a second one.
    """
    if releasable:
        _require_blessing(blessing, target)
    name = registered_model_name(model_name, target)
    existing = _version_of_release(client, name, lineage.run_id)
    if existing is not None:
        return existing
    log = LOGGERS.get(target, log_tflite_model)
    # named like its registered model (model, method, target), not 14 LoggedModels all "model"
    model_uri = log(client, run_id, model_path, spec, input_example, name=name,
                    tags={"target": target, "model_name": model_name})
    tags = {
        **lineage.tags(),
        "target": target,
        "blessed": str(bool(blessing and blessing.blessed)).lower(),
        "releasable": str(releasable).lower(),
        **(extra_tags or {}),
    }
    if blessing is not None and blessing.reasons:
        tags["blessing_reasons"] = "; ".join(blessing.reasons)[:4000]
    try:
        try:
            client.create_registered_model(name, tags={"target": target, "model_name": model_name})
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        model_id = model_uri.split("/", 1)[1].lstrip("/")
        mv = client.create_model_version(
            name,
            source=model_uri,
            run_id=run_id,
            tags=tags,
            description=description,
            model_id=model_id,
        )
    except MlflowException as exc:
        raise RegistryError(
            f"registering {name} failed: {exc.message}", where=str(model_path)
        ) from exc
    return mv


def _version_of_release(client: MlflowClient, name: str, release_run_id: str) -> ModelVersion | None:
    try:
        found = client.search_model_versions(f"name = '{name}' and tags.run_id = '{release_run_id}'")
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise RegistryError(f"reading versions of {name} failed: {exc.message}", where=name) from exc
    return min(found, key=lambda mv: int(mv.version)) if found else None


def _require_blessing(blessing: BlessingLike | None, target: str) -> None:
    if blessing is None:
        raise BlessingError(f"{target}: refusing releasable=true without a blessing")
    if not blessing.blessed:
        raise BlessingError(
            f"{target}: refusing releasable=true, not blessed: {'; '.join(blessing.reasons)}"
        )


def get_version(client: MlflowClient, name: str, version: str | int) -> ModelVersion:
    try:
        return client.get_model_version(name, str(version))
    except MlflowException as exc:
        raise RegistryError(
            f"no registry version {name}/{version}", where=client.tracking_uri
        ) from exc


def mark_releasable(
    client: MlflowClient, name: str, version: str | int, blessing: BlessingLike
) -> None:
    _require_blessing(blessing, name)
    client.set_model_version_tag(name, str(version), "blessed", "true")
    client.set_model_version_tag(name, str(version), "releasable", "true")


def set_version_tags(
    client: MlflowClient, name: str, version: str | int, tags: dict[str, Any]
) -> None:
    for key, value in tags.items():
        client.set_model_version_tag(
            name, str(version), key, value if isinstance(value, str) else json.dumps(value)
        )


def set_bundle_id(client: MlflowClient, name: str, version: str | int, bundle_id: str,
                  cohort: str | None = None) -> None:
    """The bundle a version shipped in. One version can ship in a bundle per cohort (sealed with
    each cohort's key, or with its own calibration): `bundle_id.<cohort>` names each, and
    `bundle_id` the latest."""
    client.set_model_version_tag(name, str(version), "bundle_id", bundle_id)
    if cohort is not None:
        client.set_model_version_tag(name, str(version), f"bundle_id.{cohort}", bundle_id)


def cohort_alias(cohort: str, role: str) -> str:
    if role not in ("stable", "canary"):
        raise RegistryError(f"alias role must be stable or canary, not {role!r}")
    return f"{cohort}-{role}"


def models_with_alias(client: MlflowClient, alias: str) -> dict[str, str]:
    """{registered model: version} of every registered model that carries `alias`."""
    found: dict[str, str] = {}
    token = None
    while True:
        page = client.search_registered_models(max_results=1000, page_token=token)
        for rm in page:
            if alias in (rm.aliases or {}):
                found[rm.name] = str(rm.aliases[alias])
        token = page.token
        if not token:
            return found


def set_cohort_alias(
    client: MlflowClient, name: str, cohort: str, role: str, version: str | int | None
) -> None:
    """Point `<cohort>-<role>` at `version` of `name`, or remove it from `name` when `version`
    is None. A cohort runs one stable and at most one canary, so setting the alias takes it off
    every other registered model that carried it (a stable of another method or target)."""
    alias = cohort_alias(cohort, role)
    if version is None:
        _delete_alias(client, name, alias)
        return
    for other in models_with_alias(client, alias):
        if other != name:
            _delete_alias(client, other, alias)
    client.set_registered_model_alias(name, alias, str(version))


def sync_cohort_aliases(
    client: MlflowClient,
    cohort: str,
    stable: tuple[str, str] | None,
    canary: tuple[str, str] | None,
    *,
    keep_stable: bool = False,
) -> None:
    """Make the registry say what the cohort's channel says: `<cohort>-stable` on exactly the
    (registered model, version) `stable`, `<cohort>-canary` on exactly `canary`, on no other
    model. `keep_stable` leaves the stable alias alone (a stable whose model is unknown)."""
    for role, want in (("stable", stable), ("canary", canary)):
        if role == "stable" and keep_stable:
            continue
        alias = cohort_alias(cohort, role)
        carriers = models_with_alias(client, alias)
        for name in carriers:
            if want is None or name != want[0]:
                _delete_alias(client, name, alias)
        if want is not None and carriers.get(want[0]) != str(want[1]):
            client.set_registered_model_alias(want[0], alias, str(want[1]))


def _delete_alias(client: MlflowClient, name: str, alias: str) -> None:
    try:
        client.delete_registered_model_alias(name, alias)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise

"""Where logs go: flow runs log at INFO (to the Prefect UI), third-party noise is cut at its source.

TensorFlow's C++ log is cut by TF_CPP_MIN_LOG_LEVEL (components/__init__.py); its Python loggers,
absl's and the warnings these libraries raise on every import are cut here, once per process,
when a flow starts. Prefect's own level is left alone: silencing Prefect would also hide our flow
runs' logs from the UI. `edgeops --verbose` (EDGEOPS_VERBOSE=1) keeps everything.
"""

from __future__ import annotations

import logging
import os
import warnings

NOISY_LOGGERS = ("absl", "tensorflow", "h5py", "matplotlib", "PIL", "numba", "alembic", "urllib3",
                 "mlflow.store.db.utils")  # "Creating initial MLflow database tables..."
NOISY_WARNING_MODULES = r"(tensorflow|tf_keras|keras|tensorflow_model_optimization|tf2onnx|google\.protobuf|mlflow)"


def quiet_third_party() -> None:
    """Third-party loggers at WARNING and their import-time warnings off (unless verbose)."""
    if os.environ.get("EDGEOPS_VERBOSE") == "1":
        return
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    # coremltools warns at every conversion that its untested TF/sklearn versions and its macOS-only
    # runtime are missing (the release records Core ML as "converted, not run" on its own).
    logging.getLogger("coremltools").setLevel(logging.ERROR)
    for category in (DeprecationWarning, FutureWarning, UserWarning):
        warnings.filterwarnings("ignore", category=category, module=NOISY_WARNING_MODULES)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("TQDM_DISABLE", "1")  # coremltools' per-pass bars; progress is edgeops.progress

"""Pure ML steps: typed functions over in-memory values or local paths.

No prefect, mlflow, boto3 or dvc here. tfmot 0.8 needs Keras 2 (tf_keras), which TensorFlow only
selects when TF_USE_LEGACY_KERAS=1 is set before it is first imported: this is the one place
that sets it for every entry point (CLI, flows, tests, DVC stages). `components.keras` checks it.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # C++ ERROR lines here are tf.data noise

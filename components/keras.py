"""The one import point for TensorFlow and Keras 2 (tf_keras), checked to be the legacy Keras."""

from __future__ import annotations

import os

from edgeops.errors import ConfigError

if os.environ.get("TF_USE_LEGACY_KERAS") != "1":  # pragma: no cover - guarded by components/__init__
    raise ConfigError("TF_USE_LEGACY_KERAS=1 must be set before tensorflow is imported")

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

if not tf.keras.__name__.startswith("tf_keras"):
    raise ConfigError(
        "tensorflow was imported before components and picked Keras 3; "
        "import components first or export TF_USE_LEGACY_KERAS=1"
    )

__all__ = ["keras", "tf"]

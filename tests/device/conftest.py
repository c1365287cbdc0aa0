"""Fixtures for the device tests: real digits images and a tiny real TFLite model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from device.preprocessing import PreprocessingSpec, normalize


@pytest.fixture(scope="session")
def digits16() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits as (N,16,16,1) float32 in [0,1] and int labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.kron((d.images / 16.0).astype(np.float32), np.ones((1, 2, 2), np.float32))
    return x[..., None], d.target.astype(np.int64)


@dataclass(frozen=True)
class TinyModels:
    """A tiny real model on 16x16 digits, converted to float and full-int8 TFLite."""

    f32: bytes
    int8: bytes
    spec: PreprocessingSpec
    x_test: np.ndarray
    y_test: np.ndarray


@pytest.fixture(scope="session")
def tiny_models(digits16, tmp_path_factory) -> TinyModels:
    import components  # noqa: F401  (TF_USE_LEGACY_KERAS before tensorflow)
    from components.keras import keras, tf

    x, y = digits16
    idx = np.random.default_rng(0).permutation(len(y))
    test, train = idx[:400], idx[400:]
    spec = PreprocessingSpec(
        height=16,
        width=16,
        channels=1,
        mean=(float(x[train].mean()),),
        std=(float(x[train].std()),),
        labels=tuple(str(i) for i in range(10)),
    )
    xn = normalize(x[train], spec)
    tf.random.set_seed(0)
    model = keras.Sequential(
        [
            keras.layers.Input((16, 16, 1)),
            keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.DepthwiseConv2D(3, padding="same", activation="relu"),
            keras.layers.Conv2D(16, 1, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.fit(xn, y[train], epochs=4, batch_size=32, verbose=0)
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    f32 = conv.convert()
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([xn[i : i + 1]] for i in range(100))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    int8 = conv.convert()
    return TinyModels(f32, int8, spec, x[test], y[test])


class Release:
    """The registry side of a test: the update channel (TUF) with real keys, real bundles."""

    COHORTS = ("pi", "mcu", "pi-fleet-eu", "mcu-line-a", "c")

    def __init__(self, store, keys_dir: Path, work: Path) -> None:
        from registry.tuf_keys import Keystore
        from registry.tuf_repo import TufRepository

        self.store, self.work = store, work
        self.repo = TufRepository(store, Keystore(keys_dir))
        if not self.repo.exists():
            self.repo.init(list(self.COHORTS), bin_bits=2)
        self.root = self.repo.export_root()  # what a device is provisioned with

    def publish(
        self, model: bytes, spec: PreprocessingSpec, version: str, target: str = "tflite-f32", **kw
    ):
        from registry.bundles import publish_bundle

        path = self.work / f"model-{version}-{target}.tflite"
        path.write_bytes(model)
        return publish_bundle(
            self.repo, path, spec, model_name="digits", model_version=version, target=target, **kw
        )

    def point(self, cohort: str, stable, candidate=None, percentage: float = 0.0, salt: str = ""):
        from dataclasses import replace

        from device.protocol import Channel
        from registry.channels import update_channel

        def mutate(c):
            base = c or Channel(cohort, salt=salt or "s")
            return replace(
                base, stable=stable, candidate=candidate, percentage=percentage, salt=salt or base.salt
            )

        return update_channel(self.repo, cohort, mutate)


@pytest.fixture
def release(tmp_path: Path) -> Release:
    from device.store import LocalStore

    (tmp_path / "work").mkdir()
    return Release(LocalStore(tmp_path / "store"), tmp_path / "keys", tmp_path / "work")


@pytest.fixture
def make_release(tmp_path: Path):
    """A Release on a store of the test's choosing (e.g. S3 on moto)."""

    def make(store) -> Release:
        work = tmp_path / "release-work"
        work.mkdir(exist_ok=True)
        return Release(store, tmp_path / "release-keys", work)

    return make

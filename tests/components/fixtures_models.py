"""Helper B's shared fixtures: sklearn's bundled digits (8x8) and a tiny Keras model on them.

Imported by the conversion/compression/measure/blessing/selection tests (another helper owns
tests/components/conftest.py). Session scoped: one small training per test session.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

import components  # noqa: F401  (sets TF_USE_LEGACY_KERAS before tensorflow)
from device.preprocessing import PreprocessingSpec


@dataclass(frozen=True)
class TinyPrepared:
    """The attributes convert_and_verify reads from components.prepare's PreparedData."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    spec: PreprocessingSpec


def make_digits(n_test: int = 300, seed: int = 0) -> TinyPrepared:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x01 = (digits.images / 16.0).astype(np.float32)[..., None]
    y = digits.target.astype(np.int64)
    idx = np.random.default_rng(seed).permutation(len(y))
    test, train = idx[:n_test], idx[n_test:]
    spec = PreprocessingSpec(
        height=8,
        width=8,
        channels=1,
        mean=(float(x01[train].mean()),),
        std=(float(x01[train].std()),),
        labels=tuple(str(i) for i in range(10)),
    )
    return TinyPrepared(x01[train], y[train], x01[test], y[test], spec)


def tiny_model(prepared: TinyPrepared, epochs: int = 4, width: int = 8):
    """A small conv net; a few epochs on 1.5k digits reach ~95% in seconds."""
    from components.keras import keras, tf
    from device.preprocessing import normalize

    tf.random.set_seed(0)
    model = keras.Sequential(
        [
            keras.layers.Input((8, 8, 1)),
            keras.layers.Conv2D(width, 3, padding="same", activation="relu"),
            keras.layers.DepthwiseConv2D(3, padding="same", activation="relu"),
            keras.layers.Conv2D(2 * width, 1, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(
        normalize(prepared.x_train, prepared.spec),
        prepared.y_train,
        epochs=epochs,
        batch_size=32,
        verbose=0,
    )
    return model


@pytest.fixture(scope="session")
def digits() -> TinyPrepared:
    return make_digits()


@pytest.fixture(scope="session")
def digits_model(digits: TinyPrepared):
    return tiny_model(digits)

"""Fixtures for the device tests: real digits images and a tiny real TFLite model."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def digits16() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits as (N,16,16,1) float32 in [0,1] and int labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.kron((d.images / 16.0).astype(np.float32), np.ones((1, 2, 2), np.float32))
    return x[..., None], d.target.astype(np.int64)

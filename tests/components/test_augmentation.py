"""Augmentation: each transform does what its parameter says, only in training, repeatably."""

from __future__ import annotations

import numpy as np
import pytest

from components.augmentation import is_active, make_augmenter, training_dataset
from components.keras import tf
from edgeops.params import AugmentParams

OFF = AugmentParams(rotation_deg=0, brightness=0, contrast=0, blur_prob=0, noise_std=0)


def batch() -> tf.Tensor:
    x = np.zeros((4, 9, 9, 1), np.float32)
    x[:, 4, :, 0] = 1.0  # a horizontal line through the centre
    return tf.constant(x)


def test_all_off_is_identity() -> None:
    assert not is_active(OFF)
    out = make_augmenter(OFF, seed=0)(batch())
    np.testing.assert_allclose(out.numpy(), batch().numpy())


def test_rotation_moves_pixels_about_the_centre() -> None:
    out = make_augmenter(OFF.model_copy(update={"rotation_deg": 90.0}), seed=1)(batch()).numpy()
    assert out.shape == (4, 9, 9, 1)
    assert out[:, 4, 4, 0] == pytest.approx(np.ones(4), abs=1e-5)  # the centre stays
    assert not np.allclose(out, batch().numpy())


def test_lighting_blur_noise_stay_in_range_and_repeat_with_the_seed() -> None:
    params = AugmentParams(rotation_deg=15, brightness=0.3, contrast=0.3, blur_prob=1.0, noise_std=0.1)
    a = make_augmenter(params, seed=3)(batch()).numpy()
    b = make_augmenter(params, seed=3)(batch()).numpy()
    c = make_augmenter(params, seed=4)(batch()).numpy()
    assert a.min() >= 0.0 and a.max() <= 1.0
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    blurred = make_augmenter(OFF.model_copy(update={"blur_prob": 1.0}), seed=0)(batch()).numpy()
    assert 0.0 < blurred[0, 3, 4, 0] < 1.0 and blurred[0, 4, 4, 0] < 1.0  # the line spreads


def test_training_dataset_normalises_and_only_augments_when_asked() -> None:
    x = np.full((6, 5, 5, 1), 0.5, np.float32)
    y = np.arange(6)
    plain = training_dataset(x, y, (0.25,), (0.5,), 3, AugmentParams(), seed=0, augment=False)
    xb, _ = next(iter(plain))
    np.testing.assert_allclose(xb.numpy(), 0.5)
    aug = training_dataset(x, y, (0.25,), (0.5,), 3, AugmentParams(brightness=0.4), seed=0)
    xb, _ = next(iter(aug))
    assert not np.allclose(xb.numpy(), 0.5)

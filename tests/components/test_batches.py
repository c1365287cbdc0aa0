"""tf.data over prepared splits: the same batches as the in-memory pipeline, read by rows."""

from __future__ import annotations

import numpy as np

from components.augmentation import training_dataset
from components.batches import predict_split, split_batches
from components.keras import keras
from components.prepared import UnitImages
from device.preprocessing import PreprocessingSpec, normalize
from edgeops.params import AugmentParams

SPEC = PreprocessingSpec(6, 6, 3, (0.4, 0.5, 0.6), (0.2, 0.25, 0.3), ("a", "b"))


def _data(n: int = 37) -> tuple[UnitImages, np.ndarray]:
    rng = np.random.default_rng(3)
    return UnitImages(rng.integers(0, 256, (n, 6, 6, 3), dtype=np.uint8)), rng.integers(0, 2, n)


def test_shuffled_batches_equal_the_in_memory_pipeline() -> None:
    x, y = _data()
    old = training_dataset(np.asarray(x), y, SPEC.mean, SPEC.std, 8, AugmentParams(), seed=5, augment=False)
    new = split_batches(x, y, SPEC, 8, seed=5)
    for _ in range(2):  # reshuffled each epoch, identically
        pairs = list(zip(old, new, strict=True))
        assert len(pairs) == 5
        for (xo, yo), (xn, yn) in pairs:
            np.testing.assert_array_equal(yo.numpy(), yn.numpy())
            np.testing.assert_allclose(xo.numpy(), xn.numpy(), rtol=0, atol=1e-6)


def test_augmented_batches_stay_normalised_pixels_and_unshuffled_is_in_order() -> None:
    x, y = _data()
    plain = np.concatenate([b.numpy() for b, _ in split_batches(x, y, SPEC, 16)])
    np.testing.assert_allclose(plain, normalize(x, SPEC), atol=1e-6)
    aug = next(iter(split_batches(x, y, SPEC, 16, seed=1, augment=AugmentParams(brightness=0.5))))[0].numpy()
    lo = (0 - np.asarray(SPEC.mean)) / np.asarray(SPEC.std)
    hi = (1 - np.asarray(SPEC.mean)) / np.asarray(SPEC.std)
    assert np.all(aug >= lo - 1e-5) and np.all(aug <= hi + 1e-5)
    assert not np.allclose(aug, plain[:16], atol=1e-3)


def test_predict_split_reads_in_chunks_like_one_predict() -> None:
    x, _ = _data(1100)  # more than one chunk
    inputs = keras.Input((6, 6, 3))
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(inputs)))
    np.testing.assert_allclose(predict_split(model, x, SPEC), model.predict(normalize(x, SPEC), verbose=0),
                               atol=1e-5)
    assert predict_split(model, x[:0], SPEC).shape == (0, 2)

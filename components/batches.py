"""tf.data pipelines over prepared splits: batches are read from the (memory-mapped) uint8 rows
when they are needed, converted to [0, 1], augmented (training only) and normalised per batch.

So training and evaluation hold a few batches, never a split: memory stays flat as the folder
grows. The training order is the one `Dataset.shuffle` gives the row indices with the same
seed that components.augmentation's in-memory pipeline used, so the batches are the same.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from components.augmentation import is_active, make_augmenter
from components.keras import keras, tf
from components.prepared import UnitImages
from device.preprocessing import PreprocessingSpec, normalize
from edgeops.params import AugmentParams

EVAL_BATCH = 256
CHUNK_ROWS = 1024  # rows read and normalised at once when predicting a split


def _gather(x01: np.ndarray | UnitImages, y: np.ndarray):
    """A numpy function: the rows at `idx` (read in file order, returned in the asked order)."""

    def gather(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        order = np.argsort(idx, kind="stable")
        rows = np.empty((len(idx), *x01.shape[1:]), np.float32)
        rows[order] = x01[idx[order]]
        if isinstance(x01, UnitImages):
            x01.release()  # an epoch touches every row: keep only this batch resident
        return rows, y[idx].astype(np.int64)

    return gather


def split_batches(
    x01: np.ndarray | UnitImages,
    y: np.ndarray,
    spec: PreprocessingSpec,
    batch_size: int,
    seed: int | None = None,
    augment: AugmentParams | None = None,
) -> tf.data.Dataset:
    """(normalised x, y) batches of one split; shuffled with a `seed`, augmented with `augment`."""
    n, shape = len(x01), tuple(x01.shape[1:])
    m, s = tf.constant(spec.mean, tf.float32), tf.constant(spec.std, tf.float32)
    gather = _gather(x01, np.asarray(y))
    ds = tf.data.Dataset.range(n)
    if seed is not None:
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)

    def read(idx: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        x, t = tf.numpy_function(gather, [idx], (tf.float32, tf.int64), stateful=False)
        x.set_shape((None, *shape))
        t.set_shape((None,))
        return x, t

    ds = ds.batch(batch_size).map(read)
    if augment is not None and is_active(augment):
        fn = make_augmenter(augment, seed or 0)
        ds = ds.map(lambda x, t: (fn(x), t))
    return ds.map(lambda x, t: ((x - m) / s, t)).prefetch(2)


def chunks(x01: np.ndarray | UnitImages, spec: PreprocessingSpec, rows: int = CHUNK_ROWS) -> Iterator[np.ndarray]:
    """The model inputs of a split, `rows` at a time (the device's numpy normalisation)."""
    for i in range(0, len(x01), rows):
        x = normalize(x01[i : i + rows], spec)
        if isinstance(x01, UnitImages):
            x01.release()
        yield x


def predict_split(model: keras.Model, x01: np.ndarray | UnitImages, spec: PreprocessingSpec) -> np.ndarray:
    """Inference-mode outputs for every row of a split, read a chunk at a time."""
    outs = [model.predict(x, batch_size=EVAL_BATCH, verbose=0) for x in chunks(x01, spec)]
    width = model.output_shape[-1]
    return np.concatenate(outs) if outs else np.zeros((0, width), np.float32)

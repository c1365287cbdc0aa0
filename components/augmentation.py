"""Augmentation that mirrors the field: rotation, lighting, blur and sensor noise.

It runs as a tf.data map on [0, 1] pixels before normalisation, in training only, so the model
itself holds no random layers and a converted file cannot contain them. Randomness comes from
one seeded `tf.random.Generator` and the map runs sequentially, so runs are repeatable.
"""

from __future__ import annotations

import math

import numpy as np

from components.keras import tf
from edgeops.params import AugmentParams


def _rotation_transforms(angles: tf.Tensor, height: int, width: int) -> tf.Tensor:
    """Projective transforms (N, 8) rotating each image about its centre."""
    cos, sin = tf.cos(angles), tf.sin(angles)
    h, w = float(height - 1), float(width - 1)
    x_off = (w - (cos * w - sin * h)) / 2.0
    y_off = (h - (sin * w + cos * h)) / 2.0
    zeros = tf.zeros_like(angles)
    return tf.stack([cos, -sin, x_off, sin, cos, y_off, zeros, zeros], axis=1)


def _gaussian_kernel(channels: int, sigma: float = 0.8) -> tf.Tensor:
    k = np.exp(-(np.arange(-1, 2) ** 2) / (2 * sigma**2))
    k2 = np.outer(k, k) / np.outer(k, k).sum()
    return tf.constant(np.tile(k2[:, :, None, None], (1, 1, channels, 1)), dtype=tf.float32)


def make_augmenter(params: AugmentParams, seed: int):
    """A function (x01 batch (N,H,W,C) float32) -> augmented batch in [0, 1]."""
    gen = tf.random.Generator.from_seed(seed)

    def augment(x: tf.Tensor) -> tf.Tensor:
        n = tf.shape(x)[0]
        height, width, channels = x.shape[1], x.shape[2], x.shape[3]
        if params.rotation_deg > 0:
            limit = math.radians(params.rotation_deg)
            angles = gen.uniform([n], -limit, limit)
            x = tf.raw_ops.ImageProjectiveTransformV3(
                images=x,
                transforms=_rotation_transforms(angles, height, width),
                output_shape=tf.constant([height, width], tf.int32),
                fill_value=0.0,
                interpolation="BILINEAR",
                fill_mode="NEAREST",
            )
        if params.contrast > 0:
            factor = gen.uniform([n, 1, 1, 1], 1.0 - params.contrast, 1.0 + params.contrast)
            mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
            x = (x - mean) * factor + mean
        if params.brightness > 0:
            x = x + gen.uniform([n, 1, 1, 1], -params.brightness, params.brightness)
        if params.blur_prob > 0:
            blurred = tf.nn.depthwise_conv2d(
                x, _gaussian_kernel(channels), strides=[1, 1, 1, 1], padding="SAME"
            )
            pick = gen.uniform([n, 1, 1, 1]) < params.blur_prob
            x = tf.where(pick, blurred, x)
        if params.noise_std > 0:
            x = x + gen.normal(tf.shape(x), stddev=params.noise_std)
        return tf.clip_by_value(x, 0.0, 1.0)

    return augment


def is_active(params: AugmentParams) -> bool:
    return any(
        v > 0
        for v in (params.rotation_deg, params.brightness, params.contrast, params.blur_prob, params.noise_std)
    )


def training_dataset(
    x01: np.ndarray,
    y: np.ndarray,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    batch_size: int,
    params: AugmentParams,
    seed: int,
    augment: bool = True,
) -> tf.data.Dataset:
    """Shuffled, augmented (when asked) and normalised batches for `fit`."""
    m, s = tf.constant(mean, tf.float32), tf.constant(std, tf.float32)
    ds = tf.data.Dataset.from_tensor_slices((x01.astype(np.float32), y.astype(np.int64)))
    ds = ds.shuffle(len(x01), seed=seed, reshuffle_each_iteration=True).batch(batch_size)
    if augment and is_active(params):
        fn = make_augmenter(params, seed)
        ds = ds.map(lambda x, t: (fn(x), t))
    return ds.map(lambda x, t: ((x - m) / s, t)).prefetch(2)

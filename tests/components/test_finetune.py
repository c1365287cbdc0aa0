"""Distillation-aware fine-tuning: the student moves toward the teacher's soft targets, and a
tfmot-wrapped student is read through its logits layer."""

from __future__ import annotations

import numpy as np
from fixtures_models import digits  # noqa: F401

from components.architectures import build_mobilenet, logits_model
from components.finetune import Tuner, student_logits
from edgeops.params import CompressParams


def _kl(teacher, student, x) -> float:
    from components.keras import tf

    t, s = np.asarray(logits_model(teacher)(x)), np.asarray(logits_model(student)(x))
    pt = np.asarray(tf.nn.softmax(t))
    return float(np.mean(np.sum(pt * (np.asarray(tf.nn.log_softmax(t)) - np.asarray(tf.nn.log_softmax(s))), axis=1)))


def test_soft_targets_pull_the_student_to_the_teacher(digits) -> None:  # noqa: F811
    from components.keras import keras
    from device.preprocessing import normalize

    keras.utils.set_random_seed(0)
    x = normalize(digits.x_train, digits.spec)
    teacher = build_mobilenet((8, 8, 1), 10, alpha=1.0, name="teacher")
    teacher.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    teacher.fit(x, digits.y_train, epochs=5, verbose=0)
    student = build_mobilenet((8, 8, 1), 10, alpha=0.5)
    before = _kl(teacher, student, x)
    assert before > 0.5  # a confident teacher, an untrained student: far apart
    params = CompressParams(soft_weight=1.0, learning_rate=3e-3, batch_size=32)
    tuner = Tuner.for_data(digits, params, teacher)
    hist = tuner.fit(student, 2)
    assert "soft_loss" in hist  # the Distiller ran, not plain cross-entropy
    assert _kl(teacher, student, x) < 0.7 * before


def test_wrapped_student_is_read_through_its_logits() -> None:
    import tensorflow_model_optimization as tfmot

    model = build_mobilenet((8, 8, 1), 10, alpha=0.5)
    wrapped = tfmot.sparsity.keras.prune_low_magnitude(model)
    view = student_logits(wrapped)
    assert view.output.name.split("/")[0].endswith("logits")
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 1)).astype("f")
    probs = np.asarray(wrapped(x))
    z = np.asarray(view(x))
    assert np.allclose(np.exp(z) / np.exp(z).sum(axis=1, keepdims=True), probs, atol=1e-5)

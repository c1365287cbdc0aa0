"""Distillation-aware fine-tuning for every compression step (pruning, clustering, QAT, structured).

Hard labels alone forget what the float model knew: after pruning or QAT the student fine-tunes
on the teacher's softened outputs (Hinton et al. 2015; the float parent when no teacher is
given) on the same field augmentation as training, with a cosine learning-rate schedule over the
fine-tune's steps. The student is read through its (possibly tfmot-wrapped) `logits` layer, or
else through its probabilities: log(softmax(z)) differs from z by a per-row constant, which
softmax(./T) ignores, so the distillation loss is the same as on logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from components.augmentation import training_dataset
from components.distillation import Distiller
from components.keras import keras, tf
from edgeops.errors import TrainingError

if TYPE_CHECKING:
    from components.conversion import PreparedLike
    from edgeops.params import AugmentParams, CompressParams


def _log_probs(model: keras.Model) -> keras.Model:
    """A view of a softmax-ended model (wrapped or not) that outputs log-probabilities."""
    inputs = keras.Input(model.input_shape[1:])
    out = keras.layers.Lambda(lambda p: tf.math.log(tf.maximum(p, 1e-8)), name="log_probs")(model(inputs))
    return keras.Model(inputs, out, name=f"{model.name}_log_probs")


def student_logits(model: keras.Model) -> keras.Model:
    """The logits of a (possibly tfmot-wrapped: prune_low_magnitude_logits, quant_logits,
    cluster_logits) model ending in a `logits` layer; log-probabilities otherwise. Under QAT the
    softmax output is fake-quantised to 1/256 steps, so logits keep the gradients log(p) loses."""
    named = [layer for layer in model.layers if layer.name.endswith("logits")]
    if len(named) == 1:
        return keras.Model(model.inputs, named[0].output, name=f"{model.name}_logits")
    return _log_probs(model)


def teacher_logits(teacher: keras.Model) -> keras.Model:
    from components.architectures import logits_model

    names = {layer.name for layer in teacher.layers}
    return logits_model(teacher) if "logits" in names else _log_probs(teacher)


@dataclass(frozen=True)
class Tuner:
    """One fine-tuning recipe (data, augmentation, teacher, schedule) shared by every method."""

    x01: np.ndarray
    y: np.ndarray
    mean: tuple[float, ...]
    std: tuple[float, ...]
    params: CompressParams
    teacher: keras.Model | None
    augment: AugmentParams

    @classmethod
    def for_data(
        cls,
        prepared: PreparedLike,
        params: CompressParams,
        teacher: keras.Model | None,
        augment: AugmentParams | None = None,
    ) -> Tuner:
        from edgeops.params import AugmentParams

        spec = prepared.spec
        if len(prepared.x_train) == 0:
            raise TrainingError("compression fine-tuning: the train split is empty")
        return cls(
            np.asarray(prepared.x_train, np.float32),
            np.asarray(prepared.y_train),
            tuple(spec.mean),
            tuple(spec.std),
            params,
            teacher_logits(teacher) if teacher is not None and params.distill else None,
            augment if augment is not None else AugmentParams(),
        )

    def steps(self, epochs: int) -> int:
        return int(np.ceil(len(self.x01) / self.params.batch_size)) * epochs

    def fit(
        self, model: keras.Model, epochs: int, callbacks: list | None = None, learning_rate: float | None = None
    ) -> dict[str, list[float]]:
        """Fine-tune `model` (softmax output) in place at `learning_rate` (params.learning_rate
        when None), cosine-decayed over the fine-tune; returns the per-epoch history."""
        p = self.params
        ds = training_dataset(
            self.x01, self.y, self.mean, self.std, p.batch_size, self.augment, p.seed, augment=p.augment
        )
        rate = learning_rate if learning_rate is not None else p.learning_rate
        schedule = keras.optimizers.schedules.CosineDecay(rate, max(1, self.steps(epochs)), alpha=0.05)
        student = student_logits(model)
        if self.teacher is not None:
            trainee: keras.Model = Distiller(student, self.teacher, p.temperature, p.soft_weight)
            trainee.compile(optimizer=keras.optimizers.Adam(schedule))
        else:
            trainee = student
            trainee.compile(
                optimizer=keras.optimizers.Adam(schedule),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
            )
        hist = trainee.fit(ds, epochs=epochs, verbose=0, callbacks=callbacks or [])
        if not np.isfinite(hist.history["loss"][-1]):
            raise TrainingError(f"compression fine-tuning diverged (loss {hist.history['loss'][-1]})")
        return {k: [float(v) for v in vs] for k, vs in hist.history.items()}

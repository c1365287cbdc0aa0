"""Train: the float model (optionally distilled from a larger teacher), evaluated in inference mode.

Every accuracy here comes from `predict`, i.e. BatchNorm in inference mode with its moving
statistics: the numbers a converted file will reproduce, not the batch-statistics numbers that
`fit` prints. Seeds and op determinism make a run repeatable on the same machine and build.
Every split is read through components.batches (tf.data over the memory-mapped rows, normalised
per batch), so training and evaluation never hold a whole split in memory.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from components.architectures import build_mobilenet, build_teacher, count_cost, logits_model
from components.batches import EVAL_BATCH, predict_split, split_batches
from components.distillation import Distiller
from components.keras import keras, tf
from components.prepare import PreparedData
from device.preprocessing import PreprocessingSpec
from edgeops.errors import TrainingError
from edgeops.params import TrainParams


@dataclass(frozen=True)
class ModelReport:
    """What one trained network scored and cost."""

    name: str
    test_accuracy: float
    val_accuracy: float
    params_count: int
    macs: int
    train_seconds: float
    epochs: int


@dataclass(frozen=True)
class TrainResult:
    """The float model (softmax output, model input = normalize(x01)) and its evidence."""

    model: keras.Model
    history: dict[str, list[float]]
    test_accuracy: float
    val_accuracy: float
    params_count: int
    macs: int
    train_seconds: float
    confusion: np.ndarray
    labels: tuple[str, ...]
    distilled: bool = False
    teacher: ModelReport | None = None
    teacher_model: keras.Model | None = field(default=None, repr=False)
    train_accuracy: float = float("nan")  # inference mode, un-augmented train split

    @property
    def batchnorm_gap(self) -> float:
        """Last epoch's fit accuracy (batch statistics) minus inference-mode train accuracy.

        A large positive gap is the BatchNorm train/inference pitfall: moving statistics that
        have not caught up with the weights.
        """
        fit_acc = self.history.get("accuracy", [float("nan")])[-1]
        return float(fit_acc - self.train_accuracy)

    @property
    def test_errors(self) -> int:
        return int(self.confusion.sum() - np.trace(self.confusion))

    def metrics(self) -> dict[str, float]:
        """Flat numbers for a tracker."""
        out = {
            "test_accuracy": self.test_accuracy,
            "val_accuracy": self.val_accuracy,
            "test_errors": float(self.test_errors),
            "params": float(self.params_count),
            "macs": float(self.macs),
            "train_seconds": self.train_seconds,
            "train_accuracy": self.train_accuracy,
            "batchnorm_gap": self.batchnorm_gap,
        }
        if self.teacher:
            out |= {"teacher_test_accuracy": self.teacher.test_accuracy, "teacher_params": float(self.teacher.params_count)}
        return out


def seed_everything(seed: int) -> None:
    """Python, numpy and TF seeds plus deterministic kernels (a process-wide TF setting)."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def accuracy_and_confusion(
    model: keras.Model, x01: np.ndarray, y: np.ndarray, spec: PreprocessingSpec
) -> tuple[float, np.ndarray]:
    """Inference-mode accuracy on [0, 1] pixels (normalised by `spec` a chunk at a time) and an
    (n, n) confusion matrix (rows: true, columns: predicted)."""
    n = len(spec.labels)
    if len(x01) == 0:
        return float("nan"), np.zeros((n, n), dtype=np.int64)
    pred = np.argmax(predict_split(model, x01, spec), axis=1)
    cm = np.zeros((n, n), dtype=np.int64)
    np.add.at(cm, (y.astype(np.int64), pred), 1)
    return float(np.trace(cm) / len(y)), cm


def _fit(
    trainee: keras.Model,
    prepared: PreparedData,
    params: TrainParams,
    epochs: int,
    seed: int,
) -> dict[str, list[float]]:
    spec = prepared.spec
    ds = split_batches(prepared.x_train, prepared.y_train, spec, params.batch_size, seed, params.augment)
    steps = max(1, int(np.ceil(len(prepared.x_train) / params.batch_size))) * epochs
    schedule = keras.optimizers.schedules.CosineDecay(params.learning_rate, steps, alpha=0.05)
    if not isinstance(trainee, Distiller):
        trainee.compile(
            optimizer=keras.optimizers.Adam(schedule),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        )
    else:
        trainee.compile(optimizer=keras.optimizers.Adam(schedule))
    val = split_batches(prepared.x_val, prepared.y_val, spec, EVAL_BATCH) if len(prepared.x_val) else None
    hist = trainee.fit(ds, epochs=epochs, validation_data=val, verbose=0, callbacks=[_EpochProgress(epochs)])
    if not np.isfinite(hist.history["loss"][-1]):
        raise TrainingError(f"training diverged: loss {hist.history['loss'][-1]} (lower learning_rate)")
    return {k: [float(v) for v in vals] for k, vals in hist.history.items()}


class _EpochProgress(keras.callbacks.Callback):
    """Each finished epoch as a progress sub-step of the train stage (edgeops.progress: a log
    record, drawn only by a terminal's display)."""

    def __init__(self, epochs: int) -> None:
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        from edgeops.progress import report

        val = (logs or {}).get("val_accuracy")
        report("train", "epoch" + (f" (validation {val:.3f})" if val is not None else ""),
               done=epoch + 1, total=self.epochs)


def _evaluate(model: keras.Model, prepared: PreparedData) -> tuple[float, float, np.ndarray]:
    spec = prepared.spec
    test_acc, cm = accuracy_and_confusion(model, prepared.x_test, prepared.y_test, spec)
    val_acc, _ = accuracy_and_confusion(model, prepared.x_val, prepared.y_val, spec)
    return test_acc, val_acc, cm


def train_teacher(prepared: PreparedData, params: TrainParams) -> tuple[keras.Model, ModelReport]:
    """The larger network, trained on hard labels for `distill.teacher_epochs`."""
    seed_everything(params.seed + 1000)
    spec = prepared.spec
    shape = (spec.height, spec.width, spec.channels)
    teacher = build_teacher(shape, len(spec.labels), params.distill.teacher_alpha, params.bn_momentum)
    start = time.perf_counter()
    _fit(logits_model(teacher), prepared, params, params.distill.teacher_epochs, params.seed + 1000)
    seconds = time.perf_counter() - start
    test_acc, val_acc, _ = _evaluate(teacher, prepared)
    cost = count_cost(teacher)
    report = ModelReport("teacher", test_acc, val_acc, cost.params, cost.macs, seconds, params.distill.teacher_epochs)
    return teacher, report


def train(prepared: PreparedData, params: TrainParams, teacher: keras.Model | None = None) -> TrainResult:
    """Train the student (alpha from params, rho = the prepared image size); distil when enabled.

    A trained `teacher` may be passed in (e.g. shared across a sweep); otherwise one is trained.
    """
    if len(prepared.x_train) == 0:
        raise TrainingError("the train split is empty")
    spec = prepared.spec
    shape = (spec.height, spec.width, spec.channels)
    teacher_report: ModelReport | None = None
    if params.distill.enabled and teacher is None:
        teacher, teacher_report = train_teacher(prepared, params)
    elif params.distill.enabled and teacher is not None:
        if tuple(teacher.input_shape[1:]) != shape:
            raise TrainingError(f"teacher input {teacher.input_shape[1:]} does not match the data {shape}")
        t_acc, t_val, _ = _evaluate(teacher, prepared)
        cost = count_cost(teacher)
        teacher_report = ModelReport("teacher", t_acc, t_val, cost.params, cost.macs, 0.0, 0)

    seed_everything(params.seed)
    model = build_mobilenet(shape, len(spec.labels), params.alpha, params.bn_momentum)
    trainee: keras.Model = logits_model(model)
    if params.distill.enabled:
        trainee = Distiller(trainee, logits_model(teacher), params.distill.temperature, params.distill.soft_weight)
    start = time.perf_counter()
    history = _fit(trainee, prepared, params, params.epochs, params.seed)
    seconds = time.perf_counter() - start
    test_acc, val_acc, cm = _evaluate(model, prepared)
    train_acc, _ = accuracy_and_confusion(model, prepared.x_train, prepared.y_train, spec)
    cost = count_cost(model)
    return TrainResult(
        model=model,
        history=history,
        test_accuracy=test_acc,
        val_accuracy=val_acc,
        params_count=cost.params,
        macs=cost.macs,
        train_seconds=seconds,
        confusion=cm,
        labels=spec.labels,
        distilled=params.distill.enabled,
        teacher=teacher_report,
        teacher_model=teacher if params.distill.enabled else None,
        train_accuracy=train_acc,
    )

"""Training: architectures and their cost, distillation loss, inference-mode evaluation, seeds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from components.architectures import build_mobilenet, build_teacher, count_cost, logits_model
from components.distillation import distillation_loss
from components.keras import keras, tf
from components.prepare import prepare
from components.training import train
from edgeops.params import DistillParams, PrepareParams, TrainParams

TINY = TrainParams(epochs=2, batch_size=16, alpha=0.25, distill=DistillParams(enabled=False))


@pytest.fixture(scope="module")
def tiny_prepared(tmp_path_factory: pytest.TempPathFactory):
    from tests.components.conftest import write_folder

    base = tmp_path_factory.mktemp("train")
    root = write_folder(base / "data", {"h": 20, "v": 20, "d": 20})
    # written to disk and memory-mapped, as `stage prepare` leaves it: training reads the rows
    # through the tf.data pipeline, never a whole split
    return prepare(root, PrepareParams(image_size=12, min_per_class=5), out=base / "prepared")


@pytest.fixture(scope="module")
def tiny_result(tiny_prepared):
    return train(tiny_prepared, TINY)


def test_cost_counts_known_layers() -> None:
    inputs = keras.Input((8, 8, 2))
    x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False)(inputs)
    x = keras.layers.Conv2D(4, 1, use_bias=False)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(3)(x)
    cost = count_cost(keras.Model(inputs, out))
    assert cost.macs == 8 * 8 * 9 * 2 + 8 * 8 * 2 * 4 + 4 * 3
    assert cost.params == 9 * 2 + 2 * 4 + 4 * 3 + 3


def test_alpha_and_rho_scale_the_family() -> None:
    small = count_cost(build_mobilenet((32, 32, 1), 10, alpha=0.5))
    base = count_cost(build_mobilenet((32, 32, 1), 10, alpha=1.0))
    low_res = count_cost(build_mobilenet((16, 16, 1), 10, alpha=1.0))
    teacher = count_cost(build_teacher((32, 32, 1), 10))
    assert small.params < base.params < teacher.params
    assert low_res.params == base.params and low_res.macs < base.macs / 3
    model = build_mobilenet((32, 32, 1), 10)
    assert model.output_shape == (None, 10)
    assert logits_model(model).output_shape == (None, 10)
    assert not any("random" in layer.name.lower() for layer in model.layers)


def test_distillation_loss_known_values() -> None:
    y = tf.constant([0, 1])
    logits = tf.constant([[2.0, 0.0], [0.0, 2.0]])
    total, soft, hard = distillation_loss(y, logits, logits, temperature=3.0, soft_weight=0.5)
    assert float(soft) == pytest.approx(0.0, abs=1e-6)
    assert float(hard) == pytest.approx(np.log(1 + np.exp(-2.0)), rel=1e-5)
    assert float(total) == pytest.approx(0.5 * float(hard), rel=1e-5)
    _, soft2, _ = distillation_loss(y, logits, -logits, temperature=1.0, soft_weight=1.0)
    assert float(soft2) > 1.0


def test_train_returns_inference_mode_evidence(tiny_prepared, tiny_result) -> None:
    r = tiny_result
    assert set(r.history) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert len(r.history["loss"]) == 2
    assert r.confusion.shape == (3, 3) and r.confusion.sum() == len(tiny_prepared.y_test)
    expected = np.argmax(r.model(_norm(tiny_prepared), training=False), 1)
    assert r.test_accuracy == pytest.approx(float(np.mean(expected == tiny_prepared.y_test)))
    assert r.params_count == r.model.count_params() and r.macs > 0
    assert r.model.output_shape == (None, 3) and r.teacher is None
    assert 0.0 <= r.train_accuracy <= 1.0
    assert r.metrics()["batchnorm_gap"] == pytest.approx(r.history["accuracy"][-1] - r.train_accuracy)


def _norm(p) -> np.ndarray:
    from device.preprocessing import normalize

    return normalize(p.x_test, p.spec)


def test_seeded_runs_repeat_exactly(tiny_prepared, tiny_result) -> None:
    again = train(tiny_prepared, TINY)
    assert again.history == tiny_result.history
    for wa, wb in zip(tiny_result.model.get_weights(), again.model.get_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)


def test_distilled_student_with_teacher(tiny_prepared) -> None:
    params = TINY.model_copy(
        update={"epochs": 1, "distill": DistillParams(enabled=True, teacher_epochs=1, teacher_alpha=0.5)}
    )
    r = train(tiny_prepared, params)
    assert r.distilled and r.teacher is not None and r.teacher_model is not None
    assert r.teacher.params_count > r.params_count
    assert {"soft_loss", "hard_loss", "val_accuracy"} <= set(r.history)
    assert "teacher_test_accuracy" in r.metrics()


@pytest.mark.slow
def test_student_reaches_97_percent_on_digits(tmp_path: Path) -> None:
    from components.data import write_example_digits

    write_example_digits(tmp_path / "digits")
    prepared = prepare(tmp_path / "digits", PrepareParams())
    r = train(prepared, TrainParams(distill=DistillParams(enabled=False)))  # the student alone
    assert r.test_accuracy >= 0.97, r.history["val_accuracy"]
    assert abs(r.batchnorm_gap) < 0.02  # moving statistics caught up with the weights
    assert r.val_accuracy >= 0.97


def test_a_teacher_for_another_input_size_is_refused(tiny_prepared) -> None:
    from edgeops.errors import TrainingError

    params = TINY.model_copy(update={"distill": DistillParams(enabled=True)})
    with pytest.raises(TrainingError, match="does not match the data"):
        train(tiny_prepared, params, teacher=build_teacher((8, 8, 1), 3))

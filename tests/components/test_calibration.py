"""Temperature scaling on known, miscalibrated probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from components.calibration import apply_temperature, expected_calibration_error, fit_temperature
from edgeops.errors import DataError


def _overconfident(n: int, rng: np.random.Generator, sharpen: float = 3.0):
    """Labels drawn from softmax(logits); the 'model' reports softmax(sharpen * logits)."""
    logits = rng.normal(0, 1.5, size=(n, 10))
    true_p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = np.array([rng.choice(10, p=p) for p in true_p])
    reported = np.exp(sharpen * logits)
    return reported / reported.sum(1, keepdims=True), y


def test_temperature_recovers_the_sharpening_and_lowers_ece_on_validation() -> None:
    rng = np.random.default_rng(0)
    val_p, val_y = _overconfident(2000, rng)
    cal = fit_temperature(val_p, val_y)
    assert cal.temperature == pytest.approx(3.0, rel=0.15)
    assert cal.ece_after < cal.ece_before / 2 and cal.nll_after < cal.nll_before
    other_p, other_y = _overconfident(2000, rng)  # and it carries over to unseen rows
    fixed = apply_temperature(other_p, cal.temperature)
    assert expected_calibration_error(fixed, other_y) < expected_calibration_error(other_p, other_y)
    assert (fixed.argmax(1) == other_p.argmax(1)).all()  # predictions never change


def test_bad_input_is_one_readable_error() -> None:
    with pytest.raises(DataError, match="labels for"):
        fit_temperature(np.full((3, 2), 0.5), np.array([0, 1]))
    with pytest.raises(DataError, match="temperature must be positive"):
        apply_temperature(np.full((3, 2), 0.5), 0.0)

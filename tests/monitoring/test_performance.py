"""CBPE on a real model: calibrated confidence tracks accuracy, harm needs a real drop."""

from __future__ import annotations

import numpy as np
import pytest

from components.calibration import expected_calibration_error, fit_temperature
from device.preprocessing import normalize
from device.runtime import TFLiteRunner
from device.scenarios import add_noise, adjust, rotate
from monitoring.performance import AccuracyEstimate, cbpe, harm, measured_accuracy


@pytest.fixture(scope="module")
def split(digits16, tiny_model):
    x, y = digits16
    order = np.random.default_rng(1).permutation(len(x))
    runner = TFLiteRunner(tiny_model.tflite)
    val, field = order[:600], order[600:]
    probs = runner.predict(normalize(x[val], tiny_model.spec))
    return runner, fit_temperature(probs, y[val]), probs, y[val], x[field], y[field]


def test_calibration_improves_ece_on_validation(split) -> None:
    _, cal, probs, y, _, _ = split
    assert cal.ece_after < cal.ece_before
    assert expected_calibration_error(probs, y) == pytest.approx(cal.ece_before)


def test_estimate_tracks_true_accuracy_across_scenarios(split, tiny_model) -> None:
    runner, cal, val_probs, _, x, y = split
    rng = np.random.default_rng(0)
    reference = cbpe(val_probs, cal.temperature)
    seen = {}
    for name, shift in {
        "none": lambda a: a,
        "noise": lambda a: add_noise(a, 0.03, rng),
        "dark": lambda a: adjust(a, 0.3),
        "rotation": lambda a: rotate(a, 35),
    }.items():
        p = runner.predict(normalize(shift(x), tiny_model.spec))
        est, true = cbpe(p, cal.temperature), float((p.argmax(1) == y).mean())
        seen[name] = (est.accuracy, true, harm(reference, est, 0.005).harmful)
    assert abs(seen["none"][0] - seen["none"][1]) < 0.03, seen
    assert abs(seen["noise"][0] - seen["noise"][1]) < 0.03, seen
    assert not seen["none"][2] and not seen["noise"][2], seen  # harmless: no retrain
    for name in ("dark", "rotation"):  # real drops: the estimate falls with the truth, harm fires
        assert seen[name][1] < seen["none"][1] - 0.03 and seen[name][0] < seen["none"][0] - 0.01, seen
        assert seen[name][2], seen


def test_cluster_robust_interval_is_wider_for_clumped_devices() -> None:
    rng = np.random.default_rng(0)
    per_device = rng.uniform(0.6, 1.0, 10)  # each device its own conditions
    conf = np.repeat(per_device, 50) + rng.normal(0, 0.01, 500)
    probs = np.c_[conf, 1 - conf]
    groups = np.repeat(np.arange(10), 50)
    assert cbpe(probs, groups=groups).se > 3 * cbpe(probs).se


def test_harm_needs_the_lower_bound_past_the_margin() -> None:
    ref = AccuracyEstimate(0.95, 0.005, 300, "cbpe")
    assert not harm(ref, AccuracyEstimate(0.945, 0.005, 1000, "cbpe"), 0.005).harmful
    v = harm(ref, AccuracyEstimate(0.92, 0.005, 1000, "cbpe"), 0.005)
    assert v.harmful and "drop +3.0 pts" in v.reason
    m = measured_accuracy(np.ones(50), np.ones(50))
    assert m.accuracy == 1.0 and m.se > 0  # 50 of 50 is not an exact 100%

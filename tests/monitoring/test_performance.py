"""CBPE on a real model: calibrated confidence tracks accuracy, harm needs a real drop."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from components.calibration import expected_calibration_error, fit_temperature
from device.preprocessing import normalize
from device.runtime import TFLiteRunner
from device.scenarios import add_noise, adjust, rotate
from edgeops.errors import MonitoringError
from edgeops.params import MonitorParams
from monitoring.performance import (
    AccuracyEstimate,
    cbpe,
    estimate_harm,
    harm,
    measured_accuracy,
    ppi_accuracy,
)


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


def _window(rng, n, conf, acc, label_rate=0.1, devices=10):
    """Synthetic two-class window: every row predicts class 0 with confidence `conf`, and the
    truth is class 0 with probability `acc` (conf == acc: calibrated; conf > acc: confidently
    wrong). Labels on a random `label_rate` of rows, NaN elsewhere."""
    c = np.clip(rng.normal(conf, 0.03, n), 0.51, 0.999)
    probs = np.c_[c, 1 - c]
    truth = (rng.random(n) >= acc).astype(float)
    labels = np.where(rng.random(n) < label_rate, truth, np.nan)
    return probs, labels, float((truth == 0).mean()), np.arange(n) % devices


def test_ppi_corrects_confidently_wrong_windows_and_covers_the_truth() -> None:
    rng = np.random.default_rng(0)
    errors, covered = [], 0
    for _ in range(200):
        probs, labels, true, g = _window(rng, 1000, conf=0.95, acc=0.70)
        est = ppi_accuracy(probs, labels, groups=g)
        low, high = est.interval()
        covered += low <= true <= high
        errors.append(est.accuracy - true)
        assert est.method == "ppi"
    assert abs(np.mean(errors)) < 0.01  # unbiased; CBPE would read 0.95
    assert cbpe(probs).accuracy > 0.9
    assert covered / 200 >= 0.9


def test_ppi_beats_labels_alone_when_calibrated_and_is_cbpe_without_labels() -> None:
    rng = np.random.default_rng(1)
    probs, labels, _, g = _window(rng, 1000, conf=0.9, acc=0.9)
    est = ppi_accuracy(probs, labels, groups=g)
    lab = np.isfinite(labels)
    only_labels = measured_accuracy(np.zeros(lab.sum()), labels[lab])
    assert est.se < only_labels.se
    few = np.where(np.arange(1000) < 5, labels, np.nan)
    assert ppi_accuracy(probs, few, min_labels=20) == cbpe(probs)
    with pytest.raises(MonitoringError):
        ppi_accuracy(probs, labels[:10])


def _frame(rng, n, conf, acc, label_rate=0.1) -> pd.DataFrame:
    probs, labels, _, groups = _window(rng, n, conf, acc, label_rate)
    return pd.DataFrame({
        "probs": list(probs),
        "top1": probs.argmax(1),
        "label": pd.array(labels, dtype="Float64").astype("Int32"),
        "device_id": [f"d{i}" for i in groups],
    })


def test_estimate_harm_sees_what_labels_show_and_stays_quiet_under_the_null() -> None:
    rng = np.random.default_rng(2)
    params = MonitorParams()
    ref = _frame(rng, 2000, 0.95, 0.95, label_rate=1.0)
    alarms = 0
    for _ in range(40):
        cur = _frame(rng, 1000, 0.95, 0.95)
        alarms += estimate_harm(ref, cur, params, 1.0)[3].harmful
    assert alarms <= 4
    wrong = _frame(rng, 1000, 0.95, 0.75)
    est, ref_est, lab, verdict = estimate_harm(ref, wrong, params, 1.0)
    assert verdict.harmful and est.method == "ppi" and lab is not None
    assert abs(est.accuracy - 0.75) < 0.06 and ref_est.accuracy > 0.9
    assert "label-corrected" in verdict.reason
    no_labels = wrong.assign(label=pd.array([pd.NA] * len(wrong), dtype="Int32"))
    est, _, lab, verdict = estimate_harm(ref, no_labels, params, 1.0)
    assert est.method == "cbpe" and lab is None and not verdict.harmful  # CBPE alone cannot see it


def test_few_labels_correct_the_reported_estimate_but_do_not_vote() -> None:
    """A window with fewer labels than harm_min_labels: the estimate it reports is label-corrected
    (CBPE alone reads a confidently wrong camera as fine), the verdict stays CBPE's, and the reason
    says how many labels corrected it. Under 5 labels the estimate is CBPE's."""
    rng = np.random.default_rng(4)
    params = MonitorParams()
    ref = _frame(rng, 2000, 0.95, 0.95, label_rate=1.0)
    errors: dict[str, list[float]] = {"ppi": []}
    for _ in range(30):
        wrong = _frame(rng, 240, 0.95, 0.60, label_rate=0.05)  # ~12 labels
        n_lab = int(wrong["label"].notna().sum())
        if not 5 <= n_lab < params.harm_min_labels:
            continue
        est, _, lab, verdict = estimate_harm(ref, wrong, params, 1.0)
        assert lab is None  # no measured accuracy, no label vote
        assert est.method == "ppi" and f"from {n_lab} labels" in verdict.reason
        low, high = est.interval()
        assert high - low > 0.1  # the scarcity shows in the interval
        errors[est.method].append(est.accuracy - 0.60)
    assert len(errors["ppi"]) >= 15 and abs(np.mean(errors["ppi"])) < 0.06  # CBPE alone: ~+0.35
    few = _frame(rng, 240, 0.95, 0.60, label_rate=0.0)
    few.loc[few.index[:3], "label"] = 0
    est, _, _, verdict = estimate_harm(ref, few, params, 1.0)
    assert est.method == "cbpe" and "label-corrected" not in verdict.reason

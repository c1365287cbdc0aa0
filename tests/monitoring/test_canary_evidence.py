"""A canary that is worse is seen from calibrated confidence; no promotion without evidence."""

from __future__ import annotations

import numpy as np
import pandas as pd

from monitoring.canary_evidence import apply_evidence, compare_arms
from registry.controller import Decision


def _arm(n: int, accuracy: float, rng: np.random.Generator, devices: int = 5) -> pd.DataFrame:
    """Calibrated rows: each row right with probability = its confidence, mean = accuracy."""
    conf = np.clip(rng.normal(accuracy, 0.05, n), 0.11, 0.999)
    probs = np.full((n, 10), 0.0)
    probs[:, 0] = conf
    probs[:, 1:] = ((1 - conf) / 9)[:, None]
    return pd.DataFrame({"probs": list(probs), "top1": 0, "label": pd.array([pd.NA] * n, dtype="Int32"),
                         "device_id": [f"d{i % devices}" for i in range(n)]})


def test_a_worse_canary_fails_an_equal_one_passes_a_small_one_waits() -> None:
    rng = np.random.default_rng(0)
    stable = _arm(3000, 0.95, rng)
    worse = compare_arms(_arm(400, 0.85, rng), stable)
    assert worse.verdict == "fail" and worse.high < -0.01, worse
    same = compare_arms(_arm(3000, 0.95, rng), stable)
    assert same.verdict == "pass", same
    few = compare_arms(_arm(60, 0.95, rng), stable)  # a 1% step: too few rows to promise anything
    assert few.verdict == "not enough evidence" and few.low < -0.01 < few.high, few
    assert compare_arms(_arm(10, 0.5, rng), stable).verdict == "not enough evidence"


def test_labels_decide_when_both_arms_have_enough() -> None:
    rng = np.random.default_rng(1)
    canary, stable = _arm(400, 0.95, rng), _arm(400, 0.95, rng)
    canary["label"] = pd.array(np.where(np.arange(400) < 200, 3, pd.NA), dtype="Int32")  # all wrong
    stable["label"] = pd.array(np.where(np.arange(400) < 200, 0, pd.NA), dtype="Int32")  # all right
    ev = compare_arms(canary, stable)
    assert ev.verdict == "fail" and ev.canary.method == "labels" and "measured" in ev.reason


def test_the_controller_decision_follows_the_evidence() -> None:
    rng = np.random.default_rng(2)
    stable = _arm(3000, 0.95, rng)
    advance = Decision("advance", ("gate passed",))
    assert apply_evidence(advance, compare_arms(_arm(60, 0.95, rng), stable)).action == "hold"
    assert apply_evidence(advance, compare_arms(_arm(3000, 0.95, rng), stable)).action == "advance"
    back = apply_evidence(Decision("hold", ("dwell",)), compare_arms(_arm(400, 0.8, rng), stable))
    assert back.action == "rollback" and "estimated accuracy" in back.reasons[0]

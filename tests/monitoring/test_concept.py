"""Concept drift: Evidently accuracy/F1 against known values, and the scipy P(y|top1) test."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import chi2_contingency

from edgeops.params import MonitorParams
from monitoring.concept import concept_drift, conditional_label_test

P = MonitorParams(min_labels=50)


def _feedback(
    n: int, rng: np.random.Generator, acc: float = 0.9, relabel: dict[int, int] | None = None
) -> pd.DataFrame:
    y = rng.integers(0, 10, n)
    top1 = np.where(rng.random(n) < acc, y, rng.integers(0, 10, n))
    if relabel:  # the world changed: what the model calls k is now labelled relabel[k]
        y = np.array(
            [relabel.get(int(t), int(v)) if t == v else v for t, v in zip(top1, y, strict=True)]
        )
    return pd.DataFrame({"top1": top1, "label": pd.array(y, dtype="Int32")})


def test_conditional_test_matches_scipy_on_one_stratum() -> None:
    ref_top1, cur_top1 = np.zeros(60, int), np.zeros(40, int)
    ref_y = np.array([0] * 50 + [1] * 10)
    cur_y = np.array([0] * 20 + [1] * 20)
    p, stat, dof = conditional_label_test(ref_top1, ref_y, cur_top1, cur_y)
    s, pv, d, _ = chi2_contingency([[50, 10], [20, 20]], correction=False)
    assert (stat, p, dof) == (pytest.approx(s), pytest.approx(pv), d)


def test_concept_drift_known_accuracy_and_verdicts(tmp_path) -> None:
    rng = np.random.default_rng(0)
    ref = pd.DataFrame(
        {"top1": [0, 1, 1, 2] * 25, "label": pd.array([0, 1, 2, 2] * 25, dtype="Int32")}
    )
    res = concept_drift(ref, ref, P, html_path=tmp_path / "c.html")
    assert res is not None and not res.drifted
    assert res.metrics["accuracy_reference"] == pytest.approx(0.75)
    assert res.metrics["accuracy_current"] == pytest.approx(0.75)
    assert res.metrics["p_conditional"] == pytest.approx(1.0)
    assert res.report_html is not None and res.report_html.exists()
    base = _feedback(2000, rng)
    assert not concept_drift(base, _feedback(600, rng), P).drifted
    moved = concept_drift(base, _feedback(600, rng, relabel={1: 2, 3: 4}), P)
    assert moved.drifted and moved.metrics["accuracy_drop"] > 0.1
    assert any("P(y|top1) moved" in r for r in moved.reasons)
    assert concept_drift(base, _feedback(20, rng), P) is None  # too few labels


def test_near_empty_cells_do_not_inflate_alarms_under_a_true_null() -> None:
    rng = np.random.default_rng(3)
    alarms = 0
    for _ in range(300):  # an accurate model (99%), small labelled windows: sparse strata
        ref, cur = _feedback(400, rng, acc=0.99), _feedback(60, rng, acc=0.99)
        p, _, _ = conditional_label_test(
            ref["top1"].to_numpy(), ref["label"].to_numpy(np.int64),
            cur["top1"].to_numpy(), cur["label"].to_numpy(np.int64),
        )
        alarms += p < 0.05
    assert alarms / 300 <= 0.07  # nominal 5%

"""Intervals and the paired non-inferiority test on constructed outcomes with known answers."""

from __future__ import annotations

from math import comb

import numpy as np
import pytest

from components.evidence import accuracy, non_inferiority, paired_test, wilson


def test_wilson_matches_the_published_interval() -> None:
    low, high = wilson(8, 10)
    assert (low, high) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert wilson(0, 0) == (0.0, 1.0)
    est = accuracy([True] * 90 + [False] * 10)
    assert est.value == pytest.approx(0.9) and est.low < 0.9 < est.high and est.n == 100
    assert "95% CI" in str(est)


def test_margin_zero_is_the_exact_one_sided_mcnemar_test() -> None:
    v = paired_test(wins=8, losses=2, n=100, margin=0.0)
    assert v.p_value == pytest.approx(56 / 1024)  # P(Bin(10, 1/2) >= 8)
    assert v.outcome == "not enough evidence" and v.difference == pytest.approx(0.06)
    assert paired_test(wins=9, losses=0, n=100, margin=0.0).p_value == pytest.approx(1 / 512)


def test_margin_combines_the_conditional_test_and_the_loss_bound() -> None:
    v = paired_test(wins=1, losses=3, n=100, margin=0.02)
    p_cond = 1 - 0.75**4  # theta0 = 1/2 - 100 * 0.02 / (2 * 4) = 0.25
    p_loss = sum(comb(100, k) * 0.02**k * 0.98 ** (100 - k) for k in range(4))
    assert v.p_value == pytest.approx(min(1.0, 2 * min(p_cond, p_loss)))
    assert v.outcome == "not enough evidence"


def test_identical_predictions_pass_on_a_large_split_only() -> None:
    same = np.r_[np.ones(380, bool), np.zeros(20, bool)]
    big = non_inferiority(same, same, margin=0.02)
    assert big.outcome == "pass" and big.p_value == pytest.approx(2 * 0.98**400)
    tiny = non_inferiority(same[:10], same[:10], margin=0.02)
    assert tiny.outcome == "not enough evidence" and tiny.p_value == 1.0
    assert "too few" in tiny.reason


def test_a_clear_regression_fails_and_a_clear_win_passes() -> None:
    ref = np.ones(100, bool)
    worse = ref.copy()
    worse[:10] = False
    v = non_inferiority(worse, ref, margin=0.02)
    assert v.outcome == "fail" and v.losses == 10 and v.difference == pytest.approx(-0.1)
    better = non_inferiority(ref, worse, margin=0.01)
    assert better.passed and better.wins == 10 and better.low > -0.01
    with pytest.raises(ValueError, match="shape"):
        non_inferiority(ref, ref[:5], margin=0.01)

"""Drift jobs: known values against scipy, no-drift vs drift on synthetic and real digits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ks_2samp

from device.features import summary_features
from device.scenarios import adjust, rotate
from edgeops.errors import MonitoringError
from edgeops.params import MonitorParams
from monitoring.drift import data_drift, embedding_drift, label_drift, prediction_drift
from tests.monitoring.conftest import FEATURES, synthetic_frame

P = MonitorParams()


def test_data_drift_p_values_are_ks_and_threshold_is_bonferroni(tmp_path) -> None:
    rng = np.random.default_rng(1)
    ref, cur = synthetic_frame(800, rng), synthetic_frame(500, rng, shift={"f_brightness": 0.4})
    res = data_drift(ref, cur, P, html_path=tmp_path / "r.html")
    assert res.threshold == pytest.approx(0.05 / len(FEATURES))
    for col in ("f_brightness", "f_contrast", FEATURES[-1]):
        assert res.per_feature[col] == pytest.approx(
            ks_2samp(ref[col], cur[col]).pvalue, rel=1e-6, abs=1e-12
        )
    assert res.drifted and res.drifted_features == ("f_brightness",)
    assert res.drift_share == pytest.approx(1 / len(FEATURES))
    assert (res.n_reference, res.n_current) == (800, 500)
    assert res.metrics["data_drifted"] == 1.0 and res.metrics["p_f_brightness"] < 1e-6
    assert res.report_html is not None and "<html" in res.report_html.read_text()[:2000].lower()
    fast = data_drift(ref, cur, P)  # no HTML: Evidently's stattests without the report
    assert fast.report_html is None
    assert fast.per_feature == pytest.approx(res.per_feature, rel=1e-9)


def test_data_drift_without_shift_is_quiet_and_share_rule_differs() -> None:
    rng = np.random.default_rng(2)
    ref, cur = synthetic_frame(800, rng), synthetic_frame(500, rng)
    assert not data_drift(ref, cur, P).drifted
    shifted = synthetic_frame(500, rng, shift={"f_brightness": 0.4})
    share_rule = MonitorParams(family_wise=False, drift_share=0.5)
    assert not data_drift(ref, shifted, share_rule).drifted  # 1 of 33 features < 50%


def test_data_drift_refuses_bad_input() -> None:
    rng = np.random.default_rng(3)
    ref = synthetic_frame(50, rng)
    with pytest.raises(MonitoringError, match="missing"):
        data_drift(ref, ref.drop(columns=["f_p50"]), P)
    with pytest.raises(MonitoringError, match="p-values"):
        data_drift(ref, ref, MonitorParams(stattest="wasserstein"))


def test_prediction_label_and_embedding_drift_follow_the_class_prior(tmp_path) -> None:
    rng = np.random.default_rng(4)
    ref, same = synthetic_frame(1000, rng), synthetic_frame(600, rng)
    skew = np.array([0.4] + [0.6 / 9] * 9)
    moved = synthetic_frame(600, rng, class_p=skew)
    assert not prediction_drift(ref, same, P).drifted
    pred = prediction_drift(ref, moved, P)
    assert pred.drifted and "top1" in pred.drifted_features
    with_report = prediction_drift(ref, moved, P, html_path=tmp_path / "p.html")
    assert with_report.per_feature == pytest.approx(pred.per_feature) and with_report.report_html.exists()
    assert not label_drift(ref, same, P).drifted
    assert label_drift(ref, moved, P).drifted
    assert label_drift(ref, moved.head(10), P) is None  # too few labels: no verdict
    assert not embedding_drift(ref, same, P).drifted
    assert embedding_drift(ref, moved, P).drifted


def _frame(feats: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(feats, columns=FEATURES)


def test_real_digits_quiet_without_drift_and_caught_when_darker_or_rotated(
    digits16, digits_features
) -> None:
    x, _ = digits16
    idx = np.random.default_rng(5).permutation(len(x))
    ref_i, cur_i = idx[:1000], idx[1000:1600]
    ref = _frame(digits_features[ref_i])
    assert not data_drift(ref, _frame(digits_features[cur_i]), P).drifted
    darker = data_drift(ref, _frame(summary_features(adjust(x[cur_i], brightness=0.8))), P)
    assert darker.drifted and "f_brightness" in darker.drifted_features
    assert data_drift(ref, _frame(summary_features(rotate(x[cur_i], 15.0))), P).drifted


def test_device_clustered_null_is_not_drift_but_a_fleet_shift_is() -> None:
    from tests.monitoring.conftest import synthetic_frame

    rng = np.random.default_rng(5)
    p = MonitorParams()
    alarms_pooled = alarms_clustered = caught = 0
    for _ in range(20):
        ref = synthetic_frame(3000, rng)
        cur = synthetic_frame(1000, rng)
        devices = np.repeat(np.arange(10), 100)
        offsets = rng.normal(0, 0.5, (10, 1))  # each device its own light, centred on the fleet's
        cols = [c for c in cur.columns if c.startswith("f_")]
        cur[cols] = cur[cols].to_numpy() + offsets[devices]
        alarms_pooled += data_drift(ref, cur, p).drifted
        alarms_clustered += data_drift(ref, cur, p, groups=devices).drifted
        shifted = cur.copy()
        shifted[cols[0]] += 1.0  # the whole fleet moved
        caught += data_drift(ref, shifted, p, groups=devices).drifted
    assert alarms_pooled >= 15  # rows treated as independent: the clumps look like drift
    assert alarms_clustered <= 2 and caught >= 18

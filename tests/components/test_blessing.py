"""Blessing is a value with reasons: accuracy vs parent and stable, dtype rules, every budget."""

from __future__ import annotations

import pytest
from fixtures_models import digits, digits_model  # noqa: F401

from components.blessing import bless
from components.conversion import convert_and_verify
from components.profiles import DeviceProfile
from edgeops.params import ConvertParams, EvaluateParams

EVAL = EvaluateParams(max_accuracy_drop=0.02, max_regression_vs_stable=0.01)


def _profile(**kw) -> DeviceProfile:
    base = dict(
        name="p",
        targets=("tflite-int8", "tflite-f32"),
        max_model_bytes=10_000_000,
        arena_bytes=10_000_000,
        latency_budget_ms=100.0,
        throughput_macs_per_s=1e9,
    )
    return DeviceProfile(**{**base, **kw})


@pytest.fixture(scope="module")
def variants(digits, digits_model, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("bless")
    params = ConvertParams(latency_runs=5, representative_samples=100)
    return {
        t: convert_and_verify(digits_model, t, digits, params, out / t)
        for t in ("tflite-f32", "tflite-int8")
    }


def test_first_release_without_baseline_is_blessed(variants) -> None:
    v = variants["tflite-int8"]
    b = bless(v, _profile(), v.float_accuracy, None, EVAL)
    assert b.blessed and b.reasons == () and b.metrics["baseline_accuracy"] is None
    assert b.metrics["estimated_latency_ms"] == pytest.approx(1000 * v.measurement.macs / 1e9)


def test_accuracy_gates(variants) -> None:
    v = variants["tflite-int8"]
    b = bless(v, _profile(), v.accuracy + 0.05, None, EVAL)
    assert not b.blessed and "below its float parent" in b.reasons[0]
    b = bless(v, _profile(), v.float_accuracy, v.accuracy + 0.02, EVAL)
    assert not b.blessed and "below the cohort's stable" in b.reasons[0]
    assert b.metrics["regression_vs_stable"] == pytest.approx(0.02)
    assert bless(v, _profile(), v.float_accuracy, v.accuracy + 0.005, EVAL).blessed


def test_budgets_and_int8_only(variants) -> None:
    f32 = variants["tflite-f32"]
    b = bless(
        f32, _profile(int8_only=True, targets=("tflite-int8",)), f32.float_accuracy, None, EVAL
    )
    assert not b.blessed
    assert any("does not run tflite-f32" in r for r in b.reasons)
    assert any("float tensors" in r for r in b.reasons)
    tight = _profile(max_model_bytes=100, arena_bytes=10, latency_budget_ms=1e-6)
    reasons = " | ".join(bless(f32, tight, f32.float_accuracy, None, EVAL).reasons)
    assert "bytes > budget 100" in reasons and "arena" in reasons and "estimated latency" in reasons


def test_paired_verdicts_pass_fail_and_not_enough_evidence(variants, digits) -> None:  # noqa: F811
    import dataclasses

    import numpy as np

    from components.blessing import Paired

    v = variants["tflite-f32"]
    y = np.asarray(digits.y_test)
    parent = np.asarray(v.float_predictions)
    b = bless(v, _profile(), v.float_accuracy, None, EVAL, Paired(y, parent))
    assert b.blessed and b.outcome == "pass" and b.metrics["vs_float"]["outcome"] == "pass"
    lo, hi = b.metrics["accuracy_ci"]
    assert lo < v.accuracy < hi and b.metrics["n_test"] == len(y)
    # ten test images cannot show non-inferiority within two points: not enough evidence
    tiny = dataclasses.replace(v, predictions=v.predictions[:10])
    small = bless(tiny, _profile(), v.float_accuracy, None, EVAL, Paired(y[:10], parent[:10]))
    assert not small.blessed and small.outcome == "not enough evidence"
    assert "not enough evidence" in small.reasons[0] and "float parent" in small.reasons[0]
    # a stable that is right on 30 more images: the candidate is worse by more than the margin
    stable = parent.copy()
    wrong = np.flatnonzero(parent != y)
    stable[wrong[:30]] = y[wrong[:30]]
    worse = bless(v, _profile(), v.float_accuracy, 0.0, EVAL, Paired(y, parent, stable))
    assert not worse.blessed and worse.outcome == "fail"
    assert worse.metrics["vs_stable"]["losses"] == min(30, len(wrong)) and "cohort's stable" in worse.reasons[0]


def test_checks_that_read_no_test_label_are_kept_apart_and_the_gate_split_is_reported(variants) -> None:
    import dataclasses

    from components.blessing import scored_on_test
    from flows.report import release_report

    f32 = variants["tflite-f32"]
    tight = _profile(max_model_bytes=100, arena_bytes=10, latency_budget_ms=1e-6)
    b = bless(f32, tight, f32.accuracy + 0.05, None, EVAL)  # over every budget, and 5 points down on test
    assert [r.split(":")[0] for r in b.non_test] == ["size budget", "arena budget", "latency budget"]
    assert "below its float parent" in b.reasons[0] and not any("float parent" in r for r in b.non_test)
    assert set(b.reasons) == {b.reasons[0], *(r.split(": ", 1)[1] for r in b.non_test)}
    # the test-scored checks alone: no budget enters them
    metrics: dict = {}
    reasons, undecided = scored_on_test(f32, f32.accuracy + 0.05, None, EVAL, None, metrics)
    assert reasons == [b.reasons[0]] and not undecided and "arena_bytes" not in metrics
    passing = bless(f32, _profile(), f32.float_accuracy, None, EVAL)
    assert passing.blessed and passing.non_test == () and passing.to_dict()["non_test"] == []
    # where the conversion gate decided: this fixture has no validation split, so test, and says so
    assert (b.metrics["gate_split"], b.metrics["gate_n"]) == ("test", f32.gate_n) and f32.gate_n > 0
    on_val = dataclasses.replace(f32, gate_split="validation", gate_n=50, gate_agreement=1.0)
    judged = bless(on_val, _profile(), f32.float_accuracy, None, EVAL)
    assert (judged.metrics["gate_split"], judged.metrics["gate_agreement"]) == ("validation", 1.0)
    report = release_report({"model_name": "m", "data_version": "d", "float": {"test_accuracy": 0.9, "params": 1},
                             "published": {}, "selection": {"per_profile": {}, "blessings": {
                                 "tflite-f32": {"p": judged.to_dict()}}}}, "manual")
    assert "| tflite-f32 | p | blessed (conversion gate on validation) | - |" in report

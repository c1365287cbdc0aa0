"""Measurement from the files: MACs and parameters checked against hand counts of the model."""

from __future__ import annotations

import pytest
from fixtures_models import digits, digits_model  # noqa: F401

from components.conversion import convert_and_verify
from components.measure import keras_costs, tflite_costs
from components.profiles import DeviceProfile
from edgeops.params import ConvertParams

PARAMS = ConvertParams(latency_runs=20, representative_samples=100)


def _hand_macs(width: int = 8) -> int:
    """fixtures_models.tiny_model at 8x8: conv3x3(1->w), dw3x3(w), conv1x1(w->2w), dense, dense."""
    hw = 8 * 8
    return hw * 9 * width + hw * 9 * width + hw * width * 2 * width + hw * 2 * width * 32 + 32 * 10


def test_macs_and_parameters_from_the_tflite_file(digits, digits_model, tmp_path) -> None:  # noqa: F811
    v = convert_and_verify(digits_model, "tflite-f32", digits, PARAMS, tmp_path)
    costs = tflite_costs(v.path.read_bytes())
    assert costs["macs"] == _hand_macs() == keras_costs(digits_model)["macs"]
    assert costs["parameters"] >= digits_model.count_params()  # + the reshape's shape constant
    assert costs["parameters"] - digits_model.count_params() <= 4
    assert costs["weight_bytes"] == pytest.approx(4 * digits_model.count_params(), abs=16)
    # the planner's arena: at least the largest layer's float32 input + output (8x8x8 -> 8x8x16)
    assert costs["arena_method"].startswith("LiteRT arena planner")
    assert 4 * 64 * (8 + 16) <= costs["arena_bytes"] <= 4 * 64 * 64


def test_int8_weights_are_a_quarter(digits, digits_model, tmp_path) -> None:  # noqa: F811
    f32 = convert_and_verify(digits_model, "tflite-f32", digits, PARAMS, tmp_path / "f")
    i8 = convert_and_verify(digits_model, "tflite-int8", digits, PARAMS, tmp_path / "i")
    wf, wi = f32.measurement.weight_bytes, i8.measurement.weight_bytes
    assert 3.5 <= wf / wi <= 4.0  # int32 biases keep it just under 4x
    assert i8.measurement.arena_bytes < f32.measurement.arena_bytes
    assert i8.measurement.macs == f32.measurement.macs


def test_latency_and_estimate(digits, digits_model, tmp_path) -> None:  # noqa: F811
    m = convert_and_verify(digits_model, "onnx", digits, PARAMS, tmp_path).measurement
    assert m.latency_runs == 20 and 0 < m.host_latency_ms <= m.host_latency_p90_ms
    assert m.macs == _hand_macs() and "Keras" in m.arena_method
    prof = DeviceProfile(
        targets=("onnx",),
        max_model_bytes=1,
        arena_bytes=1,
        latency_budget_ms=1,
        throughput_macs_per_s=1e6,
    )
    assert m.estimated_latency_ms(prof) == pytest.approx(_hand_macs() / 1e3)
    assert "no calibration" in m.latency_basis(prof)
    from components.profiles import LatencyCalibration

    cal = prof.model_copy(update={"latency_calibration": LatencyCalibration(host_to_device=7.5, source="assumed")})
    assert m.estimated_latency_ms(cal) == pytest.approx(7.5 * m.host_latency_ms)  # the host measurement, scaled
    assert m.latency_basis(cal).startswith("estimate: host") and "x 7.5" in m.latency_basis(cal)

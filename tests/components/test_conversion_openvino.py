"""OpenVINO IR target: converted from the SavedModel, verified in OpenVINO's CPU runtime.

Needs openvino==2026.4.1 in the environment (see docs/targets.md for the pin request).
"""

from __future__ import annotations

from fixtures_models import digits, digits_model  # noqa: F401

from components.conversion import convert_and_verify
from edgeops.params import ConvertParams


def test_openvino_target(digits, digits_model, tmp_path) -> None:  # noqa: F811
    v = convert_and_verify(digits_model, "openvino", digits, ConvertParams(latency_runs=5), tmp_path)
    assert (v.path / "model.xml").exists() and (v.path / "model.bin").exists()
    assert v.agreement >= 0.99 and v.max_abs_diff < 1e-4  # f32 precision hint: no silent bf16
    assert v.input_dtype == "float32" and "Convolution" in v.ops
    assert v.measurement.host_latency_ms > 0 and v.measurement.macs > 0

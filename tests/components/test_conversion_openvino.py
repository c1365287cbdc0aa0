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


def test_openvino_conversion_never_phones_home() -> None:
    """OpenVINO's converter sends telemetry on import unless CI=true; a release never does (a
    fresh process with the CI variables unset, every host name it looks up recorded)."""
    import os
    import subprocess
    import sys

    code = (
        "import socket\n"
        "asked = []\n"
        "real = socket.getaddrinfo\n"
        "socket.getaddrinfo = lambda host, *a, **k: asked.append(host) or real(host, *a, **k)\n"
        "from components.convert.openvino import _ov\n"
        "ov = _ov()\n"
        "import openvino.tools.ovc\n"
        "try:\n"
        "    import openvino_telemetry\n"
        "except ImportError:\n"
        "    print('telemetry blocked')\n"
        "print('looked up', asked)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "TF_BUILD", "JENKINS_URL")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "telemetry blocked" in out.stdout and "looked up []" in out.stdout, out.stdout

"""ONNX bundles on devices: ONNX Runtime behind the same verification, telemetry and fallback as
TFLite, and a readable refusal where the profile does not run ONNX."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from device.agent import AgentConfig, DeviceAgent
from device.capabilities import DeviceCaps
from device.runtime import ONNXRunner, RuntimeLoadError, TFLiteRunner, open_runner
from device.sampling import SamplingPolicy
from device.telemetry import read_batch

WINDOWS = DeviceCaps(name="windows-pc", targets=("onnx",), max_model_bytes=100_000_000)


@pytest.fixture(scope="module")
def onnx_model(tiny_models, tmp_path_factory) -> bytes:
    """The tiny float model as ONNX (tf2onnx from its own .tflite, opset 17)."""
    import tf2onnx

    d = tmp_path_factory.mktemp("onnx")
    (d / "m.tflite").write_bytes(tiny_models.f32)
    tf2onnx.convert.from_tflite(str(d / "m.tflite"), opset=17, output_path=str(d / "m.onnx"))
    return (d / "m.onnx").read_bytes()


def _agent(release, tmp_path: Path, caps: DeviceCaps, cohort: str = "c", device: str = "win-1"):
    cfg = AgentConfig(
        device_id=device,
        cohort=cohort,
        state_dir=tmp_path / device,
        trusted_root=release.root,
        caps=caps,
        policy=SamplingPolicy(sample_rate=1.0, buffer_size=64),
    )
    return DeviceAgent(cfg, release.store, clock=lambda: datetime(2026, 3, 1, 12, tzinfo=UTC))


def _frames(tiny_models, n: int = 60) -> tuple[np.ndarray, np.ndarray]:
    return np.round(tiny_models.x_test[:n] * 255).astype(np.uint8), tiny_models.y_test[:n]


def _telemetry(store, cohort: str) -> pa.Table:
    return pa.concat_tables([read_batch(store.get(k)) for k in store.list(f"telemetry/raw/{cohort}/")])


def test_onnx_runner_matches_litert(tiny_models, onnx_model):
    from device.preprocessing import normalize

    x = normalize(tiny_models.x_test[:70], tiny_models.spec)
    onnx_probs = open_runner("onnx", onnx_model).predict(x, batch_size=32)
    tflite_probs = TFLiteRunner(tiny_models.f32).predict(x)
    assert onnx_probs.shape == (70, 10) and onnx_probs.dtype == np.float32
    assert np.abs(onnx_probs - tflite_probs).max() < 1e-4
    runner = ONNXRunner(onnx_model)
    assert runner.input_shape == (16, 16, 1)
    assert runner.tensor_dtypes()["input"] == "float32"
    assert 0 < runner.arena_bytes() < 1_000_000  # measured by ONNX Runtime's profiler
    with pytest.raises(RuntimeLoadError, match="ONNX Runtime cannot load"):
        ONNXRunner(b"not an onnx model")
    with pytest.raises(RuntimeLoadError, match="no runtime for target savedmodel"):
        open_runner("savedmodel", onnx_model)


def test_onnx_bundle_installs_serves_and_reports(release, tiny_models, onnx_model, tmp_path):
    ref = release.publish(onnx_model, tiny_models.spec, "1", target="onnx")
    release.point("c", ref)
    agent = _agent(release, tmp_path, WINDOWS)
    assert agent.sync().action == "installed"
    assert isinstance(agent.model.runner, ONNXRunner) and agent.model.memory_bytes > len(onnx_model)
    assert "index.html" in agent.model.metadata.files  # the page the browser cohort runs it with
    x, y = _frames(tiny_models)
    pred = agent.infer(x, np.where(np.arange(len(y)) % 3 == 0, y, -1))
    assert (pred.top1 == y).mean() > 0.8 and pred.model_version == "1"
    agent.flush()
    t = _telemetry(release.store, "c")
    inf = t.filter(pc.equal(t.column("event"), "inference"))
    assert inf.num_rows == 60 and set(inf.column("target").to_pylist()) == {"onnx"}
    assert set(inf.column("bundle_id").to_pylist()) == {ref.bundle_id}
    assert min(inf.column("memory_bytes").to_pylist()) > len(onnx_model)


def test_tampered_onnx_refused_and_onnx_on_tflite_device_refused(
    release, tiny_models, onnx_model, tmp_path
):
    v1 = release.publish(onnx_model, tiny_models.spec, "1", target="onnx")
    release.point("c", v1)
    agent = _agent(release, tmp_path, WINDOWS)
    agent.sync()
    v2 = release.publish(onnx_model, tiny_models.spec, "2", target="onnx")
    [key] = [k for k in release.store.list(f"tuf/targets/bundles/{v2.bundle_id}/") if k.endswith(".model.onnx")]
    data = bytearray(release.store.get(key))
    data[len(data) // 2] ^= 0x01
    release.store.put(key, bytes(data))
    release.point("c", v2)
    res = agent.sync()
    assert res.action == "refused" and "model.onnx" in res.reason
    assert agent.model.bundle_id == v1.bundle_id  # the verified model keeps serving
    agent.infer(_frames(tiny_models, 5)[0])

    # an intact ONNX bundle on a TFLite-only device (a Pi): one readable line, nothing installed
    release.point("pi", v1)
    pi = _agent(release, tmp_path, DeviceCaps(name="raspberry-pi-4"), cohort="pi", device="pi-1")
    res = pi.sync()
    assert res.action == "refused" and pi.model is None
    assert res.reason.startswith(
        "cohort pi cannot run this bundle: profile raspberry-pi-4 runs tflite-f32, tflite-f16, "
        "tflite-dynamic, tflite-int8, not onnx"
    )
    assert "\n" not in res.reason
    assert pi.sync().reason == res.reason  # remembered: the same line, not fetched again
    pi.flush()
    t = _telemetry(release.store, "pi")
    refusals = t.filter(pc.equal(t.column("event"), "refusal"))
    assert refusals.column("error").to_pylist() == [res.reason]  # the same line in telemetry


def test_onnx_fallback_to_previous_model(release, tiny_models, onnx_model, tmp_path):
    v1 = release.publish(onnx_model, tiny_models.spec, "1", target="onnx")
    release.point("c", v1)
    agent = _agent(release, tmp_path, WINDOWS)
    agent.sync()
    v2 = release.publish(onnx_model, tiny_models.spec, "2", target="onnx")
    release.point("c", v2)
    assert agent.sync().action == "installed"
    assert agent.fall_back("crashes on the GPU driver")
    assert agent.model.bundle_id == v1.bundle_id and isinstance(agent.model.runner, ONNXRunner)
    assert agent.sync().action == "refused"  # the failed bundle does not come straight back

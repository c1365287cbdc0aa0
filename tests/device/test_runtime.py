"""TFLiteRunner on real float and full-int8 files converted from a tiny digits model."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "components"))
from fixtures_models import digits, digits_model  # noqa: E402,F401

from device.runtime import RuntimeLoadError, TFLiteRunner  # noqa: E402


@pytest.fixture(scope="module")
def files(digits, digits_model, tmp_path_factory) -> dict[str, Path]:  # noqa: F811
    from components.convert.tflite import to_tflite
    from device.preprocessing import normalize

    out = tmp_path_factory.mktemp("runtime")
    rep = normalize(digits.x_train[:100], digits.spec)
    return {
        t: to_tflite(digits_model, t, rep, out / f"{t}.tflite")
        for t in ("tflite-f32", "tflite-int8")
    }


def test_float_runner_matches_keras(files, digits, digits_model) -> None:  # noqa: F811
    from device.preprocessing import normalize

    x = normalize(digits.x_test[:70], digits.spec)
    runner = TFLiteRunner(files["tflite-f32"])
    probs = runner.predict(x, batch_size=32)  # 32 + 32 + 6: batch resizing both ways
    assert probs.shape == (70, 10) and probs.dtype == np.float32
    np.testing.assert_allclose(probs, digits_model.predict(x, verbose=0), atol=1e-4)
    assert runner.tensor_dtypes()["input"] == "float32"


def test_int8_runner_quantises_and_dequantises(files, digits, digits_model) -> None:  # noqa: F811
    from device.preprocessing import normalize

    x = normalize(digits.x_test, digits.spec)
    runner = TFLiteRunner(files["tflite-int8"].read_bytes(), num_threads=2)
    dtypes = runner.tensor_dtypes()
    assert dtypes["input"] == dtypes["output"] == "int8"
    assert "float32" not in dtypes["tensors"]
    probs = runner.predict(x)
    assert probs.dtype == np.float32
    assert abs(float(probs.sum(axis=1).mean()) - 1.0) < 0.05
    agree = (probs.argmax(1) == digits_model.predict(x, verbose=0).argmax(1)).mean()
    assert agree >= 0.97
    ops = {op["op"] for op in runner.ops()}
    assert "CONV_2D" in ops and "DELEGATE" not in ops


def test_single_sample_and_shape_errors(files, digits) -> None:  # noqa: F811
    from device.preprocessing import normalize

    runner = TFLiteRunner(files["tflite-f32"])
    one = normalize(digits.x_test[:1], digits.spec)[0]
    assert runner.predict(one).shape == (1, 10)
    with pytest.raises(RuntimeLoadError, match="input shape"):
        runner.predict(np.zeros((2, 9, 9, 1), np.float32))


def test_garbage_file_is_a_readable_error(tmp_path) -> None:
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a flatbuffer" * 10)
    with pytest.raises(RuntimeLoadError, match="LiteRT cannot load"):
        TFLiteRunner(bad)

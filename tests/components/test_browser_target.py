"""The browser target: the bundle page runs the ONNX variant with ONNX Runtime Web in Debian's
headless Chromium, with the bundle's preprocessing, and agrees with the float model."""

from __future__ import annotations

import numpy as np
import pytest
from fixtures_models import digits, digits_model  # noqa: F401

from components.web_target import BrowserError, browser_predict, find_chromium, ort_web_dir
from device.preprocessing import PreprocessingSpec, normalize


def _require_browser() -> None:
    """`make test` installs the browser; without it these tests fail rather than skip."""
    try:
        find_chromium()
    except BrowserError as exc:
        pytest.fail(f"{exc}: `make test` installs Debian's chromium (make browser)")
    ort_web_dir()  # a missing npm install is a failure, not a skip: `npm ci` in web/ works here


@pytest.mark.slow
def test_page_in_headless_chromium_matches_the_float_model(digits, digits_model, tmp_path):  # noqa: F811
    from components.convert.onnx import to_onnx

    _require_browser()
    model = to_onnx(digits_model, tmp_path / "m.onnx").read_bytes()
    images = np.round(digits.x_test[:12] * 255).astype(np.uint8)  # frames as a camera gives them
    run = browser_predict(model, digits.spec, images)
    keras_probs = digits_model.predict(normalize(images / 255.0, digits.spec), verbose=0)
    assert run.probs.shape == (12, 10)
    assert np.abs(run.probs - keras_probs).max() < 1e-4  # float parity, same preprocessing
    assert (run.probs.argmax(1) == keras_probs.argmax(1)).all()
    assert "HeadlessChrome" in run.user_agent and run.infer_ms > 0

    # a larger RGB frame: the page converts to luma and resizes exactly like device/preprocessing
    from device.preprocessing import preprocess

    rgb = np.random.default_rng(0).integers(0, 256, (2, 19, 13, 3), dtype=np.uint8)
    run = browser_predict(model, digits.spec, rgb)
    ref = digits_model.predict(preprocess(rgb, digits.spec), verbose=0)
    assert np.abs(run.probs - ref).max() < 1e-4


def test_page_errors_and_missing_browser_are_one_readable_line(monkeypatch, tmp_path):
    _require_browser()
    spec = PreprocessingSpec(8, 8, 1, (0.5,), (0.25,), tuple("0123456789"))
    with pytest.raises(BrowserError, match="the page failed: .*") as exc:
        browser_predict(b"not an onnx model", spec, np.zeros((1, 8, 8, 1), np.uint8), timeout_s=60)
    assert "\n" not in str(exc.value)
    with pytest.raises(BrowserError, match="uint8"):
        browser_predict(b"", spec, np.zeros((1, 8, 8, 1), np.float32))
    monkeypatch.setenv("EDGEOPS_CHROMIUM", str(tmp_path / "nope"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BrowserError, match="no Chromium found"):
        find_chromium()


def test_a_browser_that_cannot_start_is_one_readable_line(monkeypatch, tmp_path):
    """A browser binary that exits at once (a broken install, a missing shared library): one line
    saying so, naming the binary, within seconds rather than the page's timeout."""
    ort_web_dir()
    broken = tmp_path / "chromium"
    broken.write_text("#!/bin/sh\necho 'error while loading shared libraries: libnss3.so' >&2\nexit 127\n")
    broken.chmod(0o755)
    monkeypatch.setenv("EDGEOPS_CHROMIUM", str(broken))
    spec = PreprocessingSpec(8, 8, 1, (0.5,), (0.25,), tuple("0123456789"))
    with pytest.raises(BrowserError) as exc:
        browser_predict(b"model", spec, np.zeros((1, 8, 8, 1), np.uint8), timeout_s=600)
    line = str(exc.value)
    assert "\n" not in line and "exited with 127" in line and "libnss3.so" in line and str(broken) in line

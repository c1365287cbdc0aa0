"""The browser cohort's device: the page from the cohort's published ONNX bundle, read through the
update channel and run by headless Chromium on field frames; nothing published is one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_browser_cohort_runs_its_published_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sklearn.datasets import load_digits

    import components  # noqa: F401  (legacy Keras before tensorflow)
    from components.convert.onnx import to_onnx
    from components.keras import keras, tf
    from components.web_target import BrowserError, find_chromium
    from device.preprocessing import PreprocessingSpec, normalize
    from edgeops.channel import ensure_channel
    from edgeops.settings import Settings
    from flows.web_cohort import run_browser_cohort
    from registry.bundles import publish_bundle
    from registry.channels import set_stable

    try:
        find_chromium()
    except BrowserError as exc:
        pytest.fail(f"{exc}: `make test` installs Debian's chromium (make browser)")
    for key, value in {"EDGEOPS_HOME": tmp_path / "home", "EDGEOPS_STORE_URL": tmp_path / "store",
                       "EDGEOPS_KEYS_DIR": tmp_path / "keys", "EDGEOPS_DEVICES": REPO / "devices.yaml"}.items():
        monkeypatch.setenv(key, str(value))
    settings = Settings.from_env()
    repo = ensure_channel(settings, settings.devices())

    d = load_digits()
    x01 = (d.images / 16.0).astype(np.float32)[..., None]
    spec = PreprocessingSpec(8, 8, 1, (float(x01.mean()),), (float(x01.std()),), tuple("0123456789"))
    tf.random.set_seed(0)
    model = keras.Sequential([keras.layers.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    model.fit(normalize(x01[:1200], spec), d.target[:1200], epochs=5, verbose=0)
    field, labels = x01[1200:1240], d.target[1200:1240]

    assert "nothing published" in run_browser_cohort(settings, "web-users", field, labels)
    ref = publish_bundle(repo, to_onnx(model, tmp_path / "m.onnx"), spec, model_name="digits",
                         model_version="3", target="onnx")
    set_stable(repo, "web-users", ref)
    line = run_browser_cohort(settings, "web-users", field, labels, frames=40)
    expected = (model.predict(normalize(field, spec), verbose=0).argmax(1) == labels).mean()
    assert line.startswith("the bundle's page (v3) in headless Chromium")
    assert f"top-1 {expected:.1%} on 40 field frames" in line  # the page agrees with the float model

"""The browser cohort's devices: the page from the cohort's published ONNX bundle, read through the
update channel and run by headless Chromium on field frames drawn through the drift scenario; their
records signed with each browser device's enrolled key and ingested like the agent's; nothing
published is one line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
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
    from device.scenarios import make_scenario
    from edgeops.settings import Settings
    from flows.web_cohort import field_frames, run_browser_cohort
    from monitoring.ingest import ingest
    from monitoring.table import read_table
    from registry.bundles import publish_bundle
    from registry.channel_access import ensure_channel
    from registry.channels import set_stable
    from registry.enrolment import DeviceRegistry, enrolment_dir

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

    params = settings.params().fleet.model_copy(update={"devices_per_cohort": 2, "hours": 1.0,
                                                        "inferences_per_hour": 40, "sample_rate": 1.0,
                                                        "label_rate": 0.5, "step_minutes": 20.0})
    start = datetime(2026, 12, 2, 10, tzinfo=UTC)
    state = tmp_path / "fleet"
    assert "nothing published" in run_browser_cohort(settings, "web-users", field, labels, params=params)
    ref = publish_bundle(repo, to_onnx(model, tmp_path / "m.onnx"), spec, model_name="digits",
                         model_version="3", target="onnx")
    set_stable(repo, "web-users", ref)
    scenario = make_scenario("rotate_darken", onset_hours=0.5)
    line = run_browser_cohort(settings, "web-users", field, labels, scenario=scenario, params=params,
                              start=start, state_dir=state)
    # the same 80 frames the page saw (the draw is seeded): the page agrees with the float model
    images, y, at = field_frames(field, labels, make_scenario("rotate_darken", onset_hours=0.5), 80, 1.0, 20.0,
                            params.seed)
    expected = (model.predict(normalize(images.astype(np.float32) / 255, spec), verbose=0).argmax(1) == y).mean()
    assert line.startswith("the bundle's page (v3 on 2 browsers) in headless Chromium"), line
    assert f"top-1 {expected:.1%} on 80 field frames" in line
    assert line.endswith("2 browser devices uploaded 80 signed records")

    # the browser devices' telemetry goes through ingestion like the agent's: signatures checked
    # against the enrolled keys, nothing quarantined, one row per frame with the bundle it ran
    devices = DeviceRegistry(enrolment_dir(settings.keys_dir)).load()
    report = ingest(settings.store(), ["web-users"], None, devices=devices, now=start + timedelta(hours=1))
    assert (report.stored_rows, report.quarantined_batches) == (80, 0), report.as_dict()
    rows = read_table(settings.store(), cohort="web-users")
    assert sorted(rows["device_id"].unique()) == ["web-users-browser-000", "web-users-browser-001"]
    assert set(rows["bundle_id"]) == {ref.bundle_id} and set(rows["model_version"]) == {"3"}
    assert rows["label"].notna().sum() == int((np.random.default_rng(params.seed + 1).random(80) < 0.5).sum())
    top1 = rows.sort_values(["device_id", "seq"])["top1"].to_numpy()
    np.testing.assert_array_equal(np.sort(top1), np.sort(
        model.predict(normalize(images.astype(np.float32) / 255, spec), verbose=0).argmax(1)))
    # a browser whose key is not enrolled: its batches are quarantined, not stored
    run_browser_cohort(settings, "web-users", field, labels, params=params, start=start + timedelta(hours=1),
                       state_dir=state)
    assert ingest(settings.store(), ["web-users"], None, devices={},
                  now=start + timedelta(hours=2)).quarantined_batches == 2


def _tiny_onnx(path: Path) -> Path:
    """A digits-shaped ONNX model (flatten, matmul, softmax) built with onnx's helpers: no training."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(0).normal(size=(64, 10)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("MatMul", ["f", "w"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["y"])], "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 8, 8, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 10])], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_a_browser_that_cannot_start_or_is_missing_is_one_line_naming_the_cohort(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fleet run's browser cohort when Chromium exits at once (a broken install) or is not
    installed: the cohort's line says which cohort and why, and returns (the fleet run goes on)."""
    from components.web_target import ort_web_dir
    from device.preprocessing import PreprocessingSpec
    from edgeops.settings import Settings
    from flows.web_cohort import run_browser_cohort
    from registry.bundles import publish_bundle
    from registry.channel_access import ensure_channel
    from registry.channels import set_stable

    ort_web_dir()  # the page's runtime is installed (make test): what fails here is the browser
    for key, value in {"EDGEOPS_HOME": tmp_path / "home", "EDGEOPS_STORE_URL": tmp_path / "store",
                       "EDGEOPS_KEYS_DIR": tmp_path / "keys", "EDGEOPS_DEVICES": REPO / "devices.yaml"}.items():
        monkeypatch.setenv(key, str(value))
    settings = Settings.from_env()
    repo = ensure_channel(settings, settings.devices())
    spec = PreprocessingSpec(8, 8, 1, (0.5,), (0.25,), tuple("0123456789"))
    ref = publish_bundle(repo, _tiny_onnx(tmp_path / "m.onnx"), spec, model_name="digits", model_version="1",
                         target="onnx")
    set_stable(repo, "web-users", ref)
    rng = np.random.default_rng(0)
    field, labels = rng.random((20, 8, 8, 1)).astype(np.float32), rng.integers(0, 10, 20)
    params = settings.params().fleet.model_copy(update={"devices_per_cohort": 2, "hours": 1.0,
                                                        "inferences_per_hour": 10, "step_minutes": 30.0})

    broken = tmp_path / "bin" / "chromium"
    broken.parent.mkdir()
    broken.write_text("#!/bin/sh\necho 'error while loading shared libraries: libnss3.so' >&2\nexit 127\n")
    broken.chmod(0o755)
    monkeypatch.setenv("EDGEOPS_CHROMIUM", str(broken))
    line = run_browser_cohort(settings, "web-users", field, labels, params=params, state_dir=tmp_path / "fleet")
    assert line.startswith("cohort web-users: browser check not run: the browser page gave no result "
                           "(exited with 127; last line: error while loading shared libraries: libnss3.so)"), line
    assert str(broken) in line and "\n" not in line

    monkeypatch.setenv("EDGEOPS_CHROMIUM", str(tmp_path / "no-such-browser"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no chromium / chromium-browser either
    assert run_browser_cohort(settings, "web-users", field, labels, params=params, state_dir=tmp_path / "fleet") == (
        "cohort web-users: browser check not run: no Chromium found: install Debian's `chromium` package "
        "(make test does)")

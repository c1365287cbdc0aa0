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

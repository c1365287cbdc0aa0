from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from device.capabilities import DeviceCaps
from device.fleet import simulate
from device.protocol import in_canary
from device.scenarios import make_scenario
from device.telemetry import read_batch
from edgeops.errors import ConfigError
from edgeops.params import FleetParams

PROFILES = {
    "pi": DeviceCaps(name="raspberry-pi-4", targets=("tflite-f32",)),
    "mcu": {
        "name": "cortex-m",
        "targets": ["tflite-int8"],
        "int8_only": True,
        "max_model_bytes": 256000,
    },
}


def _release(release, tiny_models):
    f32 = release.publish(tiny_models.f32, tiny_models.spec, "1")
    i8 = release.publish(tiny_models.int8, tiny_models.spec, "1", target="tflite-int8")
    release.point("pi", f32)
    release.point("mcu", i8)
    return f32, i8


def _telemetry(store, cohort):
    return pa.concat_tables(
        [read_batch(store.get(k)) for k in store.list(f"telemetry/raw/{cohort}/")]
    )


SALT = "fleet-test-rollout-1"  # fixed: which devices are in the canary is decided, not drawn


@pytest.mark.slow
def test_fleet_with_drift_faults_and_a_rollout(release, tiny_models, tmp_path):
    f32, _ = _release(release, tiny_models)
    v2 = release.publish(tiny_models.int8, tiny_models.spec, "2", target="tflite-int8")
    v3 = release.publish(tiny_models.f32, tiny_models.spec, "3")
    params = FleetParams(
        devices_per_cohort=6,
        hours=4,
        inferences_per_hour=60,
        store_failure_rate=0.2,
        offline_fraction=0.2,
        label_rate=0.2,
    )
    start = datetime.now(UTC)
    seen: list[float] = []

    def on_step(hours: float, now: datetime) -> None:
        seen.append(hours)
        if (
            abs(hours - 1.0) < 1e-6
        ):  # a canary step: half of the pi cohort gets v2 (an int8 bundle the pi can't run)
            release.point("pi", f32, candidate=v2, percentage=50, salt=SALT)
        if abs(hours - 2.5) < 1e-6:  # next: a candidate the pi can run, to everyone
            release.point("pi", f32, candidate=v3, percentage=100, salt=SALT)

    progress: list[tuple[int, int]] = []
    s = simulate(
        release.store,
        ["pi", "mcu"],
        tiny_models.x_test,
        tiny_models.y_test,
        make_scenario("rotate_darken", onset_hours=2.0),
        params,
        release.root,
        PROFILES,
        start=start,
        state_dir=tmp_path / "fleet",
        progress=lambda a, b: progress.append((a, b)),
        on_step=on_step,
    )
    assert s.devices == 12 and progress[-1] == (24, 24) and len(seen) == 24
    assert s.records_lost == 0 and s.records_pending == 0
    assert s.records_in_store == s.records_spooled > 0
    assert s.store_errors > 0  # the failures really happened
    # half of the unlabelled inferences, and every labelled one (label_rate 0.2: always offered)
    assert s.records_sampled == pytest.approx((0.5 * 0.8 + 0.2) * s.inferences, rel=0.15)
    pi, mcu = s.cohorts
    assert pi.accuracy_before_onset > 0.8
    assert pi.accuracy_after_onset < pi.accuracy_before_onset - 0.1  # rotation + darkening hurts
    assert mcu.models == {"1": 6}
    # pi devices in the canary refused the int8 bundle (wrong target), then all moved to v3
    # (counted per device: a device in the canary refuses once, however often it polls)
    canary = [d for d in (f"pi-{i:04d}" for i in range(6)) if in_canary(50, d, SALT)]
    assert 0 < len(canary) < 6  # the fixed salt puts some, not all, pi devices in the canary
    assert pi.models == {"3": 6} and pi.refusing_devices == len(canary)
    t = _telemetry(release.store, "pi")
    refusals = t.filter(pc.equal(t.column("event"), "refusal"))
    assert set(refusals.column("bundle_id").to_pylist()) == {v2.bundle_id}
    ts = t.column("ts").to_pylist()
    assert min(ts) >= start.replace(microsecond=0) and max(ts) <= s.end
    # a second run on the same devices continues their sequences without collisions
    s2 = simulate(
        release.store,
        ["mcu"],
        tiny_models.x_test,
        tiny_models.y_test,
        make_scenario("none"),
        params.model_copy(update={"hours": 1.0}),
        release.root,
        PROFILES,
        start=s.end,
        state_dir=tmp_path / "fleet",
    )
    assert s2.records_lost == 0 and s2.records_in_store == s2.records_spooled
    seq = _telemetry(release.store, "mcu").to_pandas().groupby("device_id")["seq"]
    assert all(g.is_unique for _, g in seq)


@pytest.mark.slow
def test_drift_shows_in_uploaded_features(release, tiny_models, tmp_path):
    from scipy.stats import ks_2samp

    _release(release, tiny_models)
    params = FleetParams(
        devices_per_cohort=4,
        hours=4,
        inferences_per_hour=120,
        store_failure_rate=0.0,
        offline_fraction=0.0,
        sample_rate=1.0,
    )
    s = simulate(
        release.store,
        ["pi"],
        tiny_models.x_test,
        tiny_models.y_test,
        make_scenario("rotation", onset_hours=2.0),
        params,
        release.root,
        PROFILES,
    )
    t = _telemetry(release.store, "pi").to_pandas()
    t = t[t.event == "inference"]
    onset = s.start.timestamp() + 2 * 3600
    before, after = (
        t[t.ts.map(lambda v: v.timestamp()) < onset],
        t[t.ts.map(lambda v: v.timestamp()) >= onset],
    )
    assert len(before) > 300 and len(after) > 300
    p = [ks_2samp(before[c], after[c]).pvalue for c in t.columns if c.startswith("f_")]
    assert np.mean(np.array(p) < 0.01) > 0.3


def test_unknown_cohort_profile_is_a_config_error(release, tiny_models):
    with pytest.raises(ConfigError, match="no device profile"):
        simulate(
            release.store,
            ["nowhere"],
            tiny_models.x_test,
            tiny_models.y_test,
            make_scenario("none"),
            FleetParams(),
            release.root,
            PROFILES,
        )


@pytest.mark.slow
def test_fleet_cli_simulate(tiny_models, tmp_path, monkeypatch, make_release):
    """`edgeops fleet simulate` on the repo's devices.yaml: a float cohort and an encrypted
    int8-only cohort, prepared data from disk, a progress bar and the summary tables."""
    from pathlib import Path

    import pandas as pd
    from typer.testing import CliRunner

    import flows.fleet  # noqa: F401  Prefect sets up its logging on import: before CliRunner swaps the streams
    from components.prepare import PreparedData
    from device.store import open_store
    from edgeops.cli.fleet import fleet_app
    from registry.keys import load_or_create_cohort_key

    home = tmp_path / "home"
    monkeypatch.setenv("EDGEOPS_HOME", str(home))
    monkeypatch.setenv("EDGEOPS_STORE_URL", str(home / "store"))
    monkeypatch.setenv("EDGEOPS_KEYS_DIR", str(home / "keys"))
    monkeypatch.setenv("EDGEOPS_DEVICES", str(Path(__file__).parents[2] / "devices.yaml"))
    monkeypatch.setenv("EDGEOPS_PARAMS", str(tmp_path / "none.yaml"))
    monkeypatch.setenv("COLUMNS", "200")
    rel = make_release(open_store(str(home / "store")))
    from registry.tuf_keys import Keystore

    Keystore(home / "keys").save_root(rel.root)  # this machine trusts the channel's root
    m = tiny_models                               # (as `edgeops keys trust root.json` does)
    rel.point("pi-fleet-eu", rel.publish(m.f32, m.spec, "1"))
    aes = load_or_create_cohort_key(home / "keys", "mcu-line-a")
    rel.point(
        "mcu-line-a", rel.publish(m.int8, m.spec, "1", target="tflite-int8", encryption_key=aes)
    )
    empty = np.zeros((0, 16, 16, 1), np.float32)
    PreparedData(  # the simulator draws from the field split only (device.fleet.field_pool)
        empty,
        np.zeros(0, int),
        empty,
        np.zeros(0, int),
        empty,
        np.zeros(0, int),
        m.spec,
        pd.DataFrame({"path": ["x.png"], "label": ["0"], "split": ["field"]}),
        x_field=m.x_test,
        y_field=m.y_test,
    ).save(home / "runs" / "r1" / "prepared")
    import typer

    app = typer.Typer()
    app.add_typer(fleet_app, name="fleet")  # as edgeops/cli/main.py registers it
    res = CliRunner().invoke(
        app,
        [
            "fleet",
            "simulate",
            "--cohorts",
            "pi-fleet-eu,mcu-line-a",  # the two this test publishes to
            "--devices",
            "6",
            "--scenario",
            "rotate_darken",
            "--onset-hours",
            "1",
            "--hours",
            "2",
        ],
        terminal_width=200,
    )
    assert res.exit_code == 0, res.output
    assert "pi-fleet-eu" in res.output and "mcu-line-a" in res.output and "v1: 3" in res.output
    bad = CliRunner().invoke(app, ["fleet", "simulate", "--cohorts", "atlantis"])
    assert bad.exit_code == 2 and "unknown cohort" in bad.output

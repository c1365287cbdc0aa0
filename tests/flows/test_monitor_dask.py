"""The monitoring flows on a Dask cluster (prefect-dask's DaskTaskRunner, a LocalCluster on
loopback) decide exactly as in-process: EDGEOPS_TASK_RUNNER is the only difference."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from tests.monitoring.conftest import put_batch, synthetic_frame, telemetry_records

T0 = datetime(2026, 11, 20, 10, tzinfo=UTC)
NOW = T0 + timedelta(hours=4)


def _fill(store) -> None:
    from monitoring.reference import save_reference

    rng = np.random.default_rng(0)
    save_reference(store, "b1", synthetic_frame(600, rng))
    for d in range(3):
        for hour in range(2):
            feats = rng.normal(size=(60, 33)) + (1.5 if hour else 0.0)  # the 2nd hour shifts
            if d == 2 and hour:
                feats[40:] = feats[40]  # and one camera freezes
            recs = telemetry_records(f"dev-{d}", range(hour * 1000, hour * 1000 + 60),
                                     start=(T0 + timedelta(hours=hour)).isoformat(),
                                     rng=rng, features=feats, bundle_id="b1")
            put_batch(store, recs)


def _decide() -> list[tuple]:
    from edgeops.settings import Settings
    from flows.monitoring import detect_drift, ingest_telemetry, retrain_trigger, task_runner

    _fill(Settings.from_env().store())
    runner = task_runner()
    rep = ingest_telemetry.with_options(task_runner=runner)(known_cohorts=["pi-fleet-eu"])
    assert rep.reconciles and rep.stored_rows == 360
    reports = detect_drift.with_options(task_runner=task_runner())(embeddings=False, now=NOW,
                                                                    render=False)
    trig = retrain_trigger(reports, retrain_fn=lambda **kw: "ok", clock=lambda: NOW)
    windows = [(r.scope, r.window_start, r.n_current, r.drifted_kinds, r.harmful,
                round(r.estimate.accuracy, 9) if r.estimate else None,
                tuple(str(f) for f in r.segments)) for r in reports]
    return windows + [d[:3] + d[4:] for d in trig.decisions]


@pytest.mark.slow
@pytest.mark.timeout(1800)  # two monitor passes with Prefect's ephemeral API on 2 shared cores
def test_monitor_on_a_local_dask_cluster_decides_as_in_process(tmp_path, monkeypatch) -> None:
    from distributed import LocalCluster

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "600")  # shared cores
    monkeypatch.delenv("EDGEOPS_TASK_RUNNER", raising=False)
    monkeypatch.setenv("EDGEOPS_HOME", str(tmp_path / "in-process"))
    local = _decide()
    with LocalCluster(n_workers=1, processes=False, host="127.0.0.1", protocol="tcp://",
                      dashboard_address=None) as cluster:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        monkeypatch.setenv("EDGEOPS_TASK_RUNNER", f"dask:{cluster.scheduler_address}")
        monkeypatch.setenv("EDGEOPS_HOME", str(tmp_path / "dask"))
        from prefect_dask import DaskTaskRunner

        from flows.monitoring import task_runner

        assert isinstance(task_runner(), DaskTaskRunner)
        on_dask = _decide()
    assert on_dask == local
    judged = [w for w in local if len(w) == 7]
    assert [w[2] for w in judged] == [180, 180]  # one window per hour, 60 rows a device
    assert not judged[0][3] and "data" in judged[1][3]  # the shifted hour drifts
    assert any("dev-2: repeated_frames" in f for f in judged[1][6])  # the frozen camera

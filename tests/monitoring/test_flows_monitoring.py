"""The monitoring flows end to end on a local store: ingest -> Evidently drift -> MLflow -> policy -> retrain."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from device.features import summary_features
from device.preprocessing import normalize
from device.runtime import TFLiteRunner
from device.scenarios import adjust
from device.telemetry import TelemetryRecord
from monitoring.reference import build_reference, save_reference
from tests.monitoring.conftest import put_batch

T0 = datetime(2026, 11, 20, 10, tzinfo=UTC)


def _records(x, y, runner, spec, device: str, seq0: int, hour: int) -> list[TelemetryRecord]:
    feats, probs = summary_features(x), runner.predict(normalize(x, spec))
    step = timedelta(minutes=60) / len(x)
    return [
        TelemetryRecord(
            device_id=device,
            cohort="pi-fleet-eu",
            model_name="digits",
            model_version="1",
            target="tflite-f32",
            bundle_id="bundle-a",
            seq=seq0 + i,
            ts=T0 + hour * timedelta(hours=1) + i * step,
            features=tuple(map(float, feats[i])),
            probs=tuple(map(float, probs[i])),
            top1=int(probs[i].argmax()),
            confidence=float(probs[i].max()),
            latency_ms=3.0,
            memory_bytes=10,
            energy_mj=0.1,
            label=int(y[i]) if i % 2 == 0 else None,
            thumb=(x[i] * 255).astype(np.uint8).tobytes() if i % 2 == 0 else None,
        )
        for i in range(len(x))
    ]


@pytest.mark.slow
# a dark window has constant features: Evidently's correlation table must not flood the console
@pytest.mark.filterwarnings("error:invalid value encountered in divide:RuntimeWarning")
def test_monitor_flows_catch_darkening_and_retrain_once(
    tmp_path, monkeypatch, digits16, tiny_model
) -> None:
    import mlflow

    home = tmp_path / "home"
    (tmp_path / "params.yaml").write_text(
        "monitor:\n  min_samples: 100\n  sustained_windows: 2\n  min_labels: 50\n"
        "  trigger: drift\n"  # every significant shift retrains: the drift-only policy
    )
    monkeypatch.setenv("EDGEOPS_HOME", str(home))
    monkeypatch.setenv("EDGEOPS_PARAMS", str(tmp_path / "params.yaml"))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")  # 2 shared cores
    from edgeops.settings import Settings
    from flows.monitoring import detect_drift, ingest_telemetry, retrain_trigger

    settings = Settings.from_env()
    store = settings.store()
    x, y = digits16
    runner = TFLiteRunner(tiny_model.tflite)
    save_reference(store, "bundle-a", build_reference(x[:900], y[:900], runner, tiny_model.spec))
    rng = np.random.default_rng(0)
    for hour in range(3):
        idx = rng.choice(np.arange(900, len(x)), 300, replace=False)
        xi = x[idx] if hour == 0 else adjust(x[idx], brightness=0.8)
        put_batch(store, _records(xi, y[idx], runner, tiny_model.spec, "dev-1", hour * 1000, hour))

    rep = ingest_telemetry(known_cohorts=["pi-fleet-eu"])
    assert rep.reconciles and rep.stored_rows == 900
    reports = detect_drift(embeddings=False)
    assert [r.drifted for r in reports] == [False, True, True]
    assert "data" in reports[1].drifted_kinds
    calls: list[dict] = []
    trig = retrain_trigger(
        reports,
        retrain_fn=lambda **kw: calls.append(kw) or "ok",
        clock=lambda: T0 + timedelta(hours=4),
    )
    assert trig.launched and trig.how == "in-process" and len(calls) == 1
    assert [d[2] for d in trig.decisions] == [False, False, True]  # debounced: 2 windows needed
    assert [d[4] for d in trig.decisions] == ["none", "hold", "retrain"]
    assert "drift" in calls[0]["reason"]
    assert calls[0]["cause_runs"] == [r.run_id for r in reports if r.drifted]  # the drifted windows' runs
    assert all(calls[0]["cause_runs"])
    assert detect_drift(embeddings=False) == []  # judged windows are not re-run


    client = mlflow.MlflowClient(settings.mlflow_tracking_uri)
    exp = client.get_experiment_by_name(settings.experiment_name)
    runs = client.search_runs([exp.experiment_id], "tags.`edgeops.stage` = 'drift'")
    assert len(runs) == 3, sorted((r.info.run_name, r.data.tags.get("mlflow.parentRunId", "")[:6]) for r in runs)
    drifted = sorted(r.data.metrics["data_drifted"] for r in runs)
    assert drifted == [0.0, 1.0, 1.0]
    for run in runs:  # Evidently HTML only where a window drifted, titled with its verdict
        arts = {a.path for a in client.list_artifacts(run.info.run_id, "drift")}
        if run.data.metrics["data_drifted"]:
            assert {"drift/data_drift.html", "drift/prediction_drift.html"} <= arts
        else:
            assert not arts
        assert run.info.run_name.startswith("pi-fleet-eu v1 window 2026-11-20")  # not a hash
    page = next((settings.home / "reports").rglob("data_drift.html")).read_text()
    assert "<title>pi-fleet-eu · model 1 · window 2026-11-20" in page
    assert "· harmful</title>" in page or "· drifted (data" in page  # the window's verdict

    # one more hour through `edgeops monitor run --json`: one window, the keys
    import json

    from typer.testing import CliRunner

    from edgeops.cli.monitor import monitor_app

    idx = rng.choice(np.arange(900, len(x)), 300, replace=False)
    put_batch(store, _records(adjust(x[idx], brightness=0.8), y[idx], runner, tiny_model.spec,
                              "dev-1", 3000, 3))
    out = CliRunner().invoke(monitor_app, ["run", "--json", "--no-retrain"])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output[out.output.index('{\n  "windows"'):])  # after the flows' prints
    assert set(doc) == {"windows", "retrain"} and doc["retrain"] is None
    (w,) = doc["windows"]
    assert set(w) == {"cohort", "model_version", "window_start", "rows", "late_rows",
                      "estimated_accuracy", "estimated_accuracy_ci", "labelled_accuracy",
                      "drifted_features", "segments_flagged", "decision", "reason"}
    assert (w["cohort"], w["rows"], w["late_rows"], w["decision"]) == ("pi-fleet-eu", 300, 0, "hold")
    low, high = w["estimated_accuracy_ci"]
    assert low <= w["estimated_accuracy"] <= high and w["labelled_accuracy"] is not None
    assert w["drifted_features"]  # the darkening is the explanation


def _harmful(cohort: str, hour: int, version: str = "1", harmful: bool = True):
    from monitoring.jobs import WindowReport
    from monitoring.performance import AccuracyEstimate, HarmVerdict

    est = AccuracyEstimate(0.80, 0.01, 500, "cbpe")
    return WindowReport(
        cohort, version, f"bundle-{cohort}", T0 + timedelta(hours=hour), 500, {}, est,
        AccuracyEstimate(0.97, 0.005, 300, "cbpe"), None,
        HarmVerdict(harmful, 0.17, 0.15, "cbpe", "estimated accuracy 0.800 vs reference 0.970"),
        trigger="harm", run_id=f"run-{cohort}-{hour}",  # the MLflow run detect_drift logged it under
    )


@pytest.mark.slow
def test_two_harmed_cohorts_start_one_retrain_and_no_labels_means_refused(
    tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("EDGEOPS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("EDGEOPS_PARAMS", str(tmp_path / "params.yaml"))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    from flows.monitoring import retrain_trigger

    windows = [_harmful(c, h) for c in ("eu", "us") for h in (0, 1)]
    clock = lambda: T0 + timedelta(hours=3)  # noqa: E731
    (tmp_path / "params.yaml").write_text("monitor:\n  min_new_labels: 20\n")
    calls: list[dict] = []
    refused = retrain_trigger(windows, retrain_fn=lambda **kw: calls.append(kw), clock=clock)
    assert not refused.launched and not calls
    assert any("refused: 0 new labelled field rows" in "; ".join(d[3]) for d in refused.decisions)

    (tmp_path / "params.yaml").write_text("monitor:\n  min_new_labels: 0\n")
    later = [_harmful(c, h) for c in ("eu", "us") for h in (2, 3)]
    later = [*later, _harmful("eu", 4, harmful=False), replace(_harmful("ap", 2), run_id=None)]
    trig = retrain_trigger(later, retrain_fn=lambda **kw: calls.append(kw) or "ok", clock=clock)
    assert trig.launched and trig.how == "in-process" and len(calls) == 1  # one incident
    assert [d[4] for d in trig.decisions].count("retrain") == 1
    # the drift runs of the harmful windows reach the retrain: first the firing streak's, the
    # refused first pass's windows included (kept in the policy state), then this pass's in time
    # order; a harmless window's run and a window never logged (no run id) do not
    assert calls[0]["cause_runs"] == ["run-eu-0", "run-eu-1", "run-eu-2", "run-us-2", "run-eu-3",
                                      "run-us-3"]
    again = retrain_trigger([_harmful("us", 4)], retrain_fn=lambda **kw: calls.append(kw),
                            clock=lambda: T0 + timedelta(hours=5))
    assert not again.launched and len(calls) == 1  # the open incident covers it
    assert "covers it" in "; ".join(again.decisions[0][3])


def test_retrain_reads_cause_runs_as_a_list_or_as_a_deployment_trigger_renders_them() -> None:
    """In-process the monitor passes a list; a deployment trigger's template renders it as text."""
    from flows.retrain import run_ids

    ids = ["a1b2", "c3d4"]
    assert run_ids(ids) == run_ids("['a1b2', 'c3d4']") == run_ids("a1b2,c3d4") == ids
    assert run_ids(None) == run_ids("") == run_ids("[]") == []

"""Late labels reach the judged window: label events uploaded hours (a day) after their
inferences are joined onto the sampled inference rows by (device_id, inference_id); the
inference's window decides where a label counts, a label event is never an inference row, and a
label for an inference left out of the bounded sample adds nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from device.store import open_store
from monitoring.cohort_windows import plan_cohort, sample_windows
from monitoring.ingest import ingest
from monitoring.performance import ppi_accuracy
from tests.monitoring.conftest import enrolled, put_batch, telemetry_records

NOW = datetime(2026, 11, 22, 12, tzinfo=UTC)
HOUR = pd.Timestamp("2026-11-20T10:00:00Z")


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEOPS_HOME", str(tmp_path / "home"))
    return open_store(str(tmp_path / "s"))


def _inferences(device: str, n: int) -> list:
    """n unlabelled inferences in the 10:00 hour, inference_id == seq."""
    recs = telemetry_records(device, range(n), start="2026-11-20T10:00:00Z")
    return [r.__class__(**{**r.__dict__, "label": None, "inference_id": r.seq}) for r in recs]


def _label_events(device: str, first_seq: int, start: str, labels: dict[int, int]) -> list:
    """One `label` event per (inference_id -> label), one minute apart from `start`."""
    from device.telemetry import TelemetryRecord

    t0 = pd.Timestamp(start).to_pydatetime()
    return [TelemetryRecord(device_id=device, cohort="pi-fleet-eu", model_name="digits",
                            model_version="1", target="tflite-f32", bundle_id="b1",
                            seq=first_seq + i, ts=t0 + timedelta(minutes=i), event="label",
                            label=lab, inference_id=iid)
            for i, (iid, lab) in enumerate(labels.items())]


def _judged(store, max_rows: int) -> pd.DataFrame:
    ingest(store, ["pi-fleet-eu"], ["1"], devices=enrolled(), now=NOW, suite_sample_rows=0)
    scopes, _, _ = plan_cohort(store, "pi-fleet-eu", 1.0, NOW, timedelta(hours=1), {}, 0.2,
                               ["2026-11-20", "2026-11-21"])
    plans = {p.start: p for sp in scopes for p in sp.plans}
    assert plans[HOUR].status == "judge" and plans[HOUR].total_rows == 40  # labels add no rows
    samples = sample_windows(store, "pi-fleet-eu", {("1", "b1"): {HOUR}}, 1.0, max_rows)
    assert set(samples) == {("1", "b1", HOUR)}  # the label events' hours are no window
    return samples[("1", "b1", HOUR)]


def test_late_label_events_reach_the_windows_labelled_accuracy(store) -> None:
    infs = _inferences("dev-a", 40)
    top1 = {r.inference_id: r.top1 for r in infs}
    put_batch(store, infs)
    # 20 labels the next day (a different date partition and hour): 15 right, 5 wrong; one of
    # them labelled twice (the later wins); one for an inference the table never saw
    late = {i: top1[i] if i < 15 else (top1[i] + 1) % 10 for i in range(20)}
    put_batch(store, _label_events("dev-a", 100, "2026-11-21T09:00:00Z", late))
    put_batch(store, _label_events("dev-a", 200, "2026-11-21T15:00:00Z",
                                   {3: (top1[3] + 1) % 10, 999: 4}))
    rows = _judged(store, max_rows=1000)
    assert len(rows) == 40 and set(rows["event"]) == {"inference"}
    labelled = rows[rows["label"].notna()]
    assert len(labelled) == 20 and set(labelled["inference_id"]) == set(range(20))
    hit = (labelled["label"].astype(int) == labelled["top1"].astype(int))
    assert int(hit.sum()) == 14  # 15 right, less inference 3 relabelled wrong
    # the window's estimate is label-corrected (20 labels reach min_labels), not CBPE alone
    est = ppi_accuracy(list(rows["probs"]), rows["label"].astype("float64").fillna(-1).to_numpy(),
                       groups=rows["device_id"].to_numpy(), min_labels=20)
    assert est.method == "ppi" and est.n == 40


def test_a_label_of_an_unsampled_inference_is_not_counted(store) -> None:
    infs = _inferences("dev-a", 40)
    put_batch(store, infs)
    put_batch(store, _label_events("dev-a", 100, "2026-11-20T16:00:00Z",
                                   {r.inference_id: r.top1 for r in infs}))
    rows = _judged(store, max_rows=10)  # a bounded sample: 10 of the 40 inferences
    assert len(rows) == 10 and set(rows["event"]) == {"inference"}
    assert rows["label"].notna().all()  # every sampled inference got its label, no more rows
    assert (rows["label"].astype(int) == rows["top1"].astype(int)).all()

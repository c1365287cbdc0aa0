"""Rollout gates from telemetry: summarise the canary and the stable arm of one cohort.

The controller (registry.controller) owns the thresholds and the decision; this module only
turns the compacted telemetry of a window into its typed `GateResult` (two `ArmStats`). An arm is
identified by its bundle id, so a canary and a stable of the same model version on different
targets never mix. Refusals and errors count against the arm they happened on.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from device.store import ObjectStore
from edgeops.errors import MonitoringError
from monitoring.table import read_table
from registry.controller import ArmStats, GateResult

FAILURE_EVENTS = ("error", "refusal")


def arm_stats(rows: pd.DataFrame, n_classes: int) -> ArmStats:
    """Counts, error rate, p95 latency, mean confidence, top-1 histogram and labelled accuracy."""
    if rows.empty:
        return ArmStats(count=0, error_rate=0.0, p95_latency_ms=0.0, mean_confidence=0.0)
    failed = rows["event"].isin(FAILURE_EVENTS)
    inf = rows[(rows["event"] == "inference") & rows["top1"].notna()]
    lat = inf["latency_ms"].dropna().to_numpy(np.float64)
    hist = np.bincount(inf["top1"].astype("int64"), minlength=n_classes)[:n_classes].astype(
        np.float64
    )
    lab = inf[inf["label"].notna()]
    accuracy = (
        float((lab["top1"].astype("int64") == lab["label"].astype("int64")).mean())
        if len(lab)
        else None
    )
    return ArmStats(
        count=len(rows),
        error_rate=float(failed.mean()),
        p95_latency_ms=float(np.percentile(lat, 95)) if len(lat) else 0.0,
        mean_confidence=float(inf["confidence"].mean()) if len(inf) else 0.0,
        prediction_hist=tuple(float(v) for v in hist / max(hist.sum(), 1.0)),
        labelled=len(lab),
        accuracy=accuracy,
    )


def gate_result(
    telemetry: pd.DataFrame,
    canary_bundle: str,
    stable_bundle: str,
    n_classes: int = 10,
    window_start: datetime | None = None,
    window_end: datetime | None = None,
) -> GateResult:
    """Canary vs stable over the rows of `telemetry` (already restricted to one cohort and window)."""
    if canary_bundle == stable_bundle:
        raise MonitoringError("canary and stable are the same bundle", where=canary_bundle)
    if telemetry.empty:
        return GateResult(
            arm_stats(telemetry, n_classes),
            arm_stats(telemetry, n_classes),
            window_start,
            window_end,
        )
    by = telemetry["bundle_id"]
    return GateResult(
        canary=arm_stats(telemetry[by == canary_bundle], n_classes),
        stable=arm_stats(telemetry[by == stable_bundle], n_classes),
        window_start=window_start,
        window_end=window_end,
    )


def gate_from_store(
    store: ObjectStore,
    cohort: str,
    canary_bundle: str,
    stable_bundle: str,
    start: pd.Timestamp,
    end: pd.Timestamp,
    n_classes: int = 10,
) -> GateResult:
    """The same, reading the cohort's compacted telemetry for [start, end)."""
    df = read_table(store, cohort=cohort, start=start, end=end)
    return gate_result(
        df, canary_bundle, stable_bundle, n_classes, start.to_pydatetime(), end.to_pydatetime()
    )

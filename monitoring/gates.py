"""Rollout gates from telemetry: summarise the canary and the stable arm of one cohort.

The controller (registry.controller) owns the thresholds and the decision; this module only
turns the compacted telemetry of a window into its typed `GateResult` (two `ArmStats`). An arm is
identified by its bundle id, so a canary and a stable of the same model version on different
targets never mix. Refusals and errors count against the arm they happened on.

Gates count devices, not rows: every device weighs the same in each statistic (its rows weigh
1 / its row count), and the error rate is the share of the arm's devices that reported a
failure, so one device repeating an event (a refusal on every poll, or 200 forged ones) is one
failing device. With the rollout's percentage and salt, only devices the salt puts in the
canary count for the canary arm and only the others for the stable arm (device.protocol's
bucketing: the same function the devices use). `canary_arms` is that selection, shared with
the accuracy evidence (monitoring.canary_evidence).
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from device.protocol import in_canary
from device.store import ObjectStore
from edgeops.errors import MonitoringError
from monitoring.table import read_table
from registry.controller import ArmStats, GateResult

FAILURE_EVENTS = ("error", "refusal")


def _weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    """numpy's linear percentile when the weights are equal; each point spans its weight."""
    order = np.argsort(values, kind="stable")
    v, w = values[order], weights[order]
    span = w.sum() - w[-1]
    if len(v) == 1 or span <= 0:
        return float(v[-1])
    return float(np.interp(q, (np.cumsum(w) - w) / span, v))


def arm_stats(rows: pd.DataFrame, n_classes: int) -> ArmStats:
    """Rows, devices, share of devices with failures, p95 latency, mean confidence, top-1
    histogram and labelled accuracy, each device weighing the same."""
    if rows.empty:
        return ArmStats(count=0, error_rate=0.0, p95_latency_ms=0.0, mean_confidence=0.0)
    dev = rows["device_id"] if "device_id" in rows else pd.Series("?", index=rows.index)
    failed = rows["event"].isin(FAILURE_EVENTS).groupby(dev).any()
    is_inf = (rows["event"] == "inference") & rows["top1"].notna()
    inf = rows[is_inf]
    w = 1.0 / inf.groupby(dev[is_inf])["event"].transform("size").to_numpy(np.float64)
    lat_ok = inf["latency_ms"].notna().to_numpy()
    lat = inf["latency_ms"].to_numpy(np.float64)[lat_ok]
    top1 = inf["top1"].astype("int64").to_numpy()
    keep = (top1 >= 0) & (top1 < n_classes)
    hist = np.bincount(top1[keep], weights=w[keep], minlength=n_classes)[:n_classes]
    lab = inf["label"].notna().to_numpy()
    accuracy = (
        float(np.average(top1[lab] == inf["label"].to_numpy()[lab].astype("int64"), weights=w[lab]))
        if lab.any()
        else None
    )
    return ArmStats(
        count=len(rows),
        error_rate=float(failed.mean()),
        p95_latency_ms=_weighted_quantile(lat, w[lat_ok], 0.95) if len(lat) else 0.0,
        mean_confidence=float(np.average(inf["confidence"].to_numpy(np.float64), weights=w))
        if len(inf)
        else 0.0,
        prediction_hist=tuple(float(v) for v in hist / max(hist.sum(), 1e-12)),
        labelled=int(lab.sum()),
        accuracy=accuracy,
        devices=int(dev.nunique()),
    )


def canary_arms(
    telemetry: pd.DataFrame,
    canary_bundle: str,
    stable_bundle: str,
    *,
    percentage: float | None = None,
    salt: str | None = None,
) -> tuple[pd.Series, pd.Series]:
    """Boolean masks of the canary arm's and the stable arm's rows: the one selector that the
    proxy gates (`gate_result`) and the accuracy evidence (monitoring.canary_evidence) share.
    By bundle id; with the rollout's `percentage` and `salt` also by canary membership
    (device.protocol.in_canary, the function the devices use), so a device that has not yet
    moved to its arm's bundle counts for neither."""
    if telemetry.empty:
        none = pd.Series(False, index=telemetry.index, dtype=bool)
        return none, none.copy()
    by = telemetry["bundle_id"]
    canary, stable = by == canary_bundle, by == stable_bundle
    if percentage is not None and salt is not None:
        ids = telemetry["device_id"]
        member = {d: in_canary(percentage, d, salt) for d in ids.unique()}
        inside = ids.map(member).astype(bool)
        canary, stable = canary & inside, stable & ~inside
    return canary, stable


def gate_result(
    telemetry: pd.DataFrame,
    canary_bundle: str,
    stable_bundle: str,
    n_classes: int = 10,
    window_start: datetime | None = None,
    window_end: datetime | None = None,
    *,
    percentage: float | None = None,
    salt: str | None = None,
) -> GateResult:
    """Canary vs stable over the rows of `telemetry` (already restricted to one cohort and
    window); with `percentage` and `salt`, arms are also restricted by canary membership."""
    if canary_bundle == stable_bundle:
        raise MonitoringError("canary and stable are the same bundle", where=canary_bundle)
    if telemetry.empty:
        return GateResult(
            arm_stats(telemetry, n_classes),
            arm_stats(telemetry, n_classes),
            window_start,
            window_end,
        )
    canary, stable = canary_arms(
        telemetry, canary_bundle, stable_bundle, percentage=percentage, salt=salt
    )
    return GateResult(
        canary=arm_stats(telemetry[canary], n_classes),
        stable=arm_stats(telemetry[stable], n_classes),
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
    *,
    percentage: float | None = None,
    salt: str | None = None,
) -> GateResult:
    """The same, reading the cohort's compacted telemetry for [start, end)."""
    df = read_table(store, cohort=cohort, start=start, end=end)
    return gate_result(
        df,
        canary_bundle,
        stable_bundle,
        n_classes,
        start.to_pydatetime(),
        end.to_pydatetime(),
        percentage=percentage,
        salt=salt,
    )

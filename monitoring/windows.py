"""Complete windows: judge a window once its rows are in, count what arrives after.

Devices upload every `upload_interval` (and an offline device later still), so at any moment the
newest hour of telemetry is incomplete. A window [start, end) is judged only once the watermark
has passed its end, where watermark = max(newest event time seen, the monitor's clock) minus the
allowed lateness (by default the fleet's upload interval), as in streaming engines' event-time
windows. Rows of a judged window that arrive later are late: while they stay below
`late_reopen_share` of the rows judged they are counted as too late (the report says how many);
above it the window is re-opened and judged again on all its rows. The ledger of judged windows
lives in the store, so every row is judged in exactly one verdict or counted as late.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

import pandas as pd

from device.store import ObjectStore
from edgeops.errors import ConflictError, MonitoringError

LEDGER_KEY = "monitoring/windows.json"
_CAS_TRIES = 5

Status = Literal["judge", "rejudge", "late", "open", "done"]


@dataclass(frozen=True)
class WindowPlan:
    start: pd.Timestamp
    end: pd.Timestamp
    rows: pd.DataFrame
    status: Status
    late_rows: int  # rows of this window counted as too late (so far, after this run)
    judged_rows: int  # rows in the verdict that stands after this run (0 while open)
    total_rows: int = 0  # rows of the window seen so far (judged ones may be a sample of them)


def watermark(rows: pd.DataFrame, now: datetime, lateness: timedelta) -> pd.Timestamp:
    """max(newest event, now) - lateness: windows ending at or before it are complete."""
    newest = pd.Timestamp(now)
    if not rows.empty:
        newest = max(newest, pd.Timestamp(rows["ts"].max()))
    return newest - lateness


def plan_windows(
    rows: pd.DataFrame,
    hours: float,
    mark: pd.Timestamp,
    ledger: dict[str, dict[str, int]],
    reopen_share: float,
) -> list[WindowPlan]:
    """What to do with each window of one scope, given its ledger entry (start iso -> counts)."""
    if rows.empty:
        return []
    length = pd.Timedelta(hours=hours)
    starts = rows["ts"].dt.floor(length)
    parts = {start: part.reset_index(drop=True) for start, part in rows.groupby(starts, sort=True)}
    plans = plan_counts({s: len(p) for s, p in parts.items()}, hours, mark, ledger, reopen_share)
    return [replace(p, rows=parts[p.start]) for p in plans]


def plan_counts(
    counts: dict[pd.Timestamp, int],
    hours: float,
    mark: pd.Timestamp,
    ledger: dict[str, dict[str, int]],
    reopen_share: float,
) -> list[WindowPlan]:
    """`plan_windows` from the row count of each window (window statistics, no rows read);
    the plans carry no rows (the caller reads a bounded sample for the windows it judges)."""
    length = pd.Timedelta(hours=hours)
    out: list[WindowPlan] = []
    none = pd.DataFrame()
    for start in sorted(counts):
        n, end = int(counts[start]), start + length
        seen = ledger.get(start.isoformat())
        if seen is None:
            status: Status = "judge" if end <= mark else "open"
            out.append(WindowPlan(start, end, none, status, 0, n if status == "judge" else 0, n))
            continue
        judged, late = int(seen.get("judged", 0)), int(seen.get("late", 0))
        new = n - judged - late
        if new <= 0:
            out.append(WindowPlan(start, end, none, "done", late, judged, n))
        elif late + new > reopen_share * judged:
            out.append(WindowPlan(start, end, none, "rejudge", 0, n, n))
        else:
            out.append(WindowPlan(start, end, none, "late", late + new, judged, n))
    return out


def load_ledger(store: ObjectStore) -> tuple[dict[str, dict[str, dict[str, int]]], str | None]:
    if not store.exists(LEDGER_KEY):
        return {}, None
    data, etag = store.get_with_etag(LEDGER_KEY)
    return json.loads(data), etag


def record(store: ObjectStore, scope: str, plans: list[WindowPlan]) -> None:
    """Write the judged/late counts of these plans into the ledger (compare-and-swap)."""
    changed = [p for p in plans if p.status in ("judge", "rejudge", "late")]
    if not changed:
        return
    for _ in range(_CAS_TRIES):
        ledger, etag = load_ledger(store)
        mine = ledger.setdefault(scope, {})
        for p in changed:
            entry = mine.setdefault(p.start.isoformat(), {"judged": 0, "late": 0, "reopened": 0})
            entry["judged"], entry["late"] = p.judged_rows, p.late_rows
            entry["reopened"] = entry.get("reopened", 0) + int(p.status == "rejudge")
        body = json.dumps(ledger, indent=1, sort_keys=True).encode()
        try:
            store.put_if_match(LEDGER_KEY, body, etag)
            return
        except ConflictError:
            continue
    raise MonitoringError(f"window ledger kept changing under {_CAS_TRIES} attempts", where=LEDGER_KEY)

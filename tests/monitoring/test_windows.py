"""Complete windows: judged after the watermark, late rows counted once, re-opened above a share."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd

from device.store import open_store
from monitoring.windows import load_ledger, plan_windows, record, watermark

T0 = pd.Timestamp("2026-11-20T10:00:00Z")
LATE = timedelta(hours=1)


def _rows(minutes: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"ts": [T0 + pd.Timedelta(minutes=m) for m in minutes]})


def _run(store, rows: pd.DataFrame, now: datetime) -> dict[str, tuple[str, int, int]]:
    ledger, _ = load_ledger(store)
    plans = plan_windows(rows, 1.0, watermark(rows, now, LATE), ledger.get("s", {}), 0.2)
    record(store, "s", plans)
    return {f"{p.start:%H:%M}": (p.status, p.judged_rows, p.late_rows) for p in plans}


def test_late_rows_are_judged_once_or_counted_as_late(tmp_path) -> None:
    store = open_store(str(tmp_path / "s"))
    early = datetime(2026, 11, 20, 9, tzinfo=UTC)  # the monitor's clock lags the events
    first = _rows([m for m in range(0, 120, 2)] + [130])  # 10:00-12:10 seen so far
    # newest event 12:10, lateness 1h: only 10:00-11:00 is complete; 11:00 and 12:00 stay open
    assert _run(store, first, early) == {
        "10:00": ("judge", 30, 0), "11:00": ("open", 0, 0), "12:00": ("open", 0, 0)
    }
    # an offline device's backlog: 3 more rows for 10:00 (< 20% of 30: late), time moves on
    second = pd.concat([first, _rows([1, 3, 5, 190])])
    out = _run(store, second, early)
    assert out["10:00"] == ("late", 30, 3) and out["11:00"] == ("judge", 30, 0)
    # nothing new: judged windows are not judged again, the late count stays
    out = _run(store, second, early)
    assert out["10:00"] == ("done", 30, 3) and out["11:00"] == ("done", 30, 0)
    # a large backlog (10 > 20% of 33) re-opens 10:00: one new verdict over all its rows
    third = pd.concat([second, _rows([7 + i for i in range(10)])])
    assert _run(store, third, early)["10:00"] == ("rejudge", 43, 0)
    ledger, _ = load_ledger(store)
    assert ledger["s"][T0.isoformat()] == {"judged": 43, "late": 0, "reopened": 1}


def test_the_monitor_clock_completes_windows_when_the_fleet_goes_quiet() -> None:
    rows = _rows([5, 10])
    assert plan_windows(rows, 1.0, watermark(rows, T0, LATE), {}, 0.2)[0].status == "open"
    later = (T0 + pd.Timedelta(hours=2)).to_pydatetime()
    assert plan_windows(rows, 1.0, watermark(rows, later, LATE), {}, 0.2)[0].status == "judge"

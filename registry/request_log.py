"""The request log of a server cohort: the router's rows (one per answered input: time, client,
version, role, status, latency, probabilities and the label of a scored request), written to the
object store in JSON-lines chunks under `serving/<cohort>/requests/<hour>/`, one new object per
chunk and hour, so writers never read-modify-write and a reader lists only the hours it asks for.
The rollout controller reads its gate and accuracy evidence from here (flows.serving).
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from device.protocol import format_time, parse_time

if TYPE_CHECKING:
    from device.store import ObjectStore

LOG_PREFIX = "serving"


class RequestLog:
    """Buffered request rows of one cohort, flushed to the store as one JSON-lines object per
    chunk (a new key each time: no read-modify-write, nothing lost to a concurrent writer)."""

    def __init__(self, store: ObjectStore, cohort: str, flush_every: int = 500,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store, self.cohort, self.flush_every, self.clock = store, cohort, flush_every, clock
        self._rows: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def add(self, rows: list[dict[str, Any]]) -> None:
        with self._lock:
            self._rows.extend(rows)
            full = len(self._rows) >= self.flush_every
        if full:
            self.flush()

    def flush(self) -> int:
        with self._lock:
            rows, self._rows = self._rows, []
        if not rows:
            return 0
        by_hour: dict[str, list[dict[str, Any]]] = {}
        for r in rows:  # one object per hour, so a reader lists only the hours it asks for
            by_hour.setdefault(r["at"][:13], []).append(r)
        for hour, chunk in by_hour.items():
            key = f"{LOG_PREFIX}/{self.cohort}/requests/{hour}/{chunk[0]['at']}-{uuid.uuid4().hex[:12]}.jsonl"
            self.store.put(key, "\n".join(json.dumps(r) for r in chunk).encode())
        return len(rows)


def read_requests(store: ObjectStore, cohort: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """The cohort's logged request rows with start <= time < end (only the hours in range are listed)."""
    rows: list[dict[str, Any]] = []
    hour = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    while hour < end:
        prefix = f"{LOG_PREFIX}/{cohort}/requests/{format_time(hour)[:13]}/"
        for key in store.list(prefix):
            for line in store.get(key).decode().splitlines():
                row = json.loads(line)
                if start <= parse_time(row["at"]) < end:
                    rows.append(row)
        hour += timedelta(hours=1)
    return rows

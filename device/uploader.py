"""Telemetry upload that never duplicates and never loses a batch.

A batch is written to the local spool (atomic rename) before anything is sent, under the
sequence number that becomes its object key, `telemetry/raw/<cohort>/<device>/<seq:012d>.parquet`.
It leaves the spool only when the store has acknowledged that exact key. The write is
conditional (must not exist): a retry after a lost acknowledgement finds its own bytes there
and counts as done, so a retry never makes a second copy. While the store fails, attempts
back off exponentially (with jitter) on the device's own clock; the agent keeps serving.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq

from device.protocol import utcnow
from device.sampling import DailyBudget
from device.store import ObjectStore
from edgeops.errors import ConflictError, StoreError

TELEMETRY_PREFIX = "telemetry/raw"


def batch_key(cohort: str, device_id: str, seq: int) -> str:
    return f"{TELEMETRY_PREFIX}/{cohort}/{device_id}/{seq:012d}.parquet"


@dataclass(frozen=True)
class FlushReport:
    uploaded_batches: int
    uploaded_records: int
    uploaded_bytes: int
    pending_batches: int
    error: str | None  # the store error that stopped this flush, if any
    deferred_by_budget: bool  # a batch waits for tomorrow's budget
    next_attempt: datetime | None  # when backoff allows the next try


class Uploader:
    """One device's spool and its upload loop. State lives only in `spool_dir`."""

    def __init__(
        self,
        store: ObjectStore,
        cohort: str,
        device_id: str,
        spool_dir: Path,
        clock: Callable[[], datetime] = utcnow,
        backoff_base_s: float = 30.0,
        backoff_max_s: float = 3600.0,
        seed: int | None = None,
    ) -> None:
        self.store = store
        self.cohort = cohort
        self.device_id = device_id
        self.spool_dir = Path(spool_dir)
        self.clock = clock
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self._rng = random.Random(seed)
        self.failures = 0
        self.next_attempt: datetime | None = None
        self.total_failures = 0

    # --- spool -------------------------------------------------------------------------------
    def _counter(self) -> Path:
        return self.spool_dir / "next_seq"

    def _take_seq(self) -> int:
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        path = self._counter()
        seq = int(path.read_text()) if path.exists() else 0
        # no fsync: a counter lost in a crash only reuses a key, which _send detects and re-keys
        seq = max([seq, *(int(p.stem) + 1 for p in self.pending())])
        self._write_atomic(path, str(seq + 1).encode(), durable=False)
        return seq

    def _write_atomic(self, path: Path, data: bytes, durable: bool = True) -> None:
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "wb") as fh:
            fh.write(data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)

    def spool(self, data: bytes) -> str:
        """Persist one Parquet batch locally; returns the object key it will have."""
        seq = self._take_seq()
        self._write_atomic(self.spool_dir / f"{seq:012d}.parquet", data)
        return batch_key(self.cohort, self.device_id, seq)

    def pending(self) -> list[Path]:
        if not self.spool_dir.exists():
            return []
        return sorted(self.spool_dir.glob("[0-9]*.parquet"))

    def pending_records(self) -> int:
        return sum(pq.read_metadata(p).num_rows for p in self.pending())

    # --- upload ------------------------------------------------------------------------------
    def _backoff(self, now: datetime) -> datetime:
        self.failures += 1
        self.total_failures += 1
        delay = min(self.backoff_max_s, self.backoff_base_s * 2 ** (self.failures - 1))
        return now + timedelta(seconds=delay * (0.5 + 0.5 * self._rng.random()))

    def _send(self, path: Path, data: bytes) -> None:
        key = batch_key(self.cohort, self.device_id, int(path.stem))
        try:
            self.store.put_if_match(key, data, None)
        except ConflictError:
            if self.store.get(key) == data:
                return  # our own earlier upload whose acknowledgement was lost
            # a different batch holds this key (the spool counter was reset): re-key, retry later
            new = self.spool_dir / f"{self._take_seq():012d}.parquet"
            os.replace(path, new)
            raise StoreError(
                f"telemetry key {key!r} taken by another batch; re-keyed to {new.stem}"
            ) from None

    def flush(self, budget: DailyBudget | None = None, online: bool = True) -> FlushReport:
        """Send spooled batches oldest first until done, offline, out of budget or a failure."""
        now = self.clock()
        batches = records = nbytes = 0
        error: str | None = None
        deferred = False
        waiting = self.next_attempt is not None and now < self.next_attempt
        if online and not waiting:
            for path in self.pending():
                data = path.read_bytes()
                if budget is not None and not budget.allows(len(data), now):
                    deferred = True
                    break
                try:
                    self._send(path, data)
                except StoreError as exc:
                    error = str(exc)
                    self.next_attempt = self._backoff(now)
                    break
                rows = pq.read_metadata(path).num_rows
                path.unlink()
                if budget is not None:
                    budget.spend(len(data), now)
                batches, records, nbytes = batches + 1, records + rows, nbytes + len(data)
                self.failures, self.next_attempt = 0, None
        return FlushReport(
            uploaded_batches=batches,
            uploaded_records=records,
            uploaded_bytes=nbytes,
            pending_batches=len(self.pending()),
            error=error,
            deferred_by_budget=deferred,
            next_attempt=self.next_attempt,
        )

"""Telemetry upload that never duplicates, never loses a batch and needs only write access.

A batch is written to the local spool (atomic rename, fsync) before anything is sent, as the
exact object it will become: the Parquet bytes in the device's signed frame (device.identity).
Its object key is derived from what it is, `telemetry/raw/<cohort>/<device>/<first seq>-<last
seq>-<sha256 prefix>.tlm`, so the same batch always has the same key and no two batches share
one. The write is conditional (must not exist): a retry after a lost acknowledgement finds the
key taken, which can only be by these same bytes, and counts as done without reading anything
back, so write-only credentials are enough. While the store fails, attempts back off
exponentially (with jitter) on the device's own clock; the agent keeps serving.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from device.identity import DeviceIdentity, is_frame, open_frame, sign_batch
from device.protocol import utcnow
from device.sampling import DailyBudget
from device.store import ObjectStore
from edgeops.errors import ConflictError, IntegrityError, StoreError, TelemetryError

TELEMETRY_PREFIX = "telemetry/raw"
BATCH_SUFFIX = ".tlm"


def batch_key(cohort: str, device_id: str, seqs: tuple[int, int], body: bytes) -> str:
    """The object key of one batch: who, which sequence numbers, and a hash of the bytes."""
    digest = hashlib.sha256(body).hexdigest()[:20]
    return f"{TELEMETRY_PREFIX}/{cohort}/{device_id}/{seqs[0]:012d}-{seqs[1]:012d}-{digest}{BATCH_SUFFIX}"


def seq_range(parquet: bytes) -> tuple[int, int]:
    """First and last sequence number of a Parquet batch (seq is increasing within a batch)."""
    try:
        seq = pq.read_table(io.BytesIO(parquet), columns=["seq"]).column("seq")
    except (pa.ArrowException, OSError, KeyError) as exc:
        raise TelemetryError(f"not a telemetry batch: {exc}") from exc
    if len(seq) == 0:
        raise TelemetryError("empty telemetry batch")
    return int(seq[0].as_py()), int(seq[-1].as_py())


def batch_rows(body: bytes) -> int:
    """Rows of a spooled object (signed frame or plain Parquet)."""
    if is_frame(body):
        try:
            return open_frame(body).statement.rows
        except IntegrityError as exc:
            raise TelemetryError(f"spooled batch is unreadable: {exc}") from exc
    try:
        return pq.read_metadata(io.BytesIO(body)).num_rows
    except (pa.ArrowException, OSError) as exc:
        raise TelemetryError(f"spooled batch is unreadable: {exc}") from exc


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
        identity: DeviceIdentity | None = None,
    ) -> None:
        """`identity`: the device key that signs every batch; without one batches go unsigned
        (ingestion quarantines those: a test or legacy mode, never a provisioned device)."""
        self.store = store
        self.identity = identity
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
        self.set_aside = 0  # spool files that could not be read back (moved to spool/bad/)

    # --- spool -------------------------------------------------------------------------------
    def _counter(self) -> Path:
        return self.spool_dir / "next_seq"

    def _take_seq(self) -> int:
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        path = self._counter()
        try:
            seq = int(path.read_text()) if path.exists() else 0
        except (OSError, ValueError):  # a torn counter: the spool's own names bound it below
            seq = 0
        # no fsync: the counter only orders the spool; object keys come from the content
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

    def _body(self, parquet: bytes) -> tuple[bytes, tuple[int, int]]:
        seqs = seq_range(parquet)
        if self.identity is None:
            return parquet, seqs
        rows = pq.read_metadata(io.BytesIO(parquet)).num_rows
        return sign_batch(self.identity, parquet, rows, seqs), seqs

    def spool(self, data: bytes) -> str:
        """Persist one Parquet batch locally (signed when the device has a key); returns the
        object key it will have."""
        body, seqs = self._body(data)
        n = self._take_seq()
        self._write_atomic(self.spool_dir / f"{n:012d}.parquet", body)
        return batch_key(self.cohort, self.device_id, seqs, body)

    def pending(self) -> list[Path]:
        if not self.spool_dir.exists():
            return []
        return sorted(self.spool_dir.glob("[0-9]*.parquet"))

    def pending_records(self) -> int:
        total = 0
        for p in self.pending():
            try:
                total += batch_rows(p.read_bytes())
            except (TelemetryError, pa.ArrowException, OSError):
                continue  # unreadable: flush sets it aside
        return total

    # --- upload ------------------------------------------------------------------------------
    def _backoff(self, now: datetime) -> datetime:
        self.failures += 1
        self.total_failures += 1
        delay = min(self.backoff_max_s, self.backoff_base_s * 2 ** (self.failures - 1))
        return now + timedelta(seconds=delay * (0.5 + 0.5 * self._rng.random()))

    def _key(self, body: bytes) -> str:
        try:
            payload = open_frame(body).payload if is_frame(body) else body
        except IntegrityError as exc:
            raise TelemetryError(f"spooled batch is unreadable: {exc}") from exc
        return batch_key(self.cohort, self.device_id, seq_range(payload), body)

    def _send(self, body: bytes) -> None:
        key = self._key(body)
        try:
            self.store.put_if_match(key, body, None)
        except ConflictError:
            return  # the key names these bytes: our own earlier upload whose ack was lost

    def _set_aside(self, path: Path, reason: str) -> None:
        bad = self.spool_dir / "bad"
        bad.mkdir(exist_ok=True)
        os.replace(path, bad / path.name)
        (bad / f"{path.name}.reason.txt").write_text(reason + "\n")
        self.set_aside += 1

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
                    self._send(data)
                except TelemetryError as exc:  # a spool file damaged on disk: set aside, go on
                    self._set_aside(path, str(exc))
                    continue
                except StoreError as exc:
                    error = str(exc)
                    self.next_attempt = self._backoff(now)
                    break
                rows = batch_rows(data)
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

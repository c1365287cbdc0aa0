"""Telemetry ingestion: raw batches -> validated, de-duplicated, partitioned Parquet table.

A batch is never lost and never stops the job: one that cannot be read or fails the suite is
copied to `telemetry/quarantine/<raw key>` with `<raw key>.reason.txt` beside it, and the raw
object stays where the device put it. A ledger (`telemetry/ledger.json`, written by
compare-and-swap) remembers every batch key handled and every (device_id, seq) stored, so a
re-run ingests nothing twice. Counts reconcile on every run:
received rows = stored + quarantined + duplicates.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from device.store import ObjectStore
from device.telemetry import read_batch
from edgeops.errors import ConflictError, MonitoringError, StoreError, TelemetryError
from monitoring.telemetry_suite import TelemetrySuite

RAW_PREFIX = "telemetry/raw/"
TABLE_PREFIX = "telemetry/table/"
QUARANTINE_PREFIX = "telemetry/quarantine/"
LEDGER_KEY = "telemetry/ledger.json"


@dataclass(frozen=True)
class IngestReport:
    received_batches: int
    ingested_batches: int
    quarantined_batches: int
    skipped_batches: int  # already in the ledger: not received again
    received_rows: int
    stored_rows: int
    quarantined_rows: int
    duplicate_rows: int
    partitions: tuple[str, ...] = ()
    quarantined: tuple[tuple[str, str], ...] = field(default=())  # (raw key, reason)

    @property
    def reconciles(self) -> bool:
        rows = self.received_rows == self.stored_rows + self.quarantined_rows + self.duplicate_rows
        return rows and self.received_batches == self.ingested_batches + self.quarantined_batches

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "reconciles": self.reconciles}


@dataclass
class _Ledger:
    batches: set[str]
    seqs: dict[str, set[int]]
    etag: str | None

    @classmethod
    def load(cls, store: ObjectStore) -> _Ledger:
        if not store.exists(LEDGER_KEY):
            return cls(set(), {}, None)
        data, etag = store.get_with_etag(LEDGER_KEY)
        raw = json.loads(data)
        return cls(set(raw["batches"]), {d: set(s) for d, s in raw["seqs"].items()}, etag)

    def save(self, store: ObjectStore) -> None:
        body = {
            "batches": sorted(self.batches),
            "seqs": {d: sorted(s) for d, s in sorted(self.seqs.items())},
        }
        try:
            store.put_if_match(LEDGER_KEY, json.dumps(body).encode(), self.etag)
        except ConflictError as exc:
            raise MonitoringError(
                "another ingestion run changed the ledger; re-run", where=LEDGER_KEY
            ) from exc


def _rows_of(data: bytes) -> int:
    """Rows of an unreadable batch when its Parquet footer still says; 0 when nothing can be read."""
    try:
        return pq.read_metadata(io.BytesIO(data)).num_rows
    except (pa.ArrowException, OSError):
        return 0


def _quarantine(store: ObjectStore, key: str, data: bytes, reason: str) -> None:
    rel = key[len(RAW_PREFIX) :] if key.startswith(RAW_PREFIX) else key
    store.put(f"{QUARANTINE_PREFIX}{rel}", data)
    store.put(f"{QUARANTINE_PREFIX}{rel}.reason.txt", (reason + "\n").encode())


def _fresh(table: pa.Table, ledger: _Ledger) -> np.ndarray:
    """Mask of rows whose (device_id, seq) is new; marks them seen."""
    devices = table.column("device_id").to_pylist()
    seqs = table.column("seq").to_numpy()
    keep = np.zeros(len(seqs), dtype=bool)
    for i, (d, s) in enumerate(zip(devices, seqs, strict=True)):
        seen = ledger.seqs.setdefault(d, set())
        if int(s) not in seen:
            seen.add(int(s))
            keep[i] = True
    return keep


def known_versions(store: ObjectStore) -> list[str] | None:
    """Model versions of every published bundle; None (accept any) before the first release."""
    keys = [k for k in store.list("bundles/") if k.endswith("/metadata.json")]
    if not keys:
        return None
    return sorted({str(json.loads(store.get(k))["signed"]["model_version"]) for k in keys})


def partition_key(date: str, cohort: str, model_version: str, part: str) -> str:
    return f"{TABLE_PREFIX}date={date}/cohort={cohort}/model_version={model_version or '_'}/part-{part}.parquet"


def _write_partitions(store: ObjectStore, tables: list[pa.Table], part: str) -> tuple[str, ...]:
    if not tables:
        return ()
    table = pa.concat_tables(tables)
    dates = pc.strftime(table.column("ts"), format="%Y-%m-%d").to_numpy(zero_copy_only=False)
    groups = np.rec.fromarrays(
        [
            dates,
            table.column("cohort").to_numpy(zero_copy_only=False),
            table.column("model_version").to_numpy(zero_copy_only=False),
        ]
    )
    keys = []
    for g in np.unique(groups):
        mask = (dates == g[0]) & (groups.f1 == g[1]) & (groups.f2 == g[2])
        buf = io.BytesIO()
        pq.write_table(table.filter(pa.array(mask)), buf, compression="zstd")
        key = partition_key(str(g[0]), str(g[1]), str(g[2]), part)
        store.put(key, buf.getvalue())
        keys.append(key)
    return tuple(keys)


def ingest(
    store: ObjectStore,
    known_cohorts: list[str] | None = None,
    known_versions: list[str] | None = None,
    max_batches: int | None = None,
) -> IngestReport:
    """Ingest every raw batch not yet in the ledger (at most `max_batches`)."""
    ledger = _Ledger.load(store)
    raw = sorted(store.list(RAW_PREFIX))
    already = sum(1 for k in raw if k in ledger.batches)
    new = [k for k in raw if k.endswith(".parquet") and k not in ledger.batches][:max_batches]
    suite = TelemetrySuite(known_cohorts, known_versions) if new else None
    kept: list[pa.Table] = []
    quarantined: list[tuple[str, str]] = []
    n = {"received": 0, "stored": 0, "quarantined": 0, "duplicates": 0}
    for key in new:
        try:
            data = store.get(key)
        except StoreError as exc:
            raise MonitoringError(f"cannot read telemetry batch: {exc}", where=key) from exc
        try:
            table = read_batch(data, where=key)
            result = suite.validate(table.to_pandas())  # type: ignore[union-attr]
            if not result.success:
                raise TelemetryError("; ".join(result.failures), where=key)
        except TelemetryError as exc:
            rows = _rows_of(data)
            n["received"] += rows
            n["quarantined"] += rows
            _quarantine(store, key, data, str(exc))
            quarantined.append((key, str(exc)))
            ledger.batches.add(key)
            continue
        keep = _fresh(table, ledger)
        n["received"] += table.num_rows
        n["stored"] += int(keep.sum())
        n["duplicates"] += int((~keep).sum())
        kept.append(table.filter(pa.array(keep)))
        ledger.batches.add(key)
    part = hashlib.sha256("\n".join(new).encode()).hexdigest()[:16]
    partitions = _write_partitions(
        store, kept, part
    )  # before the ledger: a crash re-ingests, same part name
    if new:
        ledger.save(store)
    return IngestReport(
        received_batches=len(new),
        ingested_batches=len(new) - len(quarantined),
        quarantined_batches=len(quarantined),
        skipped_batches=already,
        received_rows=n["received"],
        stored_rows=n["stored"],
        quarantined_rows=n["quarantined"],
        duplicate_rows=n["duplicates"],
        partitions=partitions,
        quarantined=tuple(quarantined),
    )

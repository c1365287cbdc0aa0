"""The row-wise ingestion path of issue 12 (one Parquet ledger rewritten per run, every raw key
listed, the Great Expectations suite over every stored row). Kept as the reference the columnar
path (monitoring.ingest) is tested against, row for row, and benchmarked beside
(benchmarks/scale.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from device.store import ObjectStore
from edgeops.errors import StoreError
from edgeops.params import IngestParams
from monitoring.ingest import (
    RAW_PREFIX,
    RAW_SUFFIXES,
    IngestReport,
    _payload_rows,
    _Quarantine,
    _quarantine,
    _quarantine_rows,
    _suite_failures,
    _verified,
    _write_partitions,
)
from monitoring.ledger import Ledger
from monitoring.telemetry_suite import RowRules, TelemetrySuite, row_problems

if TYPE_CHECKING:
    from registry.enrolment import EnrolledDevice

__all__ = ["ingest_rowwise"]


def ingest_rowwise(
    store: ObjectStore,
    known_cohorts: list[str] | None = None,
    known_versions: list[str] | None = None,
    max_batches: int | None = None,
    *,
    devices: Mapping[str, EnrolledDevice] | None = None,
    params: IngestParams | None = None,
    now: datetime | None = None,
) -> IngestReport:
    """Ingest every raw batch not yet in the ledger (at most `max_batches`). `devices`: the
    enrolment registry (registry.enrolment.DeviceRegistry.load()); a batch from a device not in
    it is quarantined, so None quarantines everything."""
    p = params or IngestParams()
    devices = devices or {}
    now = now or datetime.now(UTC)
    window = (
        int((now - timedelta(days=p.max_age_days)).timestamp() * 1000),
        int((now + timedelta(hours=p.max_future_hours)).timestamp() * 1000),
    )
    ledger = Ledger.load(store, p.max_ranges_per_device)
    raw = sorted(k for k in store.list(RAW_PREFIX) if k.endswith(RAW_SUFFIXES))
    already = sum(1 for k in raw if k in ledger.batches)
    new = [k for k in raw if k not in ledger.batches][:max_batches]
    at = int(now.timestamp() * 1000)
    kept: list[pa.Table] = []
    quarantined: list[tuple[str, str]] = []
    n = {"received": 0, "stored": 0, "quarantined": 0, "duplicates": 0, "batches": 0, "deferred": 0}
    checked: list[tuple[str, bytes, pa.Table, str, np.ndarray]] = []

    def reject(key: str, data: bytes, exc: BaseException) -> None:
        rows = exc.rows if isinstance(exc, _Quarantine) else _payload_rows(data)
        reason = (str(exc) if isinstance(exc, _Quarantine) else f"{type(exc).__name__}: {exc}")[
            :2000
        ]
        _quarantine(store, key, data, reason)
        quarantined.append((key, reason))
        n["received"] += rows
        n["quarantined"] += rows
        n["batches"] += 1
        ledger.batches[key] = at

    for key in new:  # signature, limits, schema and row rules, batch by batch
        try:
            data = store.get(key)
        except StoreError:
            n["deferred"] += 1
            continue
        try:
            table, dev, seqs = _verified(data, key, devices, p)
            rules = RowRules(dev.device_id, dev.cohort, seqs[0], seqs[1], *window)
            reasons = row_problems(table, rules)
            if table.num_rows and (reasons != None).all():  # noqa: E711
                raise _Quarantine(
                    f"all {table.num_rows} rows: " + "; ".join(sorted(set(reasons))), table.num_rows
                )
        except Exception as exc:  # noqa: BLE001 - one batch, whatever its fault, never stops the run
            reject(key, data, exc)
            continue
        checked.append((key, data, table, dev.device_id, reasons))
    failing = _suite_failures(
        lambda: TelemetrySuite(known_cohorts, known_versions), checked
    )  # one GE run over all, per batch only on failure
    for key, data, table, device_id, reasons in checked:
        if key in failing:  # the whole batch, every row of it counted
            exc = failing[key]
            text = str(exc) if isinstance(exc, _Quarantine) else f"{type(exc).__name__}: {exc}"
            reject(key, data, _Quarantine(text, table.num_rows))
            continue
        bad = reasons != None  # noqa: E711
        good = table.filter(pa.array(~bad))
        if bad.any():
            summary = _quarantine_rows(store, key, table.filter(pa.array(bad)), list(reasons[bad]))
            quarantined.append((key, summary))
        fresh = ledger.fresh(device_id, good.column("seq").to_numpy())
        n["received"] += table.num_rows
        n["quarantined"] += int(bad.sum())
        n["stored"] += int(fresh.sum())
        n["duplicates"] += int((~fresh).sum())
        kept.append(good.filter(pa.array(fresh)))
        ledger.batches[key] = at
    handled = [k for k in new if k in ledger.batches]
    part = hashlib.sha256("\n".join(handled).encode()).hexdigest()[:16]
    partitions = _write_partitions(store, kept, part)  # before the ledger: a crash re-ingests
    compacted = ledger.compact(store, now, p.ledger_retention_days) if handled else 0
    ledger_rows = ledger.save(store) if handled or compacted else 0
    return IngestReport(
        received_batches=len(handled),
        ingested_batches=len(handled) - n["batches"],
        quarantined_batches=n["batches"],
        skipped_batches=already,
        received_rows=n["received"],
        stored_rows=n["stored"],
        quarantined_rows=n["quarantined"],
        duplicate_rows=n["duplicates"],
        partitions=partitions,
        quarantined=tuple(quarantined),
        deferred_batches=n["deferred"],
        compacted_batches=compacted,
        ledger_rows=ledger_rows,
    )

"""Telemetry ingestion: raw batches -> verified, validated, de-duplicated, partitioned Parquet.

One bad batch never stops a run. Each batch is checked in order: its size against the limit
(before it is parsed), the device's signature against the key enrolled for that device outside
the bucket (registry.enrolment), the row count in the Parquet footer, the wire schema, then
every row (monitoring.telemetry_suite.row_problems: rows speaking for another device or cohort,
outside the signed sequence range, with timestamps outside a sane window, non-finite values,
probabilities outside [0, 1], impossible classes), then the Great Expectations suite. Any
failure of the batch as a whole (any exception) copies it byte for byte to
`telemetry/quarantine/<raw key>` with `<raw key>.reason.txt`; bad rows of an otherwise good
batch go to `telemetry/quarantine/<raw key>.rows.parquet` with a `reason` column. Duplicates are
found per verified device in a bounded ledger (monitoring.ledger). Counts reconcile on every
run: received rows = stored + quarantined + duplicates.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from device.identity import open_frame, verify_frame
from device.store import ObjectStore
from device.telemetry import read_batch
from edgeops.errors import IntegrityError, StoreError, TelemetryError
from edgeops.params import IngestParams
from monitoring.ledger import LEDGER_KEY, Ledger
from monitoring.telemetry_suite import RowRules, TelemetrySuite, row_problems

if TYPE_CHECKING:
    from registry.enrolment import EnrolledDevice

RAW_PREFIX = "telemetry/raw/"
TABLE_PREFIX = "telemetry/table/"
QUARANTINE_PREFIX = "telemetry/quarantine/"
RAW_SUFFIXES = (".tlm", ".parquet")
__all__ = ["LEDGER_KEY", "IngestReport", "ingest", "known_versions", "partition_key"]


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
    deferred_batches: int = 0  # unreadable from the store this run: tried again next run
    compacted_batches: int = 0  # raw batches past retention, deleted with their ledger entries
    ledger_rows: int = 0

    @property
    def reconciles(self) -> bool:
        rows = self.received_rows == self.stored_rows + self.quarantined_rows + self.duplicate_rows
        return rows and self.received_batches == self.ingested_batches + self.quarantined_batches

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "reconciles": self.reconciles}


class _Quarantine(Exception):
    """The whole batch goes to quarantine with this reason (and these rows, when known)."""

    def __init__(self, reason: str, rows: int) -> None:
        super().__init__(reason)
        self.rows = rows


def _rel(key: str) -> str:
    return key[len(RAW_PREFIX) :] if key.startswith(RAW_PREFIX) else key


def _quarantine(store: ObjectStore, key: str, data: bytes, reason: str) -> None:
    store.put(f"{QUARANTINE_PREFIX}{_rel(key)}", data)
    store.put(f"{QUARANTINE_PREFIX}{_rel(key)}.reason.txt", (reason + "\n").encode())


def _quarantine_rows(store: ObjectStore, key: str, rows: pa.Table, reasons: list[str]) -> str:
    counts: dict[str, int] = {}
    for r in reasons:
        counts[r] = counts.get(r, 0) + 1
    summary = "; ".join(f"{n} rows: {r}" for r, n in sorted(counts.items()))
    buf = io.BytesIO()
    pq.write_table(rows.append_column("reason", pa.array(reasons, pa.string())), buf)
    store.put(f"{QUARANTINE_PREFIX}{_rel(key)}.rows.parquet", buf.getvalue())
    store.put(f"{QUARANTINE_PREFIX}{_rel(key)}.rows.parquet.reason.txt", (summary + "\n").encode())
    return summary


def known_versions(store: ObjectStore) -> list[str] | None:
    """Model versions of every published bundle (the channel's `tuf/targets/bundles/<id>/
    <sha256>.metadata.json`, or `bundles/<id>/metadata.json` envelopes of earlier releases);
    None (accept any) before the first release."""
    versions = set()
    keys = [k for k in store.list("tuf/targets/bundles/") if k.endswith(".metadata.json")]
    keys += [k for k in store.list("bundles/") if k.endswith("/metadata.json")]
    for k in keys:
        try:
            doc = json.loads(store.get(k))
            versions.add(str(doc.get("signed", doc)["model_version"]))
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
    return sorted(versions) or None


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


def _verified(
    data: bytes, key: str, devices: Mapping[str, EnrolledDevice], p: IngestParams
) -> tuple[pa.Table, EnrolledDevice, tuple[int, int]]:
    """Size, signature, footer rows and schema; _Quarantine on any failure."""
    if len(data) > p.max_batch_bytes:
        raise _Quarantine(f"batch is {len(data)} bytes, over the limit {p.max_batch_bytes}", 0)
    try:
        frame = open_frame(data)
    except IntegrityError as exc:
        raise _Quarantine(str(exc), _footer_rows(data)) from exc
    st = frame.statement
    claimed = min(max(st.rows, 0), p.max_batch_rows)
    dev = devices.get(st.device_id)
    if dev is None:
        raise _Quarantine(f"device {st.device_id!r} is not enrolled", claimed)
    try:
        verify_frame(frame, dev.public_key)
    except IntegrityError as exc:
        raise _Quarantine(str(exc), claimed) from exc
    if st.cohort != dev.cohort:
        raise _Quarantine(
            f"batch names cohort {st.cohort!r}, {dev.device_id} is enrolled in {dev.cohort!r}",
            claimed,
        )
    prefix = _rel(key).split("/")[:2]
    if prefix != [dev.cohort, dev.device_id]:  # a batch under another device's upload prefix
        raise _Quarantine(
            f"stored under {'/'.join(prefix)}/, signed by {dev.device_id} of {dev.cohort}", claimed
        )
    rows = _footer_rows(frame.payload)
    if rows > p.max_batch_rows:
        raise _Quarantine(f"batch has {rows} rows, over the limit {p.max_batch_rows}", 0)
    if rows != st.rows:
        raise _Quarantine(f"batch has {rows} rows, the signature says {st.rows}", rows)
    try:
        table = read_batch(frame.payload, where=key)
    except TelemetryError as exc:
        raise _Quarantine(str(exc), rows) from exc
    return table, dev, (st.seq_first, st.seq_last)


def _footer_rows(data: bytes) -> int:
    """Rows an unreadable batch's Parquet footer still claims; 0 when nothing can be read."""
    try:
        return pq.read_metadata(io.BytesIO(data)).num_rows
    except Exception:  # noqa: BLE001 - any garbage: nothing countable
        return 0


def _suite_failures(
    make_suite: Callable[[], TelemetrySuite],
    checked: list[tuple[str, bytes, pa.Table, str, np.ndarray]],
) -> dict[str, BaseException]:
    """The Great Expectations suite over the good rows of every checked batch at once (one
    validation run instead of one per batch); only when that fails, batch by batch."""
    goods = [(k, t.filter(pa.array(r == None))) for k, _, t, _, r in checked]  # noqa: E711
    goods = [(k, g) for k, g in goods if g.num_rows]
    if not goods:
        return {}  # nothing left to validate: the suite (seconds to build) is never built
    suite = make_suite()
    try:
        if suite.validate(pa.concat_tables([g for _, g in goods]).to_pandas()).success:
            return {}
    except Exception:  # noqa: BLE001, S110 - find the culprit batch by batch below
        pass
    failing: dict[str, BaseException] = {}
    for key, good in goods:
        try:
            result = suite.validate(good.to_pandas())
            if not result.success:
                failing[key] = _Quarantine("; ".join(result.failures), good.num_rows)
        except Exception as exc:  # noqa: BLE001 - whatever it is, it is this batch's
            failing[key] = exc
    return failing


def _payload_rows(data: bytes) -> int:
    try:
        return _footer_rows(open_frame(data).payload)
    except IntegrityError:
        return _footer_rows(data)


def ingest(
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

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
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from device.identity import is_frame, open_frame, verify_frame
from device.store import ObjectStore
from device.telemetry import SCHEMA, read_batch, validate_batch
from edgeops.errors import IntegrityError, StoreError, TelemetryError
from edgeops.params import IngestParams
from monitoring.compaction import TABLE_PREFIX, WRITE_OPTIONS, compact_before
from monitoring.ledger import LEDGER_KEY
from monitoring.seen import SeenLedger
from monitoring.stats import SketchCounts, merge, window_counts, write_stats
from monitoring.telemetry_suite import ROW_RULES, TelemetrySuite, batch_checks, row_codes

if TYPE_CHECKING:
    from registry.enrolment import EnrolledDevice

RAW_PREFIX = "telemetry/raw/"
QUARANTINE_PREFIX = "telemetry/quarantine/"
RAW_SUFFIXES = (".tlm", ".parquet")
__all__ = ["LEDGER_KEY", "TABLE_PREFIX", "IngestReport", "ingest", "known_versions", "partition_key"]


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
    read_batches: int = 0  # raw objects fetched this run (never one handled before)
    stats_parts: int = 0  # window statistics files written
    compacted_files: int = 0  # small table/stats/manifest files merged by the daily compaction
    suite_rows: int = 0  # rows of the Great Expectations sample
    suite_failures: tuple[str, ...] = ()  # what the suite refused in the sample (should be none)

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


_DAY_MS = 86_400_000


def _write_table(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, **WRITE_OPTIONS)
    return buf.getvalue()


def _write_partitions(store: ObjectStore, tables: list[pa.Table], part: str) -> tuple[str, ...]:
    """One Parquet file per (date, cohort, model_version) of these rows, in row order."""
    if not tables:
        return ()
    table = pa.concat_tables(tables)
    if not table.num_rows:
        return ()
    day = np.floor_divide(table.column("ts").cast(pa.int64()).to_numpy(), _DAY_MS)
    by = pl.DataFrame({"day": day, "cohort": table.column("cohort"),
                       "model_version": table.column("model_version")})
    groups = by.with_row_index("i").group_by(["day", "cohort", "model_version"]).agg(pl.col("i").sort())
    keys = []
    for d, cohort, version, rows in sorted(groups.iter_rows()):
        date = datetime.fromtimestamp(d * (_DAY_MS // 1000), tz=UTC).strftime("%Y-%m-%d")
        part_rows = table if len(rows) == table.num_rows else table.take(pa.array(rows, pa.uint32()))
        key = partition_key(date, cohort, version, part)
        store.put(key, _write_table(part_rows))
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
    meta = _footer(frame.payload)
    rows = meta.num_rows if meta is not None else 0
    if rows > p.max_batch_rows:
        raise _Quarantine(f"batch has {rows} rows, over the limit {p.max_batch_rows}", 0)
    if rows != st.rows:
        raise _Quarantine(f"batch has {rows} rows, the signature says {st.rows}", rows)
    try:
        table = _decode(frame.payload, meta, key)
    except TelemetryError as exc:
        raise _Quarantine(str(exc), rows) from exc
    return table, dev, (st.seq_first, st.seq_last)


def _decode(payload: bytes, meta: pq.FileMetaData | None, key: str) -> pa.Table:
    """`device.telemetry.read_batch(payload)`, faster for a batch in today's schema: the footer
    already parsed is reused, no thread pool is started for one small file, and no column is
    added. Anything else (an older agent's batch, an unreadable one) goes through read_batch
    itself, so its errors and upgrades are exactly read_batch's."""
    if meta is not None and not is_frame(payload):
        try:
            table = pq.ParquetFile(pa.BufferReader(payload), metadata=meta,
                                   pre_buffer=False).read(use_threads=False)
        except Exception:  # noqa: BLE001 - read_batch below says what is wrong
            table = None
        if table is not None and table.schema.equals(SCHEMA, check_metadata=False):
            validate_batch(table, key)
            return table
    return read_batch(payload, where=key)


def _footer(data: bytes) -> pq.FileMetaData | None:
    """The Parquet footer of these bytes; None when none can be read."""
    try:
        return pq.read_metadata(pa.BufferReader(data))
    except Exception:  # noqa: BLE001 - any garbage: nothing countable
        return None


def _footer_rows(data: bytes) -> int:
    """Rows an unreadable batch's Parquet footer still claims; 0 when nothing can be read."""
    meta = _footer(data)
    return meta.num_rows if meta is not None else 0


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


def _rules(
    verified: list[tuple[str, bytes, pa.Table, EnrolledDevice, tuple[int, int]]],
    window: tuple[int, int],
) -> dict[str, np.ndarray]:
    """Per-row copies of each batch's rules (who signed it, its seq range, the sane window)."""
    sizes = np.array([t.num_rows for _, _, t, _, _ in verified], dtype=np.int64)
    rep = lambda vals, dt=None: np.repeat(np.array(vals, dtype=dt), sizes)  # noqa: E731
    return {
        "batch": rep(range(len(verified)), np.int64),
        "device": rep([d.device_id for _, _, _, d, _ in verified], object),
        "cohort": rep([d.cohort for _, _, _, d, _ in verified], object),
        "seq_first": rep([s[0] for *_, s in verified], np.int64),
        "seq_last": rep([s[1] for *_, s in verified], np.int64),
        "ts_min_ms": np.full(int(sizes.sum()), window[0], np.int64),
        "ts_max_ms": np.full(int(sizes.sum()), window[1], np.int64),
    }


def _row_reason(code: int, dev: EnrolledDevice) -> str:
    return ROW_RULES[code - 1].format(device=dev.device_id, cohort=dev.cohort)


def _examples(table: pa.Table, column: str, mask: np.ndarray) -> str:
    vals = table.column(column).filter(pa.array(mask)).slice(0, 3).to_pylist()
    return f"{int(mask.sum())} unexpected, e.g. {str(vals)[:120]}"


class _Run:
    """Counters and outputs of one columnar ingestion run."""

    def __init__(self, store: ObjectStore, at: int) -> None:
        self.store, self.at = store, at
        self.n = dict.fromkeys(("received", "stored", "quarantined", "duplicates", "batches",
                                "deferred", "read"), 0)
        self.quarantined: list[tuple[str, str]] = []
        self.handled: dict[str, int] = {}
        self.partitions: list[str] = []
        self.moments: list[pl.DataFrame] = []
        self.sketches = SketchCounts()
        self.sample: list[pa.Table] = []

    def reject(self, key: str, data: bytes, exc: BaseException) -> None:
        rows = exc.rows if isinstance(exc, _Quarantine) else _payload_rows(data)
        reason = (str(exc) if isinstance(exc, _Quarantine) else f"{type(exc).__name__}: {exc}")
        _quarantine(self.store, key, data, reason[:2000])
        self.quarantined.append((key, reason[:2000]))
        self.n["received"] += rows
        self.n["quarantined"] += rows
        self.n["batches"] += 1
        self.handled[key] = self.at


def _fetch_verify(
    store: ObjectStore, key: str, devices: Mapping[str, EnrolledDevice], p: IngestParams
) -> tuple[str, bytes | None, object]:
    """(key, bytes or None when unreadable, verified tuple or the exception to quarantine)."""
    try:
        data = store.get(key)
    except StoreError:
        return key, None, None
    try:
        return key, data, _verified(data, key, devices, p)
    except Exception as exc:  # noqa: BLE001 - one batch, whatever its fault, never stops the run
        return key, data, exc


def _chunk(
    run: _Run,
    results: list[tuple[str, bytes | None, object]],
    ctx: dict[str, Any],
    seen: SeenLedger,
    part: str,
) -> None:
    """Validate (columnar), de-duplicate and store one chunk of fetched and verified batches
    (`_fetch_verify`'s results, in key order)."""
    store = run.store
    verified = []
    for key, data, res in results:  # in key order, as the row-wise path
        if data is None:
            run.n["deferred"] += 1
            continue
        run.n["read"] += 1
        if isinstance(res, BaseException):
            run.reject(key, data, res)
        else:
            table, dev, seqs = res  # type: ignore[misc]
            verified.append((key, data, table, dev, seqs))
    if not verified:
        return
    table = pa.concat_tables([t for _, _, t, _, _ in verified])
    rules = _rules(verified, ctx["window"])
    batch = rules["batch"]
    codes = row_codes(table, rules)
    good = codes == 0
    nb = len(verified)
    rows_per = np.bincount(batch, minlength=nb)
    bad_per = np.bincount(batch[~good], minlength=nb)
    failed: dict[int, str] = {}
    for i in np.flatnonzero((rows_per > 0) & (bad_per == rows_per)):
        reasons = sorted({_row_reason(int(c), verified[i][3]) for c in np.unique(codes[batch == i])})
        failed[int(i)] = f"all {rows_per[i]} rows: " + "; ".join(reasons)
    for text, mask in batch_checks(table, ctx["cohorts"], ctx["versions"]):
        hit = mask & good
        for i in np.unique(batch[hit]):
            if int(i) not in failed:
                failed[int(i)] = f"{text}: {_examples(table, text.split()[0], hit & (batch == i))}"
    for i, reason in sorted(failed.items()):
        key, data, t, _, _ = verified[i]
        run.reject(key, data, _Quarantine(reason, t.num_rows))
    ok_batch = np.ones(nb, dtype=bool)
    ok_batch[list(failed)] = False
    for i in np.flatnonzero(ok_batch & (bad_per > 0)):  # bad rows of otherwise good batches
        key, _, t, dev, _ = verified[i]
        sel = (batch == i) & ~good
        reasons = [_row_reason(int(c), dev) for c in codes[sel]]
        run.quarantined.append((key, _quarantine_rows(store, key, table.filter(pa.array(sel)), reasons)))
    keep = good & ok_batch[batch]
    fresh = np.zeros(len(keep), dtype=bool)
    fresh[keep] = seen.fresh(rules["device"][keep], table.column("seq").to_numpy()[keep], batch[keep])
    took = ok_batch[batch]
    run.n["received"] += int(took.sum())
    run.n["quarantined"] += int((took & ~good).sum())
    run.n["stored"] += int(fresh.sum())
    run.n["duplicates"] += int((keep & ~fresh).sum())
    for i in np.flatnonzero(ok_batch):
        run.handled[verified[i][0]] = run.at
    stored = table if fresh.all() else table.filter(pa.array(fresh))
    if stored.num_rows:
        run.partitions += _write_partitions(store, [stored], part)
        moments, sketches, tails = window_counts(stored, seen.tails().rename({"device": "device_id"}))
        seen.set_tails(tails.rename({"device_id": "device"}))
        run.moments.append(moments)
        run.sketches.merge(sketches)  # integer keys: bounded by the day's buckets, not chunks
        if len(run.moments) >= 8:
            run.moments = [merge(run.moments)]
        if ctx["sample"]:
            idx = np.random.default_rng(len(run.handled)).permutation(stored.num_rows)[: ctx["sample"]]
            run.sample.append(stored.take(pa.array(np.sort(idx))))


def raw_partitions(store: ObjectStore) -> dict[str, list[str]]:
    """Raw keys by the cohort of their prefix (`telemetry/raw/<cohort>/<device>/...`): the unit
    of ingestion that shares no ledger object with another."""
    out: dict[str, list[str]] = {}
    for k in store.list(RAW_PREFIX):
        if k.endswith(RAW_SUFFIXES):
            rel = _rel(k)
            out.setdefault(rel.split("/", 1)[0] if "/" in rel else "_", []).append(k)
    return out


def ingest_partition(
    store: ObjectStore,
    cohort: str,
    raw: list[str] | None = None,
    known_cohorts: list[str] | None = None,
    known_versions: list[str] | None = None,
    max_batches: int | None = None,
    *,
    devices: Mapping[str, EnrolledDevice] | None = None,
    params: IngestParams | None = None,
    now: datetime | None = None,
    chunk_batches: int = 500,
    sample_rows: int = 0,
    threads: int = 4,
) -> tuple[IngestReport, pa.Table | None]:
    """Ingest the new raw batches under one cohort's prefix (`raw`: its keys, listed here when
    None): the report and a bounded sample of the stored rows for the suite."""
    p = params or IngestParams()
    now = now or datetime.now(UTC)
    window = (
        int((now - timedelta(days=p.max_age_days)).timestamp() * 1000),
        int((now + timedelta(hours=p.max_future_hours)).timestamp() * 1000),
    )
    if raw is None:
        raw = raw_partitions(store).get(cohort, [])
    seen = SeenLedger.load(store, cohort, p.max_ranges_per_device, devices)
    handled_before = pa.array(sorted(seen.handled), pa.string())
    is_old = pc.is_in(pa.array(raw, pa.string()), handled_before).to_numpy(zero_copy_only=False)
    new = sorted(k for k, old in zip(raw, is_old, strict=True) if not old)[:max_batches]
    run = _Run(store, int(now.timestamp() * 1000))
    ctx = {"devices": devices or {}, "params": p, "window": window, "cohorts": known_cohorts,
           "versions": known_versions, "sample": sample_rows}
    tag = hashlib.sha256("\n".join(new).encode()).hexdigest()[:16]
    chunks = [new[c : c + chunk_batches] for c in range(0, len(new), chunk_batches)]
    with ThreadPoolExecutor(max_workers=threads) as pool:

        def fetch(keys: list[str]) -> list[Future[tuple[str, bytes | None, object]]]:
            return [pool.submit(_fetch_verify, store, k, ctx["devices"], p) for k in keys]

        # the next chunk is fetched and verified (threads) while this one is validated and
        # written: at most two chunks in memory
        pending = fetch(chunks[0]) if chunks else []
        for i in range(len(chunks)):
            results = [f.result() for f in pending]
            pending = fetch(chunks[i + 1]) if i + 1 < len(chunks) else []
            _chunk(run, results, ctx, seen, f"{tag}-{i:04d}")
            del results
    moments, sketches = merge(run.moments), run.sketches.frame()
    stats = write_stats(store, "moments", moments, tag) + write_stats(store, "sketches", sketches, tag)
    ledger_rows = 0
    if run.handled or seen.dirty:  # after the table: a crash re-ingests, never loses
        ledger_rows = seen.save(store, run.handled, tag, now)
    expired = seen.expire(store, now, p.ledger_retention_days) if run.handled else 0
    compacted = compact_before(store, now, seen, cohort) if run.handled else 0
    handled = len(run.handled)
    report = IngestReport(
        received_batches=handled,
        ingested_batches=handled - run.n["batches"],
        quarantined_batches=run.n["batches"],
        skipped_batches=int(is_old.sum()),
        received_rows=run.n["received"],
        stored_rows=run.n["stored"],
        quarantined_rows=run.n["quarantined"],
        duplicate_rows=run.n["duplicates"],
        partitions=tuple(sorted(set(run.partitions))),
        quarantined=tuple(run.quarantined),
        deferred_batches=run.n["deferred"],
        compacted_batches=expired,
        ledger_rows=ledger_rows,
        read_batches=run.n["read"],
        stats_parts=len(stats),
        compacted_files=compacted,
    )
    return report, (pa.concat_tables(run.sample) if run.sample else None)


def combine(reports: list[IngestReport], samples: list[pa.Table | None],
            suite: Callable[[], TelemetrySuite] | None, rows: int) -> IngestReport:
    """One report from the partitions' reports; the Great Expectations suite (when given) on a
    bounded sample of the rows they stored."""
    total: dict[str, Any] = {}
    for rep in reports:
        for k, v in asdict(rep).items():
            total[k] = total.get(k, () if isinstance(v, tuple) else 0) + v
    out = IngestReport(**total) if reports else IngestReport(0, 0, 0, 0, 0, 0, 0, 0)
    kept = [t for t in samples if t is not None and t.num_rows]
    if suite is None or not kept or rows <= 0:
        return out
    t = pa.concat_tables(kept)
    t = t.take(pa.array(np.sort(np.random.default_rng(0).permutation(t.num_rows)[:rows])))
    res = suite().validate(t.to_pandas())
    return replace(out, suite_rows=t.num_rows, suite_failures=res.failures)


def ingest(
    store: ObjectStore,
    known_cohorts: list[str] | None = None,
    known_versions: list[str] | None = None,
    max_batches: int | None = None,
    *,
    devices: Mapping[str, EnrolledDevice] | None = None,
    params: IngestParams | None = None,
    now: datetime | None = None,
    chunk_batches: int = 500,
    suite_sample_rows: int = 1000,
    threads: int = 4,
) -> IngestReport:
    """Ingest every raw batch not yet handled (at most `max_batches`), columnar and incremental,
    one cohort prefix after the other (flows.monitoring runs them as parallel tasks): batches
    are verified one by one (their signatures), then validated, de-duplicated (an anti-join
    against the partitioned ledger, monitoring.seen) and stored `chunk_batches` at a time, with
    the window statistics of what was stored (monitoring.stats). The Great Expectations suite
    runs once on a sample of the stored rows (`suite_sample_rows`, 0: never) and reports; the
    vectorised checks decide. `devices`: the enrolment registry; a batch from a device not in
    it is quarantined, so None quarantines everything."""
    now = now or datetime.now(UTC)
    reports, samples = [], []
    left = max_batches
    for cohort, keys in sorted(raw_partitions(store).items()):
        if left is not None and left <= 0:
            break
        rep, sample = ingest_partition(
            store, cohort, keys, known_cohorts, known_versions, left, devices=devices,
            params=params, now=now, chunk_batches=chunk_batches, sample_rows=suite_sample_rows,
            threads=threads)
        reports.append(rep)
        samples.append(sample)
        left = None if left is None else left - rep.received_batches - rep.deferred_batches
    return combine(reports, samples, lambda: TelemetrySuite(known_cohorts, known_versions),
                   suite_sample_rows)

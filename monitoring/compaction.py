"""Daily compaction: each ingest run adds one small Parquet file per partition it touched (and
one statistics file per day and cohort); once a day is over they are merged into one file per
partition. Every row is kept (the table's duplicates from a crashed run included: readers drop
them by (device, seq)); the merged file is written before the small ones are deleted, so a crash
leaves both copies, never neither. Table files stream through a ParquetWriter one input at a
time, so memory is bounded by the largest input file, not the day.
"""

from __future__ import annotations

import hashlib
import io
import tempfile
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from device.store import ObjectStore
from device.telemetry import SCHEMA
from monitoring.stats import STATS_PREFIX, merge

if TYPE_CHECKING:
    from monitoring.seen import SeenLedger

TABLE_PREFIX = "telemetry/table/"
COMPACTED = "part-compacted-"


def _groups(keys: list[str], before: str) -> dict[str, list[str]]:
    """Partition directory -> its small (not yet compacted) Parquet files, for directories of
    days before `before`. A compacted file is never rewritten: late rows for an old day make
    one more compacted file beside it, so they cost what they are, not what the day is."""
    out: dict[str, list[str]] = {}
    for key in keys:
        if not key.endswith(".parquet") or key.rpartition("/")[2].startswith(COMPACTED):
            continue
        folder, _, _ = key.rpartition("/")
        day = next((p[5:] for p in folder.split("/") if p.startswith("date=")), None)
        if day is not None and day < before:
            out.setdefault(folder, []).append(key)
    return {f: sorted(ks) for f, ks in out.items() if len(ks) > 1}


def _name(files: list[str]) -> str:
    return COMPACTED + hashlib.sha256("\n".join(files).encode()).hexdigest()[:16] + ".parquet"


# Rows per compacted file: a reader (monitoring.cohort_windows) holds one file's bytes at a time,
# so a day of a large fleet becomes several files of this size, never one of the whole day.
MAX_FILE_ROWS = 125_000
# Dictionary pages only for the strings (a few distinct values per file): a float column's
# dictionary is built and then dropped by the writer, a third of the write time for larger files.
WRITE_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "use_dictionary": [f.name for f in SCHEMA if pa.types.is_string(f.type)],
}


def compact_table_partition(
    store: ObjectStore, folder: str, files: list[str], max_rows: int = MAX_FILE_ROWS
) -> str:
    """Stream every file of one table partition, in order, into files of at most `max_rows`
    rows: one, `part-compacted-<hash>.parquet`, unless the partition is larger (then
    `...-001.parquet` and on). Returns the first new key."""
    name = _name(files).removesuffix(".parquet")
    keys: list[str] = []
    with tempfile.TemporaryDirectory(prefix="edgeops-compact-") as tmp:
        path = Path(tmp) / "part.parquet"
        writer: pq.ParquetWriter | None = None
        rows = 0

        def close() -> None:
            nonlocal writer
            if writer is not None:
                writer.close()
                key = f"{folder}/{name}{f'-{len(keys):03d}' if keys else ''}.parquet"
                store.upload_file(key, path)
                keys.append(key)
                writer = None

        try:
            for f in files:
                t = pq.read_table(io.BytesIO(store.get(f)))
                start = 0
                while start < t.num_rows or (writer is None and not keys):
                    if writer is None:
                        writer, rows = pq.ParquetWriter(path, t.schema, **WRITE_OPTIONS), 0
                    take = min(t.num_rows - start, max_rows - rows)
                    writer.write_table(t.slice(start, take), row_group_size=256_000)
                    start, rows = start + take, rows + take
                    if rows >= max_rows:
                        close()
                    if t.num_rows == 0:
                        break
        finally:
            close()
    for f in files:
        if f not in keys:
            store.delete(f)
    return keys[0]


def compact_stats_partition(store: ObjectStore, folder: str, files: list[str]) -> str:
    """Merge (sum) the statistics files of one (kind, date, cohort) into one."""
    key = f"{folder}/{_name(files)}"
    merged = merge(pl.read_parquet(io.BytesIO(store.get(f))) for f in files)
    buf = io.BytesIO()
    merged.write_parquet(buf, compression="zstd")
    store.put(key, buf.getvalue())
    for f in files:
        if f != key:
            store.delete(f)
    return key


def compact_before(
    store: ObjectStore, now: datetime, seen: SeenLedger | None = None, cohort: str | None = None
) -> int:
    """Compact every partition (of `cohort`, or all) of days before `now`'s date that has more
    than one file; the number of files merged."""
    today = now.strftime("%Y-%m-%d")
    merged = 0

    def mine(keys: list[str]) -> list[str]:
        return keys if cohort is None else [k for k in keys if f"/cohort={cohort}/" in k]

    for folder, files in _groups(mine(store.list(TABLE_PREFIX)), today).items():
        compact_table_partition(store, folder, files)
        merged += len(files)
    for folder, files in _groups(mine(store.list(STATS_PREFIX)), today).items():
        compact_stats_partition(store, folder, files)
        merged += len(files)
    if seen is not None:
        for day in [d for d in seen.manifests if d < today]:
            merged += seen.compact_manifests(store, day)
    return merged

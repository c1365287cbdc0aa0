"""The windows of one cohort, planned from window statistics and judged on bounded samples.

A monitoring run reads only the partitions of days that changed since it last settled them (a
day is settled once none of its windows was left open and its statistics files, by name, stay
the same; a late batch adds a file and unsettles it): the merged statistics of those days say how many rows each window of each scope (model version,
bundle) has and where the newest event is, so windows are planned (monitoring.windows) without
reading a row. Only the windows to judge are then read, streamed from their partitions with a
bottom-k sample per window (the `max_rows` rows with the smallest hash of (device, seq): uniform,
reproducible, and the same whichever files the rows sit in). Row-based tests (drift, CBPE) run on
that sample; counts and per-device segment tests use every row through the statistics.
Labels that arrive later as `label` events (any later partition of the cohort) are joined
onto the sampled inference they name, so the window's label-corrected accuracy sees them.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from device.store import ObjectStore
from edgeops.errors import MonitoringError
from monitoring.compaction import TABLE_PREFIX
from monitoring.stats import SLOT_MS, STATS_PREFIX, read_stats
from monitoring.windows import WindowPlan, plan_counts

_SKIP_COLUMNS = ("thumb",)
# rows per record batch read from a table file: the sample keeps at most max_rows per window, so
# the batch is the transient peak (32k rows: ~140 MB less than 256k at 10,000 devices, ~4 CPU s more)
_READ_ROWS = 32_768


@dataclass(frozen=True)
class ScopePlans:
    cohort: str
    model_version: str
    bundle_id: str
    plans: tuple[WindowPlan, ...]

    @property
    def scope(self) -> str:
        return f"{self.cohort}/{self.model_version}/{self.bundle_id[:12]}"


def stats_cohorts(store: ObjectStore) -> list[str]:
    """Cohorts with window statistics (from partition names: no file is read)."""
    out = set()
    for key in store.list(f"{STATS_PREFIX}moments/"):
        for part in key.split("/"):
            if part.startswith("cohort="):
                out.add(part[len("cohort="):])
    return sorted(out)


SETTLED_KEY = "monitoring/settled.json"


def stats_dates(store: ObjectStore, cohort: str) -> dict[str, str]:
    """date -> signature (a hash of its statistics file names) for one cohort: listing only."""
    files: dict[str, list[str]] = {}
    for key in store.list(f"{STATS_PREFIX}moments/"):
        if f"/cohort={cohort}/" in key:
            date = next(p[5:] for p in key.split("/") if p.startswith("date="))
            files.setdefault(date, []).append(key)
    return {d: hashlib.sha256("\n".join(sorted(k)).encode()).hexdigest()[:16]
            for d, k in files.items()}


def load_settled(store: ObjectStore) -> dict[str, dict[str, str]]:
    return json.loads(store.get(SETTLED_KEY)) if store.exists(SETTLED_KEY) else {}


def save_settled(store: ObjectStore, cohort: str, settled: dict[str, str]) -> None:
    """Remember which days of this cohort are settled (last writer wins: at worst a day is
    read again)."""
    doc = load_settled(store)
    doc[cohort] = settled
    store.put(SETTLED_KEY, json.dumps(doc, indent=1, sort_keys=True).encode())


def settle(plans: list[ScopePlans], read: dict[str, str], before: dict[str, str]) -> dict[str, str]:
    """The settled days after this run: those read and without an open window, plus the
    settled days not read."""
    open_days = {p.start.strftime("%Y-%m-%d") for sp in plans for p in sp.plans
                 if p.status == "open"}
    return {**before, **{d: sig for d, sig in read.items() if d not in open_days}}


def plan_cohort(
    store: ObjectStore,
    cohort: str,
    hours: float,
    now: datetime,
    lateness: timedelta,
    ledger: dict[str, dict[str, dict[str, int]]],
    reopen_share: float,
    dates: Iterable[str],
) -> tuple[list[ScopePlans], pl.DataFrame, pd.Timestamp | None]:
    """Plans per scope from the statistics of these days, the merged per-device moments (for
    segment tests) and the watermark; no table row is read."""
    if (hours * 3_600_000) % SLOT_MS:
        raise MonitoringError(f"window_hours {hours} is not a whole number of hours "
                              "(the statistics slot)", where="params.monitor.window_hours")
    moments = read_stats(store, "moments", cohort, dates)
    if moments.is_empty():
        return [], moments, None
    newest = pd.Timestamp(int(moments["ts_max"].max()), unit="ms", tz="UTC")
    mark = max(newest, pd.Timestamp(now)) - lateness
    length_ms = int(hours * 3_600_000)
    moments = moments.with_columns(start=(pl.col("slot") // length_ms) * length_ms)
    counts = moments.group_by(["model_version", "bundle_id", "start"]).agg(pl.col("inferences").sum())
    out = []
    for (version, bundle), part in sorted(counts.group_by(["model_version", "bundle_id"]),
                                          key=lambda g: (str(g[0][0]), str(g[0][1]))):
        c = {pd.Timestamp(int(s), unit="ms", tz="UTC"): int(n)
             for s, n in zip(part["start"], part["inferences"], strict=True) if n > 0}
        scope = f"{cohort}/{version}/{str(bundle)[:12]}"
        plans = plan_counts(c, hours, mark, ledger.get(scope, {}), reopen_share)
        if plans:
            out.append(ScopePlans(cohort, str(version), str(bundle), tuple(plans)))
    return out, moments, mark


def window_moments(moments: pl.DataFrame, version: str, bundle: str, start: pd.Timestamp) -> pd.DataFrame:
    """Per-device moments of one window (for monitoring.segments.flag_segments_from_stats)."""
    ms = int(start.timestamp() * 1000)
    m = moments.filter((pl.col("model_version") == version) & (pl.col("bundle_id") == bundle)
                       & (pl.col("start") == ms))
    return m.group_by("device_id").agg(pl.col("inferences", "repeated", "conf_sum",
                                               "conf_sumsq").sum()).to_pandas()


def _table_keys(store: ObjectStore, cohort: str, dates: Iterable[str], versions: set[str]) -> list[str]:
    """Table files of this cohort, these dates and model versions: partition pruning by path."""
    out = []
    for date in sorted(set(dates)):
        for key in store.list(f"{TABLE_PREFIX}date={date}/cohort={cohort}/"):
            mv = next((p[len("model_version="):] for p in key.split("/")
                       if p.startswith("model_version=")), None)
            if key.endswith(".parquet") and mv in versions:
                out.append(key)
    return out


def sample_windows(
    store: ObjectStore,
    cohort: str,
    wanted: dict[tuple[str, str], set[pd.Timestamp]],
    hours: float,
    max_rows: int,
    label_dates: Iterable[str] | None = None,
) -> dict[tuple[str, str, pd.Timestamp], pd.DataFrame]:
    """Inference rows of the wanted windows ((model_version, bundle_id) -> starts), at most
    `max_rows` per window by bottom-k on a hash of (device, seq); duplicates dropped. Labels
    that arrived later as `label` events are joined onto their sampled inference
    (`_late_labels`), read from the cohort's table partitions of `label_dates` (the dates its
    window statistics name, `stats_dates`: a day holding only label events has statistics
    rows too) from the first wanted window's date on."""
    if not wanted:
        return {}
    length_ms = int(hours * 3_600_000)
    starts = {(v, b, int(s.timestamp() * 1000)) for (v, b), ss in wanted.items() for s in ss}
    dates = {(s + pd.Timedelta(minutes=m)).strftime("%Y-%m-%d") for ss in wanted.values()
             for s in ss for m in (0, int(hours * 60) - 1)}
    want = pl.DataFrame({"model_version": [v for v, _, _ in starts], "bundle_id": [b for _, b, _ in starts],
                         "start": [s for _, _, s in starts]},
                        schema={"model_version": pl.String, "bundle_id": pl.String, "start": pl.Int64})
    keep: pl.DataFrame | None = None
    for key in _table_keys(store, cohort, dates, {v for v, _ in wanted}):
        pf = pq.ParquetFile(io.BytesIO(store.get(key)))
        cols = [c for c in pf.schema_arrow.names if c not in _SKIP_COLUMNS]
        for batch in pf.iter_batches(batch_size=_READ_ROWS, columns=cols):
            df = pl.from_arrow(pa.Table.from_batches([batch]))
            assert isinstance(df, pl.DataFrame)
            df = df.filter((pl.col("event") == "inference") & pl.col("top1").is_not_null())
            df = df.with_columns(start=(pl.col("ts").dt.epoch("ms") // length_ms) * length_ms,
                                 _k=pl.struct("device_id", "seq").hash(seed=7))
            df = df.join(want, on=["model_version", "bundle_id", "start"], how="semi")
            keep = df if keep is None else pl.concat([keep, df], how="vertical_relaxed")
            keep = _bottom_k(keep, max_rows)
    out: dict[tuple[str, str, pd.Timestamp], pd.DataFrame] = {}
    if keep is None:
        return out
    keep = keep.unique(["device_id", "seq"], keep="first")
    first = min(dates)
    later = [d for d in (stats_dates(store, cohort) if label_dates is None else label_dates) if d >= first]
    keep = _late_labels(store, keep, _table_keys(store, cohort, later, {v for v, _ in wanted}))
    for (v, b, s), part in keep.group_by(["model_version", "bundle_id", "start"]):
        part = part.sort(["ts", "device_id", "seq"]).drop("start", "_k")
        pdf = part.to_arrow().to_pandas(types_mapper={pa.int32(): pd.Int32Dtype()}.get)
        pdf["probs"] = [None if p is None else p.astype("float32") for p in pdf["probs"]]
        out[(str(v), str(b), pd.Timestamp(int(s), unit="ms", tz="UTC"))] = pdf
    return out


_LABEL_COLUMNS = ("device_id", "inference_id", "label", "ts", "seq")


def _late_labels(store: ObjectStore, keep: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """Labels of `label` events (in any later partition) written onto the sampled inference they
    name by (device_id, inference_id), as monitoring.feedback.join_labels does for whole
    tables: the last event (by ts, then seq) wins over the row's own label. Events are streamed
    in narrow column batches and only those of a sampled inference kept (at most one per
    sampled row), so a label of an unsampled inference is never counted and no event becomes
    a row: the inference's window decides where its label counts."""
    if "inference_id" not in keep.columns:
        return keep
    sampled = (keep.filter(pl.col("inference_id").is_not_null())
               .select("device_id", pl.col("inference_id").cast(pl.Int64)).unique())
    if sampled.is_empty():
        return keep
    found: pl.DataFrame | None = None
    for key in keys:
        pf = pq.ParquetFile(io.BytesIO(store.get(key)))
        if not {*_LABEL_COLUMNS, "event"} <= set(pf.schema_arrow.names):
            continue  # an older agent's rows: no inference_id, so no label events
        for batch in pf.iter_batches(batch_size=_READ_ROWS, columns=["event", *_LABEL_COLUMNS]):
            df = pl.from_arrow(pa.Table.from_batches([batch]))
            assert isinstance(df, pl.DataFrame)
            df = (df.filter((pl.col("event") == "label") & pl.col("inference_id").is_not_null()
                            & pl.col("label").is_not_null())
                  .select(pl.col("device_id"), pl.col("inference_id").cast(pl.Int64),
                          pl.col("label").cast(pl.Int32), "ts", "seq")
                  .join(sampled, on=["device_id", "inference_id"], how="semi"))
            if df.is_empty():
                continue
            found = df if found is None else pl.concat([found, df], how="vertical_relaxed")
            found = (found.sort(["ts", "seq"])
                     .unique(["device_id", "inference_id"], keep="last", maintain_order=True))
    if found is None:
        return keep
    late = found.select("device_id", "inference_id", _late=pl.col("label"))
    dtype = keep.schema["label"]
    return (keep.with_columns(_iid=pl.col("inference_id").cast(pl.Int64))
            .join(late, left_on=["device_id", "_iid"], right_on=["device_id", "inference_id"],
                  how="left")
            .with_columns(label=pl.coalesce("_late", "label").cast(dtype))
            .drop("_iid", "_late"))


def _bottom_k(df: pl.DataFrame, k: int) -> pl.DataFrame:
    """At most k rows per window: those with the smallest hash (ties kept together)."""
    if df.height <= k:
        return df
    ranked = df.with_columns(_r=pl.col("_k").rank("dense").over(["model_version", "bundle_id", "start"]))
    return ranked.filter(pl.col("_r") <= k).drop("_r")

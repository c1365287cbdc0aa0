"""Mergeable window statistics, computed once at ingest from the rows a run stores.

Slots are one hour (epoch-aligned, as monitoring.windows floors windows), so any window of whole
hours is a sum of slots. Everything here merges by addition, so statistics of a window merged
from many ingest runs (or partitions, or Dask workers) equal those of the window's rows at once:

- per device segment (slot, cohort, model_version, bundle_id, device_id): rows, inferences
  (with a prediction), labelled rows (and those with a thumbnail, what a retrain learns from),
  the newest event time (merged by max), sum and sum of squares of confidence, sum of latency,
  repeated frames (an inference whose features equal the device's previous inference: a
  frozen camera);
- per scope (slot, cohort, model_version, bundle_id): quantile sketches of every feature, the
  confidence and the latency, and the prediction histogram (metric `top1`, bucket = class).

The sketch is a log-bucketed histogram with relative accuracy `GAMMA - 1` (the DDSketch idea,
Masson et al., VLDB 2019): written here in a few vectorised lines because its buckets are fixed,
so merging is a group-by sum, and no sketch library in the lock merges inside Parquet.
"""

from __future__ import annotations

import io
from collections.abc import Iterable

import numpy as np
import polars as pl
import pyarrow as pa

from device.store import ObjectStore
from device.telemetry import FEATURE_COLUMNS

STATS_PREFIX = "telemetry/stats/"
SLOT_MS = 3_600_000
GAMMA = 1.02
_LOG_GAMMA = float(np.log(GAMMA))
_OFFSET = 2000  # buckets for |x| down to GAMMA**-2000 ~ 6e-18; smaller is bucket 0
SCOPE = ("slot", "cohort", "model_version", "bundle_id")
SEGMENT = (*SCOPE, "device_id")
MOMENTS = ("rows", "inferences", "labelled", "conf_sum", "conf_sumsq", "latency_sum",
           "latency_rows", "repeated", "labelled_frames", "ts_max")  # ts_max merges by max, the rest by sum
SKETCHED = (*FEATURE_COLUMNS, "confidence", "latency_ms")
_MULT = np.random.default_rng(20261202).integers(1, 2**62, len(FEATURE_COLUMNS), dtype=np.uint64) | 1


def frame_hash(features: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each float32 feature row (its bit pattern): equal rows, equal hashes."""
    bits = np.ascontiguousarray(features, dtype=np.float32).view(np.uint32).astype(np.uint64)
    with np.errstate(over="ignore"):
        return (bits * _MULT).sum(axis=1, dtype=np.uint64) ^ (bits[:, 0] << np.uint64(17))


def bucket(x: np.ndarray) -> np.ndarray:
    """Signed log bucket of each finite value (0 for |x| below the smallest bucket)."""
    a = np.abs(x.astype(np.float64))
    with np.errstate(divide="ignore"):
        k = np.ceil(np.log(a) / _LOG_GAMMA) + _OFFSET
    k = np.where(a > 0, np.maximum(k, 0), 0).astype(np.int32)
    return np.where(x < 0, -k, k)


def bucket_value(b: np.ndarray) -> np.ndarray:
    """A representative value of each bucket (the geometric middle), inverse of `bucket`."""
    b = np.asarray(b, np.int64)
    mag = np.where(b == 0, 0.0, GAMMA ** (np.abs(b) - _OFFSET - 0.5))
    return np.sign(b) * mag


def _inference_frames(t: pl.DataFrame, tails: pl.DataFrame | None) -> pl.DataFrame:
    """Inference rows with features, in (device, seq) order, with `repeated` against the
    device's previous inference (from `tails` for the first row of a device)."""
    inf = t.filter((pl.col("event") == "inference") & pl.col(FEATURE_COLUMNS[0]).is_not_null())
    # hash first, then sort only the narrow columns used below (not every feature and list)
    h = frame_hash(inf.select(FEATURE_COLUMNS).to_numpy()) if inf.height else np.zeros(0, np.uint64)
    inf = inf.select(*SEGMENT, "seq").with_columns(_h=pl.Series(h, dtype=pl.UInt64))
    inf = inf.sort(["device_id", "seq"], maintain_order=True)
    prev = pl.col("_h").shift(1).over("device_id")
    if tails is not None and tails.height:
        inf = inf.join(tails.rename({"last_hash": "_th", "last_seq": "_ts"}), on="device_id",
                       how="left")
        prev = pl.when(pl.col("seq") == pl.col("seq").min().over("device_id")).then(
            pl.when(pl.col("_ts") < pl.col("seq")).then(pl.col("_th"))).otherwise(prev)
    return inf.with_columns(repeated=(pl.col("_h") == prev).fill_null(False))


_USED = ("ts", "cohort", "model_version", "bundle_id", "device_id", "seq", "event", "top1",
         "label", "thumb", "confidence", "latency_ms", *FEATURE_COLUMNS)


def _count(keys: np.ndarray, bound: int) -> tuple[np.ndarray, np.ndarray]:
    """`np.unique(keys, return_counts=True)`; by counting into `bound` bins (no sort) when the
    keys lie in [0, bound) and the bins are not much more than the keys."""
    if len(keys) and bound <= max(4 * len(keys), 1 << 20) and keys.min() >= 0 and keys.max() < bound:
        counts = np.bincount(keys, minlength=bound)
        present = np.flatnonzero(counts)
        return present.astype(keys.dtype), counts[present]
    return np.unique(keys, return_counts=True)


_METRICS = (*SKETCHED, "top1")
_SPAN = 16384  # buckets per (scope, metric): signed buckets of values the suite lets through


def window_stats(
    table: pa.Table | pl.DataFrame, tails: pl.DataFrame | None = None
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(moments per device segment, sketches per scope, new device tails) of these rows.
    `tails`: (device_id, last_seq, last_hash) of inferences stored before."""
    moments, counts, new_tails = window_counts(table, tails)
    return moments, counts.frame(), new_tails


def window_counts(
    table: pa.Table | pl.DataFrame, tails: pl.DataFrame | None = None
) -> tuple[pl.DataFrame, SketchCounts, pl.DataFrame]:
    """`window_stats` with the sketches as SketchCounts (integer keys: cheap to merge)."""
    if not isinstance(table, pl.DataFrame):  # only the columns read here cross over
        table = pl.from_arrow(table.select([c for c in _USED if c in table.column_names]))
    t = table
    assert isinstance(t, pl.DataFrame)
    t = t.with_columns(slot=(pl.col("ts").dt.epoch("ms") // SLOT_MS) * SLOT_MS)
    inf = _inference_frames(t, tails)
    lat_ok = pl.col("latency_ms").is_not_null() & pl.col("latency_ms").is_finite()
    is_inf = (pl.col("event") == "inference") & pl.col("top1").is_not_null()
    rows = t.group_by(list(SEGMENT)).agg(
        rows=pl.len(),
        inferences=is_inf.sum(),
        ts_max=pl.col("ts").dt.epoch("ms").max(),
        labelled=pl.col("label").is_not_null().sum(),
        labelled_frames=(pl.col("label").is_not_null() & pl.col("thumb").is_not_null()).sum(),
        conf_sum=pl.col("confidence").cast(pl.Float64).fill_null(0.0).sum(),
        conf_sumsq=(pl.col("confidence").cast(pl.Float64) ** 2).fill_null(0.0).sum(),
        latency_sum=pl.when(lat_ok).then(pl.col("latency_ms").cast(pl.Float64)).sum(),
        latency_rows=lat_ok.sum(),
    )
    per_inf = inf.group_by(list(SEGMENT)).agg(repeated=pl.col("repeated").sum())
    moments = rows.join(per_inf, on=list(SEGMENT), how="left").with_columns(
        pl.col("repeated").fill_null(0)
    ).select(*SEGMENT, *[pl.col(m).cast(pl.Float64 if "sum" in m else pl.Int64) for m in MOMENTS])
    # per column: buckets counted with numpy against a small scope id (a long table of every
    # value with its scope strings was the largest allocation of an ingestion run)
    scopes = t.select(SCOPE).unique(maintain_order=True)
    sid = t.select(SCOPE).join(scopes.with_row_index("sid"), on=list(SCOPE), how="left",
                               maintain_order="left")["sid"].to_numpy().astype(np.int64)
    counts = SketchCounts()
    for m, col in enumerate(_METRICS):
        v = t.get_column(col).cast(pl.Float64).to_numpy()
        ok = np.isfinite(v)
        b = bucket(v[ok]) if col != "top1" else v[ok].astype(np.int32)
        keys, n = _count(sid[ok] * _SPAN + (b.astype(np.int64) + _SPAN // 2), len(scopes) * _SPAN)
        counts.add(scopes, m, keys, n)
    new_tails = inf.group_by("device_id").agg(
        last_seq=pl.col("seq").max(), last_hash=pl.col("_h").sort_by("seq").last())
    return moments, counts, new_tails


class SketchCounts:
    """Sketch counts under integer keys ((scope id * metrics + metric) * span + bucket), scopes
    numbered as they come: merging many ingest chunks is adding integer arrays, not grouping
    frames of strings (that was an ingestion run's largest transient allocation)."""

    def __init__(self) -> None:
        self.scopes: dict[tuple[object, ...], int] = {}
        self.schema: dict[str, pl.DataType] | None = None
        self.keys: list[np.ndarray] = []
        self.counts: list[np.ndarray] = []
        self.pending = 0

    def add(self, scopes: pl.DataFrame, metric: int, keys: np.ndarray, counts: np.ndarray) -> None:
        """Counts of one metric; `keys` are local scope row in `scopes` * _SPAN + bucket offset."""
        if self.schema is None:
            self.schema = dict(scopes.schema)
        ids = np.array([self.scopes.setdefault(r, len(self.scopes)) for r in scopes.iter_rows()],
                       dtype=np.int64)
        local = keys // _SPAN
        self.keys.append((ids[local] * len(_METRICS) + metric) * _SPAN + keys % _SPAN)
        self.counts.append(np.asarray(counts, np.int64))
        self.pending += len(keys)

    def merge(self, other: SketchCounts) -> None:
        """Add another's counts (its scopes renumbered into these)."""
        if other.schema is None or not other._compact():
            return
        if self.schema is None:
            self.schema = other.schema
        per = len(_METRICS) * _SPAN
        ids = np.array([self.scopes.setdefault(r, len(self.scopes)) for r in other.scopes],
                       dtype=np.int64)  # other's scopes in the order of their ids
        k = other.keys[0]
        self.keys.append(ids[k // per] * per + k % per)
        self.counts.append(other.counts[0])
        self.pending += len(k)
        if self.pending > 4_000_000:  # bounded by the distinct keys, not by the chunks added
            self._compact()

    def _compact(self) -> list[np.ndarray]:
        if len(self.keys) > 1:
            keys, inverse = np.unique(np.concatenate(self.keys), return_inverse=True)
            self.counts = [np.bincount(inverse, weights=np.concatenate(self.counts),
                                       minlength=len(keys)).astype(np.int64)]
            self.keys, self.pending = [keys], len(keys)
        return self.keys

    def frame(self) -> pl.DataFrame:
        """The sketch rows: SCOPE columns, metric, bucket, count (as merge() would give)."""
        keys = self._compact()
        if not keys or self.schema is None:
            return pl.DataFrame()
        k, c = keys[0], self.counts[0]
        per = len(_METRICS) * _SPAN
        scopes = pl.DataFrame(list(self.scopes), schema=self.schema, orient="row").with_row_index("sid")
        out = pl.DataFrame({"sid": (k // per).astype(np.uint32),
                            "metric": np.array(_METRICS, dtype=object)[(k % per) // _SPAN],
                            "bucket": (k % _SPAN - _SPAN // 2).astype(np.int32),
                            "count": c.astype(np.int64)},
                           schema={"sid": pl.UInt32, "metric": pl.String, "bucket": pl.Int32,
                                   "count": pl.Int64})
        return out.join(scopes, on="sid").select(*SCOPE, "metric", "bucket", "count")


def canonical(df: pl.DataFrame) -> pl.DataFrame:
    """Rows in key order (statistics are sets of rows: order carries nothing; for comparing)."""
    keys = [c for c in (*SEGMENT, "metric", "bucket") if c in df.columns]
    return df.sort(keys)


def merge(parts: Iterable[pl.DataFrame]) -> pl.DataFrame:
    """Sum partial statistics (moments or sketches) over their keys."""
    parts = [p for p in parts if p.height]
    if not parts:
        return pl.DataFrame()
    df = pl.concat(parts, how="vertical_relaxed")
    keys = [c for c in df.columns if c in (*SEGMENT, "metric", "bucket")]
    aggs = [pl.col(c).max() if c == "ts_max" else pl.col(c).sum()
            for c in df.columns if c not in keys]
    return df.group_by(keys).agg(aggs)


def stats_key(kind: str, date: str, cohort: str, run: str) -> str:
    return f"{STATS_PREFIX}{kind}/date={date}/cohort={cohort}/part-{run}.parquet"


def write_stats(store: ObjectStore, kind: str, df: pl.DataFrame, run: str) -> list[str]:
    """One Parquet per (date, cohort) under telemetry/stats/<kind>/ (hive layout)."""
    if df.is_empty():
        return []
    keys = []
    df = df.with_columns(_d=pl.from_epoch("slot", time_unit="ms").dt.strftime("%Y-%m-%d"))
    for (date, cohort), part in df.group_by(["_d", "cohort"], maintain_order=True):
        buf = io.BytesIO()
        part.drop("_d").write_parquet(buf, compression="zstd")
        key = stats_key(kind, str(date), str(cohort), run)
        store.put(key, buf.getvalue())
        keys.append(key)
    return keys


def read_stats(
    store: ObjectStore, kind: str, cohort: str | None = None, dates: Iterable[str] | None = None,
    columns: list[str] | None = None,
) -> pl.DataFrame:
    """Merged statistics of the partitions asked for (only those partitions are read)."""
    want = set(dates) if dates is not None else None
    parts = []
    for key in store.list(f"{STATS_PREFIX}{kind}/"):
        fields = dict(p.split("=", 1) for p in key.split("/") if "=" in p)
        if cohort is not None and fields.get("cohort") != cohort:
            continue
        if want is not None and fields.get("date") not in want:
            continue
        parts.append(pl.read_parquet(io.BytesIO(store.get(key)), columns=columns))
    return merge(parts)


def quantiles(sketches: pl.DataFrame, metric: str, qs: Iterable[float]) -> list[float]:
    """Approximate quantiles of `metric` from merged sketch rows (relative error <= GAMMA - 1)."""
    s = sketches.filter(pl.col("metric") == metric).group_by("bucket").agg(pl.col("count").sum())
    if s.is_empty():
        return [float("nan") for _ in qs]
    b = s.get_column("bucket").to_numpy()
    order = np.argsort(bucket_value(b))
    vals, counts = bucket_value(b)[order], s.get_column("count").to_numpy()[order]
    cum = np.cumsum(counts)
    return [float(vals[min(np.searchsorted(cum, q * cum[-1], side="left"), len(vals) - 1)])
            for q in qs]

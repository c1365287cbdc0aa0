"""The partitioned ingestion ledger: which raw batches were handled (per-day manifests) and which
(verified device, seq) were delivered (coalesced ranges in hash buckets), read and written per
part so a run costs what its new data costs, not what history costs.

The ledger is partitioned by the cohort of the raw prefix (`telemetry/raw/<cohort>/...`; a
verified batch always lies under its own device's cohort), so ingestion tasks over cohorts never
touch the same object:

- `telemetry/ledger/cohort=C/seqs/bucket=NN.parquet`: (device, lo, hi, last_seq, last_hash) rows, the
  ranges of sequence numbers each device delivered (a healthy device is one range) and the hash
  of its newest inference frame (the frozen-camera count continues across runs). Each bucket is
  written by compare-and-swap: two ingestion runs never both win.
- `telemetry/ledger/cohort=C/batches/date=D/part-R.parquet`: the raw keys run R handled on day D. Past
  `retention_days` the day's raw objects are deleted with its manifests, so the listing of
  `telemetry/raw/` stays bounded by retention, not by history.

Duplicates are found with an as-of anti-join (Polars `join_asof` by device): a row is seen when
the last range starting at or below its seq reaches it. The Parquet ledger of the row-wise path
(monitoring.ledger) is read once and migrated.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from device.store import ObjectStore
from edgeops.errors import ConflictError, MonitoringError
from monitoring.ledger import LEDGER_KEY, LEGACY_LEDGER_KEY, Ledger

SEEN_PREFIX = "telemetry/ledger/"
BUCKETS = 16
_RANGES = {"device": pl.String, "lo": pl.Int64, "hi": pl.Int64, "last_seq": pl.Int64,
           "last_hash": pl.UInt64}


def bucket_of(device: str) -> int:
    return zlib.crc32(device.encode()) % BUCKETS


def seqs_prefix(cohort: str) -> str:
    return f"{SEEN_PREFIX}cohort={cohort}/seqs/"


def batches_prefix(cohort: str) -> str:
    return f"{SEEN_PREFIX}cohort={cohort}/batches/"


def _read(store: ObjectStore, key: str) -> tuple[pl.DataFrame, str]:
    data, etag = store.get_with_etag(key)
    return pl.read_parquet(io.BytesIO(data)), etag


def merge_ranges(ranges: pl.DataFrame, max_ranges: int) -> pl.DataFrame:
    """Coalesce overlapping or adjacent (lo, hi) per device; beyond `max_ranges` a device's
    oldest ranges fold into one (those old gaps count as seen, as in monitoring.ledger)."""
    if ranges.is_empty():
        return ranges
    r = ranges.sort(["device", "lo"])
    r = r.with_columns(reach=pl.col("hi").cum_max().over("device"))
    r = r.with_columns(prev=pl.col("reach").shift(1).over("device"))
    r = r.with_columns(grp=(pl.col("prev").is_null() | (pl.col("lo") > pl.col("prev") + 1)).cum_sum())
    out = r.group_by(["device", "grp"], maintain_order=True).agg(
        pl.col("lo").min(), pl.col("hi").max(), pl.col("last_seq").max(),
        pl.col("last_hash").last())
    # fold: rank ranges from the newest; everything older than the kept ones joins the oldest kept
    out = out.with_columns(k=pl.len().over("device"),
                           i=pl.int_range(pl.len(), dtype=pl.Int64).over("device"))
    cut = (pl.col("k").cast(pl.Int64) - max_ranges).clip(lower_bound=0)
    out = out.with_columns(grp=pl.when(pl.col("i") <= cut).then(cut).otherwise(pl.col("i")))
    out = out.group_by(["device", "grp"], maintain_order=True).agg(
        pl.col("lo").min(), pl.col("hi").max(), pl.col("last_seq").max(),
        pl.col("last_hash").last())
    # one tail per device (the newest frame seen), on every range row of it
    tail = out.group_by("device").agg(pl.col("last_seq").max().alias("ls"),
                                      pl.col("last_hash").sort_by("last_seq").last().alias("lh"))
    out = out.join(tail, on="device").drop("last_seq", "last_hash", "grp")
    return out.rename({"ls": "last_seq", "lh": "last_hash"}).select(list(_RANGES)).sort(["device", "lo"])


@dataclass
class SeenLedger:
    ranges: pl.DataFrame
    cohort: str
    etags: dict[int, str | None] = field(default_factory=dict)
    handled: set[str] = field(default_factory=set)
    manifests: dict[str, list[str]] = field(default_factory=dict)  # date -> manifest keys
    max_ranges: int = 256
    migrated: bool = False
    dirty: set[int] = field(default_factory=set)

    @classmethod
    def load(
        cls, store: ObjectStore, cohort: str, max_ranges: int = 256,
        devices: Mapping[str, Any] | None = None,
    ) -> SeenLedger:
        """The ledger of one cohort's raw prefix; `devices` (the enrolment registry) says which
        devices of a row-wise ledger belong here when it is migrated."""
        frames, etags = [], {}
        for key in store.list(seqs_prefix(cohort)):
            if not key.endswith(".parquet"):
                continue
            df, etag = _read(store, key)
            frames.append(df.cast(_RANGES))  # type: ignore[arg-type]
            etags[int(key.rsplit("bucket=", 1)[1][:2])] = etag
        led = cls(pl.concat(frames) if frames else pl.DataFrame(schema=_RANGES), cohort, etags,
                  max_ranges=max_ranges)
        for key in store.list(batches_prefix(cohort)):
            date = key[len(batches_prefix(cohort)):].split("/")[0].removeprefix("date=")
            led.manifests.setdefault(date, []).append(key)
            led.handled.update(pq.read_table(io.BytesIO(store.get(key)), columns=["key"])
                               .column("key").to_pylist())
        if not frames and not led.handled:
            led._migrate(store, devices)
        return led

    def _migrate(self, store: ObjectStore, devices: Mapping[str, Any] | None) -> None:
        """The row-wise path's single Parquet (or JSON) ledger becomes buckets and a manifest."""
        if not (store.exists(LEDGER_KEY) or store.exists(LEGACY_LEDGER_KEY)):
            return
        old = Ledger.load(store, self.max_ranges)
        mine = {d for d, dev in (devices or {}).items() if getattr(dev, "cohort", None) == self.cohort}
        rows = [(d, int(lo), int(hi)) for d, r in old.seqs.items() if d in mine for lo, hi in r]
        if rows:
            dev, lo, hi = zip(*rows, strict=True)
            self.ranges = pl.DataFrame(
                {"device": dev, "lo": lo, "hi": hi, "last_seq": [-1] * len(dev),
                 "last_hash": [0] * len(dev)}, schema=_RANGES)
            self.dirty = {bucket_of(d) for d in dev}
        prefix = f"telemetry/raw/{self.cohort}/"
        self._legacy_batches = {k: at for k, at in old.batches.items() if k.startswith(prefix)}
        self.handled = set(self._legacy_batches)
        self.migrated = True

    def fresh(self, device: np.ndarray, seq: np.ndarray, batch: np.ndarray) -> np.ndarray:
        """Mask of rows not delivered before: not in the ledger's ranges (anti-join) and, within
        this call, only from the first batch (in key order) that carries a (device, seq).
        Marks the fresh ones seen."""
        if len(seq) == 0:
            return np.zeros(0, dtype=bool)
        new = pl.DataFrame({"device": device, "seq": np.asarray(seq, np.int64),
                            "batch": np.asarray(batch, np.int64),
                            "row": np.arange(len(seq), dtype=np.int64)}).sort("seq")
        ranges = self.ranges.select("device", "lo", "hi").sort("lo")
        hit = new.join_asof(ranges, left_on="seq", right_on="lo", by="device",
                            strategy="backward", check_sortedness=False)
        hit = hit.with_columns(
            seen=pl.col("hi").is_not_null() & (pl.col("seq") <= pl.col("hi")),
            first=pl.col("batch").min().over(["device", "seq"]))
        ok = hit.filter(~pl.col("seen") & (pl.col("batch") == pl.col("first")))
        mask = np.zeros(len(seq), dtype=bool)
        mask[ok.get_column("row").to_numpy()] = True
        if ok.height:
            runs = (ok.select("device", "seq").unique().sort(["device", "seq"])
                    .with_columns(g=((pl.col("device") != pl.col("device").shift(1))
                                     | (pl.col("seq") != pl.col("seq").shift(1) + 1))
                                  .fill_null(True).cum_sum())
                    .group_by(["device", "g"]).agg(lo=pl.col("seq").min(), hi=pl.col("seq").max())
                    .drop("g")
                    .join(self.tails(), on="device", how="left")
                    .with_columns(pl.col("last_seq").fill_null(-1), pl.col("last_hash").fill_null(0)))
            self.ranges = merge_ranges(pl.concat([self.ranges, runs.select(list(_RANGES))
                                                  .cast(_RANGES)]), self.max_ranges)  # type: ignore[arg-type]
            self.dirty |= {bucket_of(d) for d in runs.get_column("device").unique().to_list()}
        return mask

    def tails(self) -> pl.DataFrame:
        """Per device: the seq and frame hash of its newest inference row seen so far."""
        return self.ranges.group_by("device").agg(pl.col("last_seq").max(), pl.col("last_hash").first())

    def set_tails(self, tails: pl.DataFrame) -> None:
        """Record newer (device, last_seq, last_hash) tails."""
        if tails.is_empty():
            return
        t = tails.rename({"last_seq": "ns", "last_hash": "nh"})
        r = self.ranges.join(t, on="device", how="left")
        newer = pl.col("ns").is_not_null() & (pl.col("ns") > pl.col("last_seq"))
        self.ranges = r.with_columns(
            last_seq=pl.when(newer).then(pl.col("ns")).otherwise(pl.col("last_seq")),
            last_hash=pl.when(newer).then(pl.col("nh")).otherwise(pl.col("last_hash")),
        ).select(list(_RANGES))
        self.dirty |= {bucket_of(d) for d in tails.get_column("device").to_list()}

    def save(self, store: ObjectStore, handled: dict[str, int], run: str, now: datetime) -> int:
        """Write the touched buckets (CAS) and this run's manifest; rows in the ledger."""
        buckets = self.ranges.with_columns(
            b=pl.col("device").map_elements(bucket_of, return_dtype=pl.Int64))
        for b in sorted(self.dirty):
            buf = io.BytesIO()
            buckets.filter(pl.col("b") == b).drop("b").write_parquet(buf, compression="zstd")
            key = f"{seqs_prefix(self.cohort)}bucket={b:02d}.parquet"
            try:
                self.etags[b] = store.put_if_match(key, buf.getvalue(), self.etags.get(b))
            except ConflictError as exc:
                raise MonitoringError("another ingestion run changed the ledger; re-run",
                                      where=key) from exc
        self.dirty.clear()
        legacy = getattr(self, "_legacy_batches", {})
        by_day: dict[str, dict[str, int]] = {}
        for key, at in {**legacy, **handled}.items():
            day = datetime.fromtimestamp(at / 1000, tz=now.tzinfo).strftime("%Y-%m-%d")
            by_day.setdefault(day, {})[key] = at
        for day, keys in by_day.items():
            buf = io.BytesIO()
            pl.DataFrame({"key": list(keys), "at_ms": list(keys.values())},
                         schema={"key": pl.String, "at_ms": pl.Int64}).write_parquet(buf)
            mkey = f"{batches_prefix(self.cohort)}date={day}/part-{run}.parquet"
            store.put(mkey, buf.getvalue())
            self.manifests.setdefault(day, []).append(mkey)
        self.handled |= set(handled)
        self._legacy_batches = {}
        return self.ranges.height + len(self.handled)

    def expire(self, store: ObjectStore, now: datetime, retention_days: float) -> int:
        """Delete raw batches handled on days past retention, then their manifests."""
        horizon = (now - timedelta(days=retention_days)).strftime("%Y-%m-%d")
        gone = 0
        for day in sorted(d for d in self.manifests if d < horizon):
            for mkey in self.manifests[day]:
                keys = pq.read_table(io.BytesIO(store.get(mkey)), columns=["key"]).column("key")
                for key in keys.to_pylist():
                    store.delete(key)
                    self.handled.discard(key)
                    gone += 1
            for mkey in self.manifests.pop(day):
                store.delete(mkey)
        return gone

    def compact_manifests(self, store: ObjectStore, day: str) -> int:
        """One manifest per handled day instead of one per run; keeps every key."""
        parts = self.manifests.get(day, [])
        if len(parts) <= 1:
            return 0
        frames = [pl.read_parquet(io.BytesIO(store.get(k))) for k in parts]
        merged = pl.concat(frames).unique("key", keep="first").sort("key")
        buf = io.BytesIO()
        merged.write_parquet(buf, compression="zstd")
        mkey = f"{batches_prefix(self.cohort)}date={day}/part-compacted-{len(merged):08d}.parquet"
        store.put(mkey, buf.getvalue())  # first the merged one: a crash leaves both, never none
        for k in parts:
            if k != mkey:
                store.delete(k)
        self.manifests[day] = [mkey]
        return len(parts)

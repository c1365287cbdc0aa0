"""Reading the compacted telemetry table back: partitions pruned by path, windows by time."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from device.store import ObjectStore
from monitoring.feedback import join_labels
from monitoring.ingest import TABLE_PREFIX


def _partition(key: str) -> dict[str, str]:
    parts = key[len(TABLE_PREFIX) :].split("/")[:-1]
    return dict(p.split("=", 1) for p in parts if "=" in p)


def list_partitions(store: ObjectStore) -> list[dict[str, str]]:
    seen = {
        tuple(sorted(_partition(k).items()))
        for k in store.list(TABLE_PREFIX)
        if k.endswith(".parquet")
    }
    return [dict(p) for p in sorted(seen)]


def read_table(
    store: ObjectStore,
    cohort: str | None = None,
    model_version: str | None = None,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Rows of the table for one cohort / model version in [start, end); duplicates dropped."""
    tables = []
    for key in sorted(store.list(TABLE_PREFIX)):
        p = _partition(key)
        if not key.endswith(".parquet") or (cohort is not None and p.get("cohort") != cohort):
            continue
        if model_version is not None and p.get("model_version") != (model_version or "_"):
            continue
        if start is not None and p.get("date", "9999") < start.strftime("%Y-%m-%d"):
            continue
        if end is not None and p.get("date", "0000") > end.strftime("%Y-%m-%d"):
            continue
        tables.append(pq.read_table(io.BytesIO(store.get(key))))
    if not tables:
        return pd.DataFrame()
    df = pa.concat_tables(tables, promote_options="default").to_pandas(  # older batches lack inference_id
        types_mapper={pa.int32(): pd.Int32Dtype()}.get)
    df = (
        df.drop_duplicates(["device_id", "seq"])
        .sort_values(["ts", "device_id", "seq"])
        .reset_index(drop=True)
    )
    if start is not None:
        df = df[df["ts"] >= start]
    if end is not None:
        df = df[df["ts"] < end]
    df["probs"] = [np.asarray(p, dtype=np.float32) if p is not None else None for p in df["probs"]]
    return df.reset_index(drop=True)


def inferences(df: pd.DataFrame) -> pd.DataFrame:
    """The rows drift looks at: inferences with features and outputs, late labels joined onto
    their inference (monitoring.feedback.join_labels)."""
    if df.empty:
        return df
    df, _ = join_labels(df)
    return df[(df["event"] == "inference") & df["top1"].notna()].reset_index(drop=True)


def windows(df: pd.DataFrame, hours: float) -> list[tuple[pd.Timestamp, pd.DataFrame]]:
    """Consecutive windows of `hours` (aligned to the epoch), oldest first, empty ones left out."""
    if df.empty:
        return []
    starts = df["ts"].dt.floor(pd.Timedelta(hours=hours))
    return [(start, part.reset_index(drop=True)) for start, part in df.groupby(starts, sort=True)]

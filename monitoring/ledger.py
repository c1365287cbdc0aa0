"""The ingestion ledger: which raw batches were handled and which sequence numbers each verified
device has delivered, as one small Parquet table in the store that stays bounded.

Sequence numbers are kept as coalesced ranges per device (a device counts up, so a healthy one
is a single range); a device with more than `max_ranges` gaps has its oldest ranges merged,
which declares those old gaps seen (a row arriving in one later counts as a duplicate). Handled
batch keys are kept for `retention_days`; compaction then deletes the raw object and forgets
the key, so neither the ledger nor `telemetry/raw/` grows without end. Written by
compare-and-swap: two ingestion runs never both win.
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from device.store import ObjectStore
from edgeops.errors import ConflictError, MonitoringError

LEDGER_KEY = "telemetry/ledger.parquet"
LEGACY_LEDGER_KEY = "telemetry/ledger.json"
_SCHEMA = pa.schema(
    [
        ("kind", pa.string()),  # "batch" | "seqs"
        ("name", pa.string()),  # batch key | device id
        ("lo", pa.int64()),
        ("hi", pa.int64()),
        ("at_ms", pa.int64()),  # when the batch was handled (batches only)
    ]
)


def _merge(ranges: np.ndarray) -> np.ndarray:
    """Sorted, disjoint, non-adjacent (n, 2) ranges from any (n, 2) ranges."""
    if len(ranges) <= 1:
        return ranges.reshape(-1, 2)
    r = ranges[np.argsort(ranges[:, 0], kind="stable")]
    out = [r[0].copy()]
    for lo, hi in r[1:]:
        if lo <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append(np.array([lo, hi]))
    return np.array(out, dtype=np.int64)


def _runs(seqs: np.ndarray) -> np.ndarray:
    """Sorted unique seqs -> (n, 2) ranges of consecutive values."""
    if len(seqs) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    breaks = np.flatnonzero(np.diff(seqs) != 1)
    starts = np.concatenate([[0], breaks + 1])
    ends = np.concatenate([breaks, [len(seqs) - 1]])
    return np.stack([seqs[starts], seqs[ends]], axis=1).astype(np.int64)


@dataclass
class Ledger:
    batches: dict[str, int] = field(default_factory=dict)  # key -> handled at (epoch ms)
    seqs: dict[str, np.ndarray] = field(default_factory=dict)  # device -> (n, 2) ranges
    etag: str | None = None
    max_ranges: int = 256

    @classmethod
    def load(cls, store: ObjectStore, max_ranges: int = 256) -> Ledger:
        led = cls(max_ranges=max_ranges)
        if store.exists(LEDGER_KEY):
            data, led.etag = store.get_with_etag(LEDGER_KEY)
            t = pq.read_table(io.BytesIO(data)).to_pydict()
            ranges: dict[str, list[tuple[int, int]]] = {}
            for kind, name, lo, hi, at in zip(
                t["kind"], t["name"], t["lo"], t["hi"], t["at_ms"], strict=True
            ):
                if kind == "batch":
                    led.batches[name] = int(at)
                else:
                    ranges.setdefault(name, []).append((int(lo), int(hi)))
            led.seqs = {d: np.array(r, dtype=np.int64) for d, r in ranges.items()}
        elif store.exists(LEGACY_LEDGER_KEY):  # the JSON ledger of earlier versions
            raw = json.loads(store.get(LEGACY_LEDGER_KEY))
            led.batches = dict.fromkeys(raw.get("batches", []), int(time.time() * 1000))
            led.seqs = {
                d: _runs(np.array(sorted(s), dtype=np.int64))
                for d, s in raw.get("seqs", {}).items()
            }
        return led

    def fresh(self, device_id: str, seqs: np.ndarray) -> np.ndarray:
        """Mask of `seqs` (increasing) this device has not delivered before; marks them seen."""
        seqs = np.asarray(seqs, dtype=np.int64)
        have = self.seqs.get(device_id, np.zeros((0, 2), dtype=np.int64))
        if len(have):
            i = np.searchsorted(have[:, 0], seqs, side="right") - 1
            seen = (i >= 0) & (seqs <= have[np.maximum(i, 0), 1])
        else:
            seen = np.zeros(len(seqs), dtype=bool)
        new = seqs[~seen]
        if len(new):
            merged = _merge(np.concatenate([have, _runs(np.unique(new))]))
            if len(merged) > self.max_ranges:  # bound: fold the oldest gaps into one range
                k = len(merged) - self.max_ranges
                merged = np.concatenate([[[merged[0, 0], merged[k, 1]]], merged[k + 1 :]])
            self.seqs[device_id] = merged.astype(np.int64)
        return ~seen

    def compact(self, store: ObjectStore, now: datetime, retention_days: float) -> int:
        """Forget batch keys handled before the retention horizon and delete their raw objects."""
        horizon = int((now - timedelta(days=retention_days)).timestamp() * 1000)
        old = [k for k, at in self.batches.items() if 0 < at < horizon]
        for key in old:
            store.delete(key)
            del self.batches[key]
        return len(old)

    def save(self, store: ObjectStore) -> int:
        rows: dict[str, list] = {n: [] for n in _SCHEMA.names}
        for key, at in sorted(self.batches.items()):
            for n, v in zip(_SCHEMA.names, ("batch", key, 0, 0, at), strict=True):
                rows[n].append(v)
        for dev, ranges in sorted(self.seqs.items()):
            for lo, hi in ranges:
                for n, v in zip(_SCHEMA.names, ("seqs", dev, int(lo), int(hi), 0), strict=True):
                    rows[n].append(v)
        buf = io.BytesIO()
        pq.write_table(pa.Table.from_pydict(rows, schema=_SCHEMA), buf, compression="zstd")
        try:
            self.etag = store.put_if_match(LEDGER_KEY, buf.getvalue(), self.etag)
        except ConflictError as exc:
            raise MonitoringError(
                "another ingestion run changed the ledger; re-run", where=LEDGER_KEY
            ) from exc
        return len(rows["kind"])

"""Ingest throughput with poisoned batches: signed batches from enrolled devices, 1% of them
poisoned (a spoofed device, invalid UTF-8, NaN rows, an oversized batch), on a local store.

    python -m benchmarks.ingest_poisoned [--batches 200] [--rows 256] [--json FILE]

`run(batches, rows, poisoned_share)` returns the figures (benchmarks/channel.py can print them).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from device.identity import DeviceIdentity, sign_batch
from device.store import LocalStore
from device.telemetry import TelemetryRecord, records_to_table, write_batch
from device.uploader import batch_key
from monitoring.ingest import ingest
from monitoring.telemetry_suite import TelemetrySuite
from registry.enrolment import DeviceRegistry

COHORT = "pi-fleet-eu"
T0 = datetime(2026, 11, 20, tzinfo=UTC)


def _records(device: str, first: int, n: int, rng: np.random.Generator, **kw: Any) -> list:
    out = []
    for i in range(n):
        p = rng.dirichlet(np.ones(10)).astype(np.float32)
        fields = dict(
            device_id=device,
            cohort=COHORT,
            model_name="digits",
            model_version="1",
            target="tflite-int8",
            bundle_id="b1",
            seq=first + i,
            ts=T0 + timedelta(seconds=first + i),
            features=tuple(float(v) for v in rng.random(33)),
            probs=tuple(float(v) for v in p),
            top1=int(p.argmax()),
            confidence=float(p.max()),
            latency_ms=4.0,
            memory_bytes=1000,
            energy_mj=0.1,
        )
        fields.update(kw)
        out.append(TelemetryRecord(**fields))
    return out


def _key(device: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(device.encode()).digest())


def run(batches: int = 200, rows: int = 256, poisoned_share: float = 0.01, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    root = Path(tempfile.mkdtemp(prefix="edgeops-ingest-bench-"))
    store, reg = LocalStore(root / "store"), DeviceRegistry(root / "devices")
    devices = [f"dev-{i:03d}" for i in range(20)]
    for d in devices:
        reg.enroll(d, COHORT, _key(d).public_key())
    poisoned = set(rng.choice(batches, max(1, round(batches * poisoned_share)), replace=False))
    kinds = ("spoof", "utf8", "nan", "oversized")
    for b in range(batches):
        dev = devices[b % len(devices)]
        first = (b // len(devices)) * rows
        kind = kinds[len([p for p in poisoned if p < b]) % len(kinds)] if b in poisoned else None
        n = 25_000 if kind == "oversized" else rows  # over the 20,000-row default limit
        recs = _records(
            "victim" if kind == "spoof" else dev,
            first,
            n,
            rng,
            **({"latency_ms": float("nan")} if kind == "nan" else {}),
        )
        data = write_batch(records_to_table(recs))
        if kind == "utf8":
            buf = io.BytesIO()
            pq.write_table(records_to_table(recs), buf, compression="none", use_dictionary=False)
            data = buf.getvalue().replace(b"inference", b"\xff\xfeference")
        seqs = (recs[0].seq, recs[-1].seq)
        body = sign_batch(DeviceIdentity(dev, COHORT, _key(dev)), data, len(recs), seqs)
        store.put(batch_key(COHORT, dev, seqs, body), body)
    t = time.perf_counter()
    TelemetrySuite([COHORT], ["1"])  # Great Expectations' import, once per process
    ge_import = time.perf_counter() - t
    t = time.perf_counter()
    rep = ingest(store, [COHORT], ["1"], devices=reg.load(), now=T0 + timedelta(days=1))
    wall = time.perf_counter() - t
    return {
        "batches": batches,
        "rows_per_batch": rows,
        "poisoned_batches": len(poisoned),
        "wall_s": round(wall, 3),
        "ge_import_s": round(ge_import, 3),  # once per process, not in wall_s
        "batches_per_s": round(batches / wall, 1),
        "rows_per_s": round(rep.received_rows / wall, 1),
        "stored_rows": rep.stored_rows,
        "quarantined_rows": rep.quarantined_rows,
        "quarantined_batches": rep.quarantined_batches,
        "duplicate_rows": rep.duplicate_rows,
        "reconciles": rep.reconciles,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--rows", type=int, default=256)
    ap.add_argument("--poisoned", type=float, default=0.01, help="share of poisoned batches")
    ap.add_argument("--json", type=Path, help="write the figures here")
    a = ap.parse_args()
    out = run(a.batches, a.rows, a.poisoned)
    for k, v in out.items():
        print(f"{k:>22}: {v}")
    if a.json:
        a.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

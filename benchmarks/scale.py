"""Fleet scale: ingest and judge a day of telemetry from 100 to 10,000 devices on one machine.

    python -m benchmarks.scale [--devices 100,1000,10000] [--records 1000] [--seeds 1]
                               [--old-max 1000] [--json FILE] [--prepare]

Synthetic raw batches are written straight into a local store, signed by enrolled device keys
as the agent signs them (no inference: features, probabilities and labels are drawn), 1,000
records per device and day in batches of 250, over `--cohorts` cohorts. Then, each day in a fresh
process (so peak RSS is that day's; ingest and monitor share it, as in the `monitor` flow, and the
peak when ingest ended is recorded too): ingest day 1 and one monitor run (every hourly window of
the day judged: drift, CBPE harm, device segments), then day 2 on top of day 1. The monitor run
is the flow's work without MLflow and Prefect (the same component calls flows.monitoring makes).
The row-wise path of issue 12 (monitoring.ingest_rowwise, then read_table and every window's
rows, no HTML) runs beside it up to `--old-max` devices. Generation is not timed.

Goals (issue 14, this 2-core machine): 10,000 devices x 1 day (10M rows) ingested and judged in
<= 10 minutes with peak memory <= 2 GB; day 2 within 20% of day 1; linear or better from 1,000
to 10,000 devices. `--prepare` also runs benchmarks/prepare_scale.py (20,000 images at 96 px,
goal: peak <= 1.5 GB) when that module exists.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

T0 = datetime(2026, 11, 20, tzinfo=UTC)
BATCH_ROWS = 250
CLASSES = 10


def _device_key(device: str) -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(device.encode()).digest())


def _names(devices: int, cohorts: int) -> list[tuple[str, str]]:
    return [(f"dev-{i:05d}", f"cohort-{i % cohorts}") for i in range(devices)]


def _pool(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Features and probabilities the fleet draws from (and the reference is drawn from)."""
    feats = rng.normal(size=(n, 33)).astype(np.float32)
    k = rng.integers(0, CLASSES, n)
    probs = rng.dirichlet(np.ones(CLASSES), size=n).astype(np.float32) * 0.2
    probs[np.arange(n), k] += 0.8
    return feats, probs


def reference(seed: int) -> Any:
    import pandas as pd

    from device.telemetry import FEATURE_COLUMNS

    feats, probs = _pool(np.random.default_rng(seed + 1000), 5000)
    df = pd.DataFrame(feats, columns=list(FEATURE_COLUMNS))
    df["probs"] = list(probs)
    df["top1"] = probs.argmax(1).astype(np.int32)
    df["confidence"] = probs.max(1).astype(np.float32)
    df["label"] = pd.array(probs.argmax(1), dtype="Int32")
    return df


def generate(root: Path, devices: int, cohorts: int, day: int, records: int, seed: int) -> int:
    """Write one day of signed raw batches for every device directly under the store's root."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from device.identity import DeviceIdentity, sign_batch
    from device.telemetry import FEATURE_COLUMNS, SCHEMA
    from device.uploader import batch_key

    rng = np.random.default_rng(seed * 100 + day)
    feats_pool, probs_pool = _pool(rng, 200_000)
    step_ms = 86_400_000 // records
    day0 = int((T0 + timedelta(days=day - 1)).timestamp() * 1000)
    written = 0
    for dev, cohort in _names(devices, cohorts):
        ident = DeviceIdentity(dev, cohort, _device_key(dev))
        for first in range(0, records, BATCH_ROWS):
            n = min(BATCH_ROWS, records - first)
            at = int(rng.integers(0, len(feats_pool) - n))
            seq = np.arange(first, first + n, dtype=np.int64) + (day - 1) * records
            probs = probs_pool[at : at + n]
            label = np.where(rng.random(n) < 0.05, probs.argmax(1), -1)
            cols: dict[str, pa.Array] = {
                "device_id": pa.array([dev] * n), "cohort": pa.array([cohort] * n),
                "model_name": pa.array(["digits"] * n), "model_version": pa.array(["1"] * n),
                "target": pa.array(["tflite-int8"] * n), "bundle_id": pa.array(["bundle-1"] * n),
                "seq": pa.array(seq), "event": pa.array(["inference"] * n),
                "ts": pa.array(day0 + (seq - (day - 1) * records) * step_ms).cast(pa.timestamp("ms", tz="UTC")),
                "probs": pa.ListArray.from_arrays(pa.array(np.arange(0, (n + 1) * CLASSES, CLASSES, dtype=np.int32)),
                                                  pa.array(probs.reshape(-1))),
                "top1": pa.array(probs.argmax(1).astype(np.int32)),
                "confidence": pa.array(probs.max(1)),
                "latency_ms": pa.array(rng.gamma(4.0, 1.0, n).astype(np.float32)),
                "memory_bytes": pa.array(np.full(n, 1 << 20, np.int64)),
                "energy_mj": pa.array(np.full(n, 0.1, np.float32)),
                "label": pa.array(label.astype(np.int32), mask=label < 0),
            }
            for j, c in enumerate(FEATURE_COLUMNS):
                cols[c] = pa.array(feats_pool[at : at + n, j])
            table = pa.Table.from_arrays(
                [cols[f.name].cast(f.type) if f.name in cols else pa.nulls(n, f.type) for f in SCHEMA],
                schema=SCHEMA)
            buf = io.BytesIO()
            pq.write_table(table, buf, compression="zstd")
            body = sign_batch(ident, buf.getvalue(), n, (int(seq[0]), int(seq[-1])))
            path = root / batch_key(cohort, dev, (int(seq[0]), int(seq[-1])), body)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(body)  # straight to disk: generation is not what is measured
            written += n
    return written


def _enrolled(devices: int, cohorts: int) -> dict[str, Any]:
    from device.identity import public_key_b64
    from registry.enrolment import EnrolledDevice

    out = {}
    for dev, cohort in _names(devices, cohorts):
        pub = _device_key(dev).public_key()
        from device.identity import device_key_id

        out[dev] = EnrolledDevice(dev, cohort, device_key_id(pub), public_key_b64(pub), "2026-11-01T00:00:00Z")
    return out


def monitor_new(store: Any, ref: Any, now: datetime) -> int:
    """What detect_drift does per cohort, without MLflow and Prefect: windows planned from the
    statistics of unsettled days, judged on bounded samples, segments from statistics."""
    from dataclasses import replace

    from edgeops.params import MonitorParams
    from monitoring.cohort_windows import (
        load_settled,
        plan_cohort,
        sample_windows,
        save_settled,
        settle,
        stats_cohorts,
        stats_dates,
        window_moments,
    )
    from monitoring.jobs import run_window
    from monitoring.segments import flag_segments_from_stats
    from monitoring.windows import load_ledger, record

    params = MonitorParams()
    ledger, _ = load_ledger(store)
    settled = load_settled(store)
    judged = 0
    for cohort in stats_cohorts(store):
        sigs = stats_dates(store, cohort)
        before = settled.get(cohort, {})
        read = {d: s for d, s in sigs.items() if before.get(d) != s}
        if not read:
            continue
        scopes, moments, _ = plan_cohort(store, cohort, 1.0, now, timedelta(minutes=15), ledger,
                                         params.late_reopen_share, sorted(read))
        wanted = {(sp.model_version, sp.bundle_id): {p.start for p in sp.plans
                                                     if p.status in ("judge", "rejudge")}
                  for sp in scopes}
        samples = sample_windows(store, cohort, wanted, 1.0, 20_000)
        for sp in scopes:
            for p in sp.plans:
                rows = samples.get((sp.model_version, sp.bundle_id, p.start))
                if rows is None or p.total_rows < params.min_samples:
                    continue
                rep = run_window(ref, rows, params, cohort=cohort, model_version=sp.model_version,
                                 bundle_id=sp.bundle_id, window_start=p.start.to_pydatetime(),
                                 embeddings=False, row_segments=False)
                flags = flag_segments_from_stats(
                    window_moments(moments, sp.model_version, sp.bundle_id, p.start), params.segment_fdr)
                replace(rep, n_current=p.total_rows, segments=tuple(flags))
                judged += 1
            record(store, sp.scope, list(sp.plans))
        save_settled(store, cohort, settle(scopes, read, before))
    return judged


def monitor_old(store: Any, ref: Any, now: datetime) -> int:
    """The row-wise monitor: the whole table per cohort, every row of every window (no HTML,
    which the old flow always rendered: this is generous to it)."""
    from edgeops.params import MonitorParams
    from monitoring.jobs import run_window
    from monitoring.table import inferences, list_partitions, read_table
    from monitoring.windows import load_ledger, plan_windows, record, watermark

    params = MonitorParams()
    ledger, _ = load_ledger(store)
    judged = 0
    for cohort in sorted({p["cohort"] for p in list_partitions(store)}):
        rows = inferences(read_table(store, cohort=cohort))
        mark = watermark(rows, now, timedelta(minutes=15))
        for (version, bundle), part in rows.groupby(["model_version", "bundle_id"]):
            scope = f"{cohort}/{version}/{str(bundle)[:12]}"
            plans = plan_windows(part.reset_index(drop=True), 1.0, mark, ledger.get(scope, {}),
                                 params.late_reopen_share)
            for p in plans:
                if p.status in ("judge", "rejudge") and len(p.rows) >= params.min_samples:
                    run_window(ref, p.rows, params, cohort=cohort, model_version=str(version),
                               bundle_id=str(bundle), window_start=p.start.to_pydatetime(),
                               embeddings=False)
                    judged += 1
            record(store, scope, plans)
    return judged


def worker(args: argparse.Namespace) -> dict[str, Any]:
    """One phase in this process: ingest a day that is already in the store, then monitor."""
    from device.store import LocalStore
    from monitoring.ingest import ingest
    from monitoring.ingest_rowwise import ingest_rowwise

    store = LocalStore(args.store)
    devices = _enrolled(args.n, args.cohorts)
    cohorts = [f"cohort-{i}" for i in range(args.cohorts)]
    now = T0 + timedelta(days=args.day, minutes=30)
    t, c = time.perf_counter(), time.process_time()
    if args.path == "new":
        rep = ingest(store, cohorts, ["1"], devices=devices, now=now)
    else:
        rep = ingest_rowwise(store, cohorts, ["1"], devices=devices, now=now)
    ingest_s, ingest_cpu = time.perf_counter() - t, time.process_time() - c
    ingest_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the peak so far
    assert rep.reconciles and rep.quarantined_batches == 0, rep.as_dict()
    ref = reference(args.seed)
    t, c = time.perf_counter(), time.process_time()
    judged = (monitor_new if args.path == "new" else monitor_old)(store, ref, now)
    monitor_s, monitor_cpu = time.perf_counter() - t, time.process_time() - c
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"devices": args.n, "rows": rep.stored_rows, "day": args.day, "path": args.path,
            "seed": args.seed, "ingest_s": round(ingest_s, 2), "monitor_s": round(monitor_s, 2),
            "peak_rss_mb": round(peak, 1), "windows": judged,
            # CPU seconds of this process (all its threads): on a shared machine the wall-clock
            # figures above include time spent waiting for a core
            "ingest_cpu_s": round(ingest_cpu, 2), "monitor_cpu_s": round(monitor_cpu, 2),
            # peak_rss_mb is the process's (ingest, then monitor in the same process); this is
            # the peak when ingest ended
            "ingest_peak_rss_mb": round(ingest_peak, 1)}


def _phase(store: Path, n: int, cohorts: int, day: int, path: str, seed: int) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.scale", "--worker", "--store", str(store), "--n", str(n),
           "--cohorts", str(cohorts), "--day", str(day), "--path", path, "--seed", str(seed)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _interval(xs: list[float]) -> str:
    from scipy.stats import t as student

    if len(xs) < 2:
        return f"{xs[0]:.1f}"
    m, s = float(np.mean(xs)), float(np.std(xs, ddof=1))
    h = student.ppf(0.975, len(xs) - 1) * s / np.sqrt(len(xs))
    return f"{m:.1f} ± {h:.1f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--devices", default="100,1000")
    ap.add_argument("--records", type=int, default=1000)
    ap.add_argument("--cohorts", type=int, default=2)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--days", type=int, default=2, help="days ingested one after the other")
    ap.add_argument("--old-max", type=int, default=1000)
    ap.add_argument("--json")
    ap.add_argument("--prepare", action="store_true")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--store", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--day", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--path", default="new", help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return 0
    runs: list[dict[str, Any]] = []
    for n in (int(x) for x in args.devices.split(",")):
        for seed in range(args.seeds):
            for path in ("new", "old") if n <= args.old_max else ("new",):
                with tempfile.TemporaryDirectory(prefix=f"edgeops-scale-{n}-") as tmp:
                    for day in range(1, args.days + 1):
                        t = time.perf_counter()
                        generate(Path(tmp), n, args.cohorts, day, args.records, seed)
                        gen = time.perf_counter() - t
                        run = _phase(Path(tmp), n, args.cohorts, day, path, seed)
                        runs.append(run)
                        print(f"{path:3} devices={n:6} day={day} rows={run['rows']:>9} "
                              f"ingest={run['ingest_s']:7.1f}s monitor={run['monitor_s']:6.1f}s "
                              f"peak={run['peak_rss_mb']:7.0f} MB (ingest {run.get('ingest_peak_rss_mb', 0):.0f}) "
                              f"windows={run['windows']} "
                              f"cpu={run.get('ingest_cpu_s', 0):.0f}+{run.get('monitor_cpu_s', 0):.0f}s "
                              f"(generated in {gen:.0f}s)", flush=True)
                        if args.json:  # after every phase: a long run that is stopped keeps its figures
                            Path(args.json).write_text(json.dumps({"runs": runs}, indent=2))
    print("\n| path | devices | day | rows | ingest s | monitor s | total s | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|")
    keys = sorted({(r["path"], r["devices"], r["day"]) for r in runs}, key=lambda k: (k[1], k[0], k[2]))
    for path, n, day in keys:
        rs = [r for r in runs if (r["path"], r["devices"], r["day"]) == (path, n, day)]
        print(f"| {path} | {n} | {day} | {rs[0]['rows']} | {_interval([r['ingest_s'] for r in rs])} | "
              f"{_interval([r['monitor_s'] for r in rs])} | "
              f"{_interval([r['ingest_s'] + r['monitor_s'] for r in rs])} | "
              f"{_interval([r['peak_rss_mb'] for r in rs])} |")
    print("\nGoals: 10,000 devices x 1 day <= 600 s total and <= 2048 MB peak; day 2 within 20% "
          "of day 1; total(10k)/total(1k) <= 10.")
    doc: dict[str, Any] = {"runs": runs}
    if args.prepare:
        try:
            from benchmarks import prepare_scale  # H14b's module (issue 14, streaming prepare)
        except ImportError:
            print("--prepare: benchmarks/prepare_scale.py is not there yet; skipped")
        else:
            doc["prepare"] = prepare_scale.run(images=20_000, size=96)
            print(f"prepare: {doc['prepare']}")
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    raise SystemExit(main())

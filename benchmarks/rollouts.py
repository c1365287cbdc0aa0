"""Rollout benchmarks (issue 5).

    .venv/bin/python benchmarks/rollouts.py [--ids 1000000] [--devices 500] [--quick]

Prints three tables against the anchors:
1. device assignments per second for --ids device ids (`device.protocol.bucket` + `choose`, as an
   agent runs them) and the spread of the 10,000 bucket sizes (uniformity, chi-square), plus the
   measured canary share at each default step;
2. time from a failing gate to every device of the cohort running the stable bundle again, in
   simulated time: real RolloutManager on a real store, the real controller decision over gate
   stats accumulated from the canary's telemetry stream, devices that poll and verify the
   update channel (tuf.ngclient, each with its own trusted metadata) on their own jittered schedule;
3. lost updates under 8 concurrent writer processes on one cohort's channel, through channel
   transactions (compare-and-swap of timestamp.json) and, for contrast, with the timestamp
   written by a plain PUT; on the local store and on moto's S3 server (the real wire protocol,
   `IfMatch`). Goal: 0 lost with CAS.

Anchors: AWS IoT Jobs can only cancel on abort (no rollback); Firebase rollouts have no automatic
rollback; DORA elite teams restore service in under an hour.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from components.profiles import DeviceCatalog  # noqa: E402
from device.channel import ChannelClient  # noqa: E402
from device.protocol import BUCKETS, BundleRef, Channel, bucket, choose  # noqa: E402
from device.store import ObjectStore, open_store  # noqa: E402
from registry.bundles import publish_bundle  # noqa: E402
from registry.channels import set_stable  # noqa: E402
from registry.controller import ArmStats, GateResult, GateThresholds, decide  # noqa: E402
from registry.rollout_state import RolloutPlan  # noqa: E402
from registry.rollouts import RolloutManager  # noqa: E402
from registry.tuf_keys import Keystore  # noqa: E402
from registry.tuf_repo import TufRepository  # noqa: E402

console = Console(width=140)
T0 = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)


# --- 1. assignment throughput and uniformity --------------------------------------------------
def bench_assignment(n_ids: int) -> dict[str, float]:
    from scipy.stats import chisquare

    ids = [f"device-{i:08d}" for i in range(n_ids)]
    m = Channel("bench", None, None, 25.0, "salt-1")
    t0 = time.perf_counter()
    buckets = [bucket(d, m.salt) for d in ids]
    t_bucket = time.perf_counter() - t0
    t0 = time.perf_counter()
    for d in ids:
        choose(m, d)
    t_choose = time.perf_counter() - t0
    counts = np.bincount(np.asarray(buckets), minlength=BUCKETS)
    chi = chisquare(counts)
    b = np.asarray(buckets)
    table = Table("measure", "value", "note", title=f"1. assignments for {n_ids:,} device ids")
    table.add_row(
        "bucket() per second", f"{n_ids / t_bucket:,.0f}", "sha256(salt:id) -> 10,000 buckets"
    )
    table.add_row(
        "choose() per second", f"{n_ids / t_choose:,.0f}", "what an agent does per manifest"
    )
    table.add_row("bucket size mean / expected", f"{counts.mean():.1f} / {n_ids / BUCKETS:.1f}", "")
    table.add_row("bucket size min / max", f"{counts.min()} / {counts.max()}", "")
    table.add_row(
        "bucket size CV",
        f"{counts.std() / counts.mean():.4f}",
        f"Poisson expectation {1 / np.sqrt(n_ids / BUCKETS):.4f}",
    )
    table.add_row("chi-square p-value", f"{chi.pvalue:.3f}", "uniform unless p < 0.01")
    for pct in (1, 5, 25, 50, 100):
        share = float((b < round(pct * BUCKETS / 100)).mean())
        table.add_row(
            f"canary share at {pct}%", f"{share * 100:.3f}%", "sticky: a device stays in as % grows"
        )
    console.print(table)
    return {"bucket_per_s": n_ids / t_bucket, "choose_per_s": n_ids / t_choose,
            "bucket_cv": float(counts.std() / counts.mean()), "chi_square_p": float(chi.pvalue)}


# --- 2. time from failing gate to every device on stable --------------------------------------
def tiny_onnx(path: Path, seed: int) -> Path:
    """A real (tiny) ONNX classifier: MatMul + Softmax, enough for a real signed bundle."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(seed).normal(size=(64, 10)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["x"], ["f"]),
            helper.make_node("MatMul", ["f", "w"], ["z"]),
            helper.make_node("Softmax", ["z"], ["y"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 8, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
        [numpy_helper.from_array(w, "w")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def bench_rollback(
    n_devices: int, poll_s: float, controller_s: float, rate_per_min: float, seed: int
) -> dict:
    from device.preprocessing import PreprocessingSpec

    rng = random.Random(seed)
    tmp = Path(tempfile.mkdtemp(prefix="edgeops-bench-"))
    store = open_store(str(tmp / "store"))
    repo = TufRepository(store, Keystore(tmp / "keys"))
    repo.init(["bench"], bin_bits=2)
    spec = PreprocessingSpec(8, 8, 1, (0.3,), (0.3,), tuple(str(i) for i in range(10)))
    good = publish_bundle(
        repo,
        tiny_onnx(tmp / "a.onnx", 0),
        spec,
        model_name="d",
        model_version=1,
        target="onnx",
    )
    bad = publish_bundle(
        repo,
        tiny_onnx(tmp / "b.onnx", 1),
        spec,
        model_name="d",
        model_version=2,
        target="onnx",
    )
    catalog = DeviceCatalog.model_validate(
        {
            "profiles": {
                "pc": {
                    "targets": ["onnx"],
                    "max_model_bytes": 10**8,
                    "arena_bytes": 10**8,
                    "latency_budget_ms": 20,
                    "throughput_macs_per_s": 1e10,
                }
            },
            "cohorts": {"bench": {"profile": "pc"}},
        }
    )
    clock = Clock()
    set_stable(repo, "bench", good)
    mgr = RolloutManager(repo, catalog, None, clock=clock)
    thresholds = GateThresholds()
    plan = RolloutPlan(
        "d-onnx", "d", "2", "onnx", bad, (5.0, 25.0, 50.0, 100.0), 600.0, 50, thresholds
    )
    mgr.plan_resolved("bench", plan, actor="bench")
    mgr.start("bench", actor="bench")
    root = repo.export_root()
    devices = [f"dev-{i:05d}" for i in range(n_devices)]
    clients = {d: ChannelClient(store, tmp / "devices" / d / "tuf", root) for d in devices}
    polls = [(T0 + timedelta(seconds=rng.uniform(0, poll_s)), d) for d in devices]
    heapq.heapify(polls)
    running: dict[str, str] = {d: good.bundle_id for d in devices}
    canary_n = canary_err = stable_n = stable_err = 0
    step = timedelta(seconds=1)
    rolled_back_at = None
    next_control = T0 + timedelta(seconds=controller_s)
    first_bad = None
    on_bad = 0
    while True:
        clock.now += step
        # devices poll and verify the channel (TUF) on their own schedule
        while polls[0][0] <= clock.now:
            _, d = heapq.heappop(polls)
            m = clients[d].session().channel("bench")
            ref = choose(m, d)
            assert ref is not None
            on_bad += (ref.bundle_id == bad.bundle_id) - (running[d] == bad.bundle_id)
            running[d] = ref.bundle_id
            heapq.heappush(
                polls, (clock.now + timedelta(seconds=poll_s * rng.uniform(0.8, 1.2)), d)
            )
        if on_bad and first_bad is None:
            first_bad = clock.now
        # telemetry this second: the bad candidate fails 20% of inferences, stable 1%
        lam = rate_per_min / 60
        cn = int(np.random.default_rng(rng.randrange(2**32)).poisson(lam * on_bad))
        sn = int(np.random.default_rng(rng.randrange(2**32)).poisson(lam * (n_devices - on_bad)))
        canary_n += cn
        canary_err += sum(rng.random() < 0.20 for _ in range(cn))
        stable_n += sn
        stable_err += sum(rng.random() < 0.01 for _ in range(sn))
        if rolled_back_at is None and clock.now >= next_control:
            next_control = clock.now + timedelta(seconds=controller_s)
            gate = None
            if canary_n:
                gate = GateResult(
                    ArmStats(canary_n, canary_err / canary_n, 10.0, 0.8),
                    ArmStats(stable_n, stable_err / max(stable_n, 1), 10.0, 0.8),
                )
            decision = decide(mgr.state("bench"), gate, clock.now)
            if decision.action == "rollback":
                mgr.rollback("bench", actor="controller", reason="; ".join(decision.reasons))
                rolled_back_at = clock.now
        if rolled_back_at is not None and on_bad == 0:
            break
    return {
        "devices": n_devices,
        "poll_s": poll_s,
        "controller_s": controller_s,
        "canary_records_at_rollback": canary_n,
        "first_bad_to_rollback_s": (rolled_back_at - first_bad).total_seconds(),
        "rollback_to_all_stable_s": (clock.now - rolled_back_at).total_seconds(),
        "first_bad_to_all_stable_s": (clock.now - first_bad).total_seconds(),
    }


# --- 3. lost updates under concurrent writers -------------------------------------------------
_WRITER = """
import sys
from dataclasses import replace
from pathlib import Path
from device.store import open_store
from registry.channels import update_channel
from registry.tuf_keys import Keystore
from registry.tuf_repo import TufRepository
url, endpoint, keys, n, mode = sys.argv[1], sys.argv[2] or None, sys.argv[3], int(sys.argv[4]), sys.argv[5]
store = open_store(url, endpoint)
if mode == "plain":  # what an unconditional PUT of timestamp.json would do
    cas = store.put_if_match
    store.put_if_match = lambda k, d, e: store.put(k, d) if k.endswith("timestamp.json") else cas(k, d, e)
repo = TufRepository(store, Keystore(Path(keys)), retries=1000)
done = 0
for i in range(n):
    update_channel(repo, "race", lambda c: replace(c, rollout_id=c.rollout_id + 1))
    done += 1
    print(done, flush=True)
"""


def _counter(repo: TufRepository) -> int:
    from registry.channels import read_channel

    channel = read_channel(repo.begin(), "race")
    return channel.rollout_id if channel else 0


def bench_lost_updates(
    store: ObjectStore, url: str, endpoint: str | None, keys: Path, writers: int, each: int
) -> dict:
    repo = TufRepository(store, Keystore(keys))
    if not repo.exists():
        repo.init(["race"], bin_bits=1)
    out = {}
    for mode in ("cas", "plain"):
        set_stable(repo, "race", BundleRef("0" * 64, "1", "onnx"))
        start = _counter(repo)
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        t0 = time.perf_counter()
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", _WRITER, url, endpoint or "", str(keys), str(each), mode],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(writers)
        ]
        done, failed = 0, []
        for p in procs:
            stdout, stderr = p.communicate(timeout=600)
            lines = stdout.split()
            done += int(lines[-1]) if lines else 0
            if p.returncode != 0:
                failed.append(
                    stderr.strip().splitlines()[-1] if stderr.strip() else f"exit {p.returncode}"
                )
        elapsed = time.perf_counter() - t0
        try:
            applied = _counter(repo) - start
        except Exception as exc:  # noqa: BLE001 - a plain-PUT race can leave the channel unreadable
            applied, failed = 0, [*failed, f"channel unreadable afterwards: {exc}"]
        out[mode] = {
            "attempted": writers * each,
            "succeeded": done,
            "applied": applied,
            "lost": done - applied,
            "seconds": elapsed,
            "failed_writers": failed,
        }
    return out


def _moto() -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(300):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    return proc, f"http://127.0.0.1:{port}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ids", type=int, default=1_000_000)
    ap.add_argument("--devices", type=int, default=500)
    ap.add_argument("--writers", type=int, default=8)
    ap.add_argument("--each", type=int, default=25)
    ap.add_argument("--quick", action="store_true", help="smaller sizes for a smoke run")
    ap.add_argument("--parts", default="1,2,3", help="which tables to run, e.g. 3")
    ap.add_argument("--json", type=Path, default=None, metavar="FILE", help="write the headline figures here")
    args = ap.parse_args()
    if args.quick:
        args.ids, args.devices, args.each = 100_000, 100, 5

    parts = {int(p) for p in args.parts.split(",")}
    headlines: dict[str, Any] = {"quick": bool(args.quick)}
    if 1 in parts:
        headlines["assignment"] = bench_assignment(args.ids)
    if 2 in parts:
        headlines["gate_to_all_stable"] = bench_gate_table(args.devices)
    if 3 in parts:
        headlines["lost_updates"] = bench_writers_table(args.writers, args.each)
    print_anchors()
    if args.json is not None:
        args.json.write_text(json.dumps(headlines, indent=2))


def bench_gate_table(n_devices: int) -> list[dict[str, float]]:
    table = Table(
        "poll every",
        "controller every",
        "devices",
        "canary records",
        "bad -> rollback",
        "rollback -> all stable",
        "bad -> all stable",
        title="2. failing gate to every device on stable (simulated time)",
    )
    rows = []
    for poll_s, ctl_s in ((60, 60), (300, 60), (900, 300)):
        r = bench_rollback(n_devices, poll_s, ctl_s, rate_per_min=2.0, seed=7)
        rows.append({"poll_s": poll_s, "controller_s": ctl_s,
                     "first_bad_to_all_stable_min": r["first_bad_to_all_stable_s"] / 60})
        table.add_row(
            f"{poll_s}s",
            f"{ctl_s}s",
            str(r["devices"]),
            str(r["canary_records_at_rollback"]),
            f"{r['first_bad_to_rollback_s']:.0f}s",
            f"{r['rollback_to_all_stable_s']:.0f}s",
            f"{r['first_bad_to_all_stable_s'] / 60:.1f} min",
        )
    console.print(table)
    return rows


def bench_writers_table(writers: int, each: int) -> list[dict[str, Any]]:
    table = Table(
        "store",
        "writers",
        "mode",
        "attempted",
        "succeeded",
        "applied",
        "lost",
        "seconds",
        "writer errors",
        title="3. lost updates on one channel (lost = writes reported successful - updates applied)",
    )
    lost: list[dict[str, Any]] = []
    tmp = Path(tempfile.mkdtemp(prefix="edgeops-race-"))
    local = open_store(str(tmp / "store"))
    targets = [("local dir", local, str(tmp / "store"), None)]
    proc = None
    try:
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        proc, endpoint = _moto()
        import boto3

        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="edgeops-bench")
        targets.append(
            (
                "S3 (moto server)",
                open_store("s3://edgeops-bench/b", endpoint),
                "s3://edgeops-bench/b",
                endpoint,
            )
        )
        for name, store, url, ep in targets:
            res = bench_lost_updates(store, url, ep, tmp / f"keys-{name.split()[0]}", writers, each)
            for mode, r in res.items():
                lost.append({"store": name, "mode": mode, "attempted": r["attempted"], "lost": r["lost"]})
                table.add_row(
                    name,
                    str(writers),
                    "compare-and-swap" if mode == "cas" else "plain PUT",
                    str(r["attempted"]),
                    str(r["succeeded"]),
                    str(r["applied"]),
                    str(r["lost"]),
                    f"{r['seconds']:.1f}",
                    "; ".join(r["failed_writers"])[:120] or "-",
                )
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
    console.print(table)
    return lost


def print_anchors() -> None:
    anchors = Table("anchor", "what it does", title="anchors")
    anchors.add_row(
        "AWS IoT Jobs", "abort config only cancels the job; devices keep what they installed"
    )
    anchors.add_row(
        "Firebase staged rollouts", "no automatic rollback; a person must stop the rollout"
    )
    anchors.add_row("DORA elite", "time to restore service < 1 hour")
    anchors.add_row(
        "edgeops", "table 2: gate-triggered rollback, every device on stable within the times above"
    )
    console.print(anchors)


if __name__ == "__main__":
    main()

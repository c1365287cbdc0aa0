"""Update-channel benchmark (issue 12): what a device pays to stay current, as bundles and
cohorts accumulate.

    .venv/bin/python benchmarks/channel.py [--bundles 10,100,1000] [--devices 20] [--quick] [--json FILE]

For each repository size (N bundles, N/20 cohorts, at least 2; bundle files in 2^bin_bits hash
bins) it measures, per device, median over --devices fresh devices:
- cold refresh: a device that holds only the root: root chain, timestamp, snapshot, targets and
  its cohort's role (what a newly provisioned device does), time and metadata bytes;
- warm refresh: the same device polling again with nothing new (timestamp only);
- verified download of one bundle (metadata.json + 3 files through the bundles role and bins),
  time, metadata bytes and target bytes.
Two clients on the same repository: ours (`device.channel`: tuf.ngclient over the store fetcher
reading the local directory) and the anchor, python-tuf's own `Updater` with its default
urllib3 fetcher over HTTP (the same directory served by http.server on loopback).

Anchor: python-tuf's client (PEP 458's design: TUF metadata with hash-bin delegation keeps
per-refresh metadata bounded as targets grow).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import tempfile
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from tuf.ngclient import Updater  # noqa: E402
from tuf.ngclient.urllib3_fetcher import Urllib3Fetcher  # noqa: E402

from device.channel import ChannelClient  # noqa: E402
from device.protocol import BundleMetadata, BundleRef, canonical_json  # noqa: E402
from device.store import LocalStore  # noqa: E402
from registry.channels import set_stable  # noqa: E402
from registry.tuf_keys import Keystore  # noqa: E402
from registry.tuf_repo import TufRepository, Txn  # noqa: E402

console = Console(width=150)


def _bundle(i: int, model_bytes: int) -> tuple[BundleRef, dict[str, bytes]]:
    """A synthetic bundle: the channel's cost depends on names, sizes and hashes, not weights."""
    files = {
        "model.tflite": hashlib.sha256(f"m{i}".encode()).digest() * (model_bytes // 32),
        "preprocessing.json": json.dumps({"i": i}).encode(),
        "labels.json": json.dumps([str(c) for c in range(10)]).encode(),
    }
    meta = BundleMetadata(
        model_name="digits",
        model_version=str(i + 1),
        target="tflite-f32",
        files={n: {"sha256": hashlib.sha256(b).hexdigest(), "size": len(b)} for n, b in files.items()},
        model_file="model.tflite",
        input_spec={},
        output_spec={},
        preprocessing_sha256=hashlib.sha256(files["preprocessing.json"]).hexdigest(),
    )
    raw = canonical_json(meta.to_dict())
    ref = BundleRef(hashlib.sha256(raw).hexdigest(), str(i + 1), "tflite-f32")
    return ref, {**files, "metadata.json": raw}


def build(root: Path, n_bundles: int, bin_bits: int, model_bytes: int) -> tuple[LocalStore, bytes, list, list[str]]:
    store = LocalStore(root / "store")
    repo = TufRepository(store, Keystore(root / "keys"))
    cohorts = [f"cohort-{c:03d}" for c in range(max(2, n_bundles // 20))]
    repo.init(cohorts, bin_bits=bin_bits)
    bundles = [_bundle(i, model_bytes) for i in range(n_bundles)]
    for start in range(0, n_bundles, 50):  # 50 bundles per transaction keeps setup quick

        def change(txn: Txn, chunk=bundles[start : start + 50]) -> None:
            for ref, files in chunk:
                for name, data in files.items():
                    txn.put_target(f"bundles/{ref.bundle_id}/{name}", data)
                txn.put_target(f"index/digits/{ref.model_version}/tflite-f32.json",
                               canonical_json(ref.to_dict()), {"edgeops": ref.to_dict()})

        repo.transact(change)
    for k, cohort in enumerate(cohorts):
        set_stable(repo, cohort, bundles[k % n_bundles][0])
    return store, repo.export_root(), bundles, cohorts


class CountingFetcher(Urllib3Fetcher):
    """python-tuf's own HTTP fetcher, counting the bytes it receives."""

    bytes_fetched = 0

    def _fetch(self, url: str):  # type: ignore[no-untyped-def]
        for chunk in super()._fetch(url):
            self.bytes_fetched += len(chunk)
            yield chunk


def _serve(directory: Path) -> tuple[ThreadingHTTPServer, str]:
    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(directory)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def _device_ours(store: LocalStore, root: bytes, where: Path, cohort: str) -> dict[str, float]:
    client = ChannelClient(store, where / "tuf", root)
    t0 = time.perf_counter()
    session = client.session()
    channel = session.channel(cohort)
    cold_s, cold_b = time.perf_counter() - t0, session.fetcher.bytes_fetched
    t0 = time.perf_counter()
    session = client.session()
    session.channel(cohort)
    warm_s, warm_b = time.perf_counter() - t0, session.fetcher.bytes_fetched
    assert channel.stable is not None
    t0 = time.perf_counter()
    target_bytes = 0
    prefix = f"bundles/{channel.stable.bundle_id}"
    meta = json.loads(session.download(f"{prefix}/metadata.json"))
    for name in meta["files"]:
        target_bytes += len(session.download(f"{prefix}/{name}"))
    dl_s = time.perf_counter() - t0
    dl_meta_b = session.fetcher.bytes_fetched - warm_b - target_bytes - len(canonical_json(meta))
    return {"cold_s": cold_s, "cold_bytes": cold_b, "warm_s": warm_s, "warm_bytes": warm_b,
            "download_s": dl_s, "download_metadata_bytes": dl_meta_b, "target_bytes": target_bytes}


def _device_stock(base_url: str, root: bytes, where: Path, cohort: str) -> dict[str, float]:
    """The same steps with python-tuf's Updater as shipped (urllib3 over HTTP)."""

    def updater(fetcher: CountingFetcher) -> Updater:
        cached = (where / "meta" / "root.json").exists()
        (where / "meta").mkdir(parents=True, exist_ok=True)
        return Updater(str(where / "meta"), f"{base_url}/tuf/metadata/", str(where / "targets"),
                       f"{base_url}/tuf/targets/", fetcher, bootstrap=None if cached else root)

    f = CountingFetcher()
    t0 = time.perf_counter()
    u = updater(f)
    u.refresh()
    info = u.get_targetinfo(f"cohorts/{cohort}/channel.json")
    cold_s, cold_b = time.perf_counter() - t0, f.bytes_fetched
    f2 = CountingFetcher()
    t0 = time.perf_counter()
    u2 = updater(f2)
    u2.refresh()
    u2.get_targetinfo(f"cohorts/{cohort}/channel.json")
    warm_s, warm_b = time.perf_counter() - t0, f2.bytes_fetched
    stable = info.custom["edgeops"]["stable"]["bundle_id"]
    t0 = time.perf_counter()
    target_bytes = 0
    prefix = f"bundles/{stable}"
    mi = u2.get_targetinfo(f"{prefix}/metadata.json")
    meta = json.loads(Path(u2.download_target(mi)).read_bytes())
    for name in meta["files"]:
        target_bytes += Path(u2.download_target(u2.get_targetinfo(f"{prefix}/{name}"))).stat().st_size
    dl_s = time.perf_counter() - t0
    dl_meta_b = f2.bytes_fetched - warm_b - target_bytes - mi.length
    return {"cold_s": cold_s, "cold_bytes": cold_b, "warm_s": warm_s, "warm_bytes": warm_b,
            "download_s": dl_s, "download_metadata_bytes": dl_meta_b, "target_bytes": target_bytes}


def run(n_bundles: int, devices: int, bin_bits: int, model_bytes: int) -> dict[str, object]:
    tmp = Path(tempfile.mkdtemp(prefix=f"edgeops-channel-{n_bundles}-"))
    t0 = time.perf_counter()
    store, root, _, cohorts = build(tmp, n_bundles, bin_bits, model_bytes)
    build_s = time.perf_counter() - t0
    server, url = _serve(store.root)
    try:
        rows: dict[str, list[dict[str, float]]] = {"ours": [], "python-tuf": []}
        for d in range(devices):
            cohort = cohorts[d % len(cohorts)]
            rows["ours"].append(_device_ours(store, root, tmp / "ours" / str(d), cohort))
            rows["python-tuf"].append(_device_stock(url, root, tmp / "stock" / str(d), cohort))
    finally:
        server.shutdown()
    meta_files = [k for k in store.list("tuf/metadata/")]
    out: dict[str, object] = {
        "bundles": n_bundles, "cohorts": len(cohorts), "bins": 2**bin_bits, "devices": devices,
        "build_s": build_s, "metadata_files": len(meta_files),
    }
    for client, rs in rows.items():
        out[client] = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundles", default="10,100,1000")
    ap.add_argument("--devices", type=int, default=20)
    ap.add_argument("--bin-bits", type=int, default=5)
    ap.add_argument("--model-bytes", type=int, default=64_000)
    ap.add_argument("--quick", action="store_true", help="10 and 100 bundles, 5 devices")
    ap.add_argument("--json", type=Path, help="write the results as JSON here")
    a = ap.parse_args()
    sizes = [10, 100] if a.quick else [int(x) for x in a.bundles.split(",")]
    devices = 5 if a.quick else a.devices
    results = [run(n, devices, a.bin_bits, a.model_bytes) for n in sizes]
    table = Table("bundles", "cohorts", "client", "cold refresh", "cold metadata", "warm refresh",
                  "warm metadata", "verified download", "download metadata", "model+files",
                  title=f"update channel per device (median of {devices} devices; {2**a.bin_bits} hash bins)")
    for r in results:
        for client in ("ours", "python-tuf"):
            m = r[client]  # type: ignore[index]
            table.add_row(str(r["bundles"]), str(r["cohorts"]), client,
                          f"{m['cold_s'] * 1000:.1f} ms", f"{m['cold_bytes'] / 1024:.1f} KiB",
                          f"{m['warm_s'] * 1000:.1f} ms", f"{m['warm_bytes'] / 1024:.2f} KiB",
                          f"{m['download_s'] * 1000:.1f} ms", f"{m['download_metadata_bytes'] / 1024:.1f} KiB",
                          f"{m['target_bytes'] / 1024:.1f} KiB")
    console.print(table)
    console.print("anchor: python-tuf's own Updater (urllib3 over HTTP on loopback) on the same repository; "
                  "ours reads the store directly (local directory or S3 through boto3).")
    if a.json:
        a.json.write_text(json.dumps(results, indent=2))
        console.print(f"results written to {a.json}")


if __name__ == "__main__":
    main()

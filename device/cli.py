"""`edgeops-agent`: run the device agent on a Linux device (a Raspberry Pi) against a store.

argparse and json only, so the agent keeps its small dependency set (numpy, ai-edge-litert,
cryptography, boto3, pyarrow). Configuration is one JSON file (docs/device.md); flags
override it. Frames come in as .npy files (uint8 HxW[xC] or a batch), dropped into an inbox
directory by the camera application, or through `infer FILE.npy`; results go out as JSON.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from device.agent import AgentConfig, DeviceAgent
from device.capabilities import DeviceCaps
from device.identity import public_key_b64
from device.inbox import serve_inbox
from device.protocol import encryption_key_id
from device.sampling import SamplingPolicy
from device.store import open_store
from edgeops.errors import ConfigError, EdgeOpsError

DEFAULTS: dict[str, Any] = {
    "endpoint_url": None,
    "state_dir": "/var/lib/edgeops-agent",
    "trusted_root_file": None,
    "model_key_files": [],
    "profile": {},
    "sampling": {},
    "manifest_poll_s": 900.0,
    "upload_interval_s": 3600.0,
    "thumb_size": 8,
    "num_threads": 2,
    "inbox": None,
    "outbox": None,
    "loop_interval_s": 1.0,
}


def load_config(path: Path | None, overrides: dict[str, Any]) -> dict[str, Any]:
    cfg = dict(DEFAULTS)
    if path is not None:
        try:
            cfg.update(json.loads(Path(path).read_text()))
        except FileNotFoundError:
            raise ConfigError("agent config not found", where=str(path)) from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"agent config is not JSON: {exc}", where=str(path)) from None
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    for key in ("store_url", "device_id", "cohort"):
        if not cfg.get(key):
            raise ConfigError(
                f"agent config needs {key!r} (in the JSON file or as --{key.replace('_', '-')})"
            )
    return cfg


def trusted_root(cfg: dict[str, Any]) -> bytes:
    """The update channel's root.json provisioned with the device (`edgeops keys export-root`).
    Read from local disk only: after the first refresh the agent keeps the newest verified
    root in its state directory and follows TUF's chain from there."""
    path = cfg.get("trusted_root_file")
    if not path:
        raise ConfigError("agent config needs 'trusted_root_file' (from `edgeops keys export-root`)")
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"trusted root unreadable: {exc.strerror}", where=str(path)) from None


def build_agent(cfg: dict[str, Any]) -> DeviceAgent:
    store = open_store(cfg["store_url"], endpoint_url=cfg["endpoint_url"])
    model_keys = {}
    for f in cfg["model_key_files"]:
        key = Path(f).read_bytes()
        model_keys[encryption_key_id(key)] = key
    config = AgentConfig(
        device_id=cfg["device_id"],
        cohort=cfg["cohort"],
        state_dir=Path(cfg["state_dir"]),
        trusted_root=trusted_root(cfg),
        caps=DeviceCaps.from_mapping(cfg["profile"]),
        model_keys=model_keys,
        policy=SamplingPolicy(**cfg["sampling"]),
        manifest_poll_s=float(cfg["manifest_poll_s"]),
        upload_interval_s=float(cfg["upload_interval_s"]),
        thumb_size=int(cfg["thumb_size"]),
        num_threads=int(cfg["num_threads"]),
    )
    return DeviceAgent(config, store)


def _result(agent: DeviceAgent, name: str, frames: np.ndarray) -> dict[str, Any]:
    pred = agent.infer(frames)
    assert agent.model is not None
    labels = agent.model.spec.labels
    return {
        "input": name,
        "model_version": pred.model_version,
        "bundle_id": pred.bundle_id,
        "latency_ms": round(pred.latency_ms, 3),
        "predictions": [
            {"label": labels[int(t)], "index": int(t), "confidence": round(float(c), 4)}
            for t, c in zip(pred.top1, pred.confidence, strict=True)
        ],
    }


def _ensure_model(agent: DeviceAgent) -> None:
    if agent.model is None:
        res = agent.sync()
        if agent.model is None:
            raise EdgeOpsError(f"no model to serve: {res.action} {res.reason or ''}".strip())


def run_loop(agent: DeviceAgent, cfg: dict[str, Any], once: bool) -> None:
    """Serve the inbox until SIGTERM/SIGINT; poll and upload on schedule; spool on exit."""
    inbox = Path(cfg["inbox"] or Path(cfg["state_dir"]) / "inbox")
    outbox = Path(cfg["outbox"] or Path(cfg["state_dir"]) / "outbox")
    inbox.mkdir(parents=True, exist_ok=True)
    outbox.mkdir(parents=True, exist_ok=True)
    stop = {"now": False}

    def _stop(*_: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        while not stop["now"]:
            agent.tick()
            if agent.model is not None:  # a bad file is quarantined, the loop goes on
                serve_inbox(agent, inbox, outbox, _result)
            if once:
                break
            time.sleep(float(cfg["loop_interval_s"]))
    finally:
        agent.close()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="edgeops-agent", description="The edgeops device agent.")
    ap.add_argument("--config", type=Path, help="agent JSON config (docs/device.md)")
    ap.add_argument("--store-url", help="s3://bucket/prefix or a directory")
    ap.add_argument("--endpoint-url", help="S3 endpoint (MinIO, a test server)")
    ap.add_argument("--device-id")
    ap.add_argument("--cohort")
    ap.add_argument("--state-dir")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("sync", help="read the manifest now; install the bundle it names if needed")
    p_inf = sub.add_parser("infer", help="run the model on frames in a .npy file; print JSON")
    p_inf.add_argument("frames", type=Path)
    sub.add_parser("flush", help="upload buffered telemetry now")
    sub.add_parser("status", help="print the installed model and the telemetry backlog")
    p_run = sub.add_parser("run", help="serve the inbox directory until stopped")
    p_run.add_argument("--once", action="store_true", help="one pass, then exit")
    a = ap.parse_args(argv)
    try:
        cfg = load_config(
            a.config,
            {
                "store_url": a.store_url,
                "endpoint_url": a.endpoint_url,
                "device_id": a.device_id,
                "cohort": a.cohort,
                "state_dir": a.state_dir,
            },
        )
        agent = build_agent(cfg)
        if a.cmd == "sync":
            res = agent.sync()
            agent.close()
            print(
                json.dumps({"action": res.action, "bundle_id": res.bundle_id, "reason": res.reason})
            )
        elif a.cmd == "infer":
            _ensure_model(agent)
            print(json.dumps(_result(agent, a.frames.name, np.load(a.frames))))
            agent.close()
        elif a.cmd == "flush":
            rep = agent.close()
            print(
                json.dumps(
                    {
                        "uploaded_records": rep.uploaded_records,
                        "pending_batches": rep.pending_batches,
                        "error": rep.error,
                    }
                )
            )
        elif a.cmd == "status":
            m = agent.model
            print(
                json.dumps(
                    {
                        "device_id": cfg["device_id"],
                        "cohort": cfg["cohort"],
                        "model_version": m.metadata.model_version if m else None,
                        "target": m.metadata.target if m else None,
                        "bundle_id": m.bundle_id if m else None,
                        "previous": agent.slots.state["previous"],
                        "manifest_revision": agent.slots.state["revision"],
                        "pending_records": agent.record_count_pending(),
                        # what `edgeops devices enroll --public-key` takes (device-made key)
                        "telemetry_key_id": agent.identity.key_id,
                        "telemetry_public_key": public_key_b64(agent.identity.public_key),
                    }
                )
            )
        else:
            run_loop(agent, cfg, a.once)
    except EdgeOpsError as exc:
        print(f"edgeops-agent: {exc}", file=sys.stderr)
        return exc.exit_code
    except (OSError, ValueError, TypeError) as exc:
        print(f"edgeops-agent: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The browser cohort's telemetry: what the page in headless Chromium reported, as the agent's own
records, signed with the browser device's key.

A page cannot keep a private key the way a provisioned device does, so the web app's backend
relays for it: each browser "device" (one per user session in production, one per simulated
browser here) has its own Ed25519 key, enrolled like any device (registry.enrolment), and the
relay writes the page's results through the same path as the agent: `device.records.build_batch`
(the wire schema, summary features, thumbnails by the sampling policy), `device.uploader.Uploader`
(spool, sign, content-addressed upload). Ingestion then checks the signature against the
enrolled key, exactly as for a Raspberry Pi.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import numpy as np

from device.identity import DeviceIdentity, load_or_create_key
from device.protocol import utcnow
from device.records import Pending, RecordSource, build_batch
from device.sampling import SamplingPolicy
from device.store import ObjectStore
from device.updater import LoadedModel
from device.uploader import FlushReport, Uploader


@dataclass(frozen=True)
class PageResult:
    """One frame the page classified: the frame at model input size (uint8), its probabilities,
    the page's time per frame, and the label when the user gave one."""

    ts: datetime
    image: np.ndarray
    probs: np.ndarray
    latency_ms: float
    label: int | None = None


class BrowserRelay:
    """One browser device's signer and uploader. State (key, spool, sequence counter) lives in
    `state_dir`, so records keep growing sequence numbers across sessions."""

    def __init__(self, store: ObjectStore, cohort: str, device_id: str, state_dir: Path,
                 clock: Callable[[], datetime] = utcnow, policy: SamplingPolicy | None = None,
                 thumb_size: int = 8) -> None:
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.identity = DeviceIdentity(device_id, cohort, load_or_create_key(self.state_dir / "device.key"))
        self.policy = policy or SamplingPolicy()
        self.source = RecordSource(device_id, cohort, self.policy, thumb_size)
        self.uploader = Uploader(store, cohort, device_id, self.state_dir / "spool", clock, identity=self.identity)

    def _take_seqs(self, n: int) -> int:
        path = self.state_dir / "next_record_seq"
        first = int(path.read_text()) if path.exists() else 0
        tmp = path.with_name(".next_record_seq.tmp")
        tmp.write_text(str(first + n))
        tmp.replace(path)  # reserved before use: a crash skips numbers, never repeats them
        return first

    def relay(self, model: LoadedModel, results: Sequence[PageResult]) -> FlushReport:
        """Spool the page's results in batches of the policy's size, then upload them."""
        items = [Pending(r.ts, "inference", model, r.image, np.asarray(r.probs, np.float32), r.latency_ms,
                         r.label) for r in results]
        step = self.policy.batch_records
        for i in range(0, len(items), step):
            chunk = items[i:i + step]
            first = self._take_seqs(len(chunk))
            chunk = [p._replace(inference_id=first + j) for j, p in enumerate(chunk)]
            self.uploader.spool(build_batch(self.source, chunk, first))
        return self.uploader.flush()


def page_model(bundle_id: str, metadata: Any, spec: Any, model_size: int) -> LoadedModel:
    """The model columns of the page's records (which bundle, model and version): the page runs
    the model, so there is no runner on this side."""
    return LoadedModel(bundle_id, metadata, spec, cast(Any, None), 0, model_size)

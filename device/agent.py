"""The device agent: keep the right verified model, serve it, sample what it sees, upload.

One object per device, no threads and no sleeping: the caller drives it (`infer` for each
frame or batch, `tick` now and then). Time comes from an injectable clock, so the fleet
simulator runs hundreds of agents in simulated hours and a Pi runs one in real time with
the same code. Faults never stop serving: a store that fails is retried later with backoff,
a manifest or bundle that fails a check is refused (reported in telemetry, remembered so
it is not fetched again) and the model in place keeps serving.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from device.capabilities import CapabilityError, DeviceCaps
from device.channel import ChannelClient, ChannelSession
from device.identity import DeviceIdentity, load_or_create_key
from device.preprocessing import normalize, to_unit
from device.protocol import BundleRef, choose, utcnow
from device.records import Pending, RecordSource, build_batch
from device.runtime import RuntimeLoadError, TFLiteRunner
from device.sampling import DailyBudget, EventBuffer, Reservoir, Sampler, SamplingPolicy
from device.state import RECOVERY_SEQ_JUMP
from device.store import ObjectStore
from device.updater import LoadedModel, ModelSlots, fetch_bundle, open_bundle
from device.uploader import FlushReport, Uploader
from edgeops.errors import EdgeOpsError, IntegrityError, StoreError

SEQ_BLOCK = 10_000
INFERENCE_KEY = "inference_reserved"  # high-water mark of inference ids, in state.json
LABELABLE = 4096  # uploaded inference ids remembered for labels that arrive later
KEEP_FLOAT_BYTES = 16_384  # a sampled input up to 64x64x1 float32 is kept as is, larger as uint8


class NoModelError(EdgeOpsError):
    """Inference was asked of a device that has never installed a model."""


@dataclass(frozen=True)
class AgentConfig:
    device_id: str
    cohort: str
    state_dir: Path
    trusted_root: bytes  # the update channel's root.json, provisioned with the device
    caps: DeviceCaps = DeviceCaps()
    model_keys: Mapping[str, bytes] = field(default_factory=dict)  # AES key id -> key
    policy: SamplingPolicy = SamplingPolicy()
    manifest_poll_s: float = 900.0
    upload_interval_s: float = 3600.0
    thumb_size: int = 8  # 0: no downscaled input in telemetry
    num_threads: int = 1
    seed: int = 0
    device_key: Ed25519PrivateKey | None = None  # None: <state_dir>/device.key (made if absent)


@dataclass(frozen=True)
class SyncResult:
    action: Literal["unchanged", "installed", "refused", "unreachable", "no_bundle"]
    bundle_id: str | None = None
    reason: str | None = None


class Predictions(NamedTuple):
    """What `infer` returns (a tuple: it is built once per frame on the hot path)."""

    top1: np.ndarray
    probs: np.ndarray
    latency_ms: float  # per inference
    bundle_id: str
    model_version: str
    first_id: int = 0  # inference ids are first_id, first_id + 1, ... (unique per device)

    @property
    def confidence(self) -> np.ndarray:
        return self.probs[np.arange(len(self.top1)), self.top1]

    @property
    def inference_ids(self) -> np.ndarray:
        """What `DeviceAgent.label` takes when the user labels one of these frames later."""
        return np.arange(self.first_id, self.first_id + len(self.top1), dtype=np.int64)


@dataclass
class AgentStats:
    inferences: int = 0
    sampled: int = 0
    spooled_records: int = 0
    uploaded_records: int = 0
    uploaded_bytes: int = 0
    refusals: int = 0
    installs: int = 0
    fallbacks: int = 0
    store_errors: int = 0
    late_labels: int = 0  # labels given after their inference, on their way to telemetry
    labels_unmatched: int = 0  # late labels of inferences that were never sampled (or too old)


class DeviceAgent:
    def __init__(
        self,
        config: AgentConfig,
        store: ObjectStore,
        clock: Callable[[], datetime] = utcnow,
        runners: MutableMapping[str, tuple[TFLiteRunner, tuple[int, int]]] | None = None,
        persist_budget: bool = True,
    ) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self._runners = runners
        self.slots = ModelSlots(config.state_dir)
        self.channel = ChannelClient(store, config.state_dir / "tuf", config.trusted_root)
        self._offline = False
        key = config.device_key or load_or_create_key(config.state_dir / "device.key")
        self.identity = DeviceIdentity(config.device_id, config.cohort, key)
        self.uploader = Uploader(
            store,
            config.cohort,
            config.device_id,
            config.state_dir / "spool",
            clock,
            seed=config.seed,
            identity=self.identity,
        )
        rng = np.random.default_rng(config.seed)
        self.sampler = Sampler(config.policy.sample_rate, rng)
        self.reservoir: Reservoir[Pending] = Reservoir(config.policy.buffer_size, rng)
        self.events: EventBuffer[Pending] = EventBuffer(config.policy.max_events)
        self.budget = DailyBudget(config.policy.daily_upload_bytes)
        self.budget.restore(self.slots.state.get("budget"))
        self._persist_budget = persist_budget
        self.stats = AgentStats()
        self.model: LoadedModel | None = None
        self._fallback: LoadedModel | None = None
        self._refused: dict[str, str] = {}
        self._manifest_refusal: str | None = None
        self._seq = int(self.slots.state["seq_reserved"])
        # ids already handed out may be above a torn state's mark: jump as the seqs do
        self._inference_id = int(self.slots.state.get(INFERENCE_KEY, 0)) + (
            RECOVERY_SEQ_JUMP if self.slots.recovered else 0
        )
        self._labelable: dict[int, LoadedModel] = {}  # uploaded id -> the model that ran it
        self._source = RecordSource(
            config.device_id,
            config.cohort,
            config.policy,
            config.thumb_size,
            config.caps.active_power_w,
        )
        self._bytes_per_record = 400.0
        self._next_poll: datetime | None = None
        self._next_upload: datetime | None = None
        if self.slots.recovered:  # a torn state.json: say so in telemetry
            self._event("error", self.slots.recovered, None)
        self._restore()

    # --- models ----------------------------------------------------------------------------
    def _open(self, ref: BundleRef, session: ChannelSession | None) -> LoadedModel:
        """From disk when `session` is None (re-verified by content address), else through TUF."""
        cfg = self.config
        vb = self.slots.read(ref) if session is None else fetch_bundle(session, ref)
        loaded = open_bundle(vb, cfg.caps, cfg.model_keys, cfg.num_threads, self._runners)
        if session is not None:
            self.slots.write(vb)
        return loaded

    def _restore(self) -> None:
        """After a restart: re-verify the stored current (else previous) model and serve it."""
        for slot in ("current", "previous"):
            ref = self.slots.ref(slot)
            if ref is None:
                continue
            try:
                self.model = self._open(ref, None)
            except IntegrityError as exc:
                self._event("refusal", f"stored {slot} model: {exc}", ref)
                continue
            if slot == "previous":
                self.slots.activate(ref)
            return

    def _swap(self, ref: BundleRef, loaded: LoadedModel, reason: str | None = None) -> None:
        self.slots.activate(ref)
        self._fallback, self.model = self.model, loaded
        self.stats.installs += 1
        self._event("swap", reason, ref)

    def sync(self) -> SyncResult:
        """Refresh the update channel (TUF) and move to the bundle it names for this device."""
        cfg = self.config
        try:
            session = self.channel.session()
            channel = session.channel(cfg.cohort)
        except IntegrityError as exc:
            reason = f"channel: {exc}"
            if reason == self._manifest_refusal:  # the same bad metadata, polled again
                return SyncResult("refused", reason=reason)
            self._manifest_refusal = reason
            return self._refuse(None, reason)
        except StoreError as exc:
            return self._unreachable(None, exc)
        self._manifest_refusal = None
        self._offline = False
        if channel.revision != self.slots.state["revision"]:
            self.slots.state["revision"] = channel.revision
            self.slots.save()
        ref = choose(channel, cfg.device_id)
        if ref is None:
            return SyncResult("no_bundle")
        if self.model is not None and self.model.bundle_id == ref.bundle_id:
            return SyncResult("unchanged", ref.bundle_id)
        if ref.bundle_id in self._refused:
            return SyncResult("refused", ref.bundle_id, self._refused[ref.bundle_id])
        try:
            if self._fallback is not None and self._fallback.bundle_id == ref.bundle_id:
                loaded = self._fallback  # a rollback: the previous model is still loaded
            else:
                on_disk = self.slots.ref("previous") == ref
                loaded = self._open(ref, None if on_disk else session)
        except IntegrityError as exc:
            # a valid bundle made for another class of device: the line names this cohort too
            reason = (
                f"cohort {cfg.cohort} cannot run this bundle: {exc}"
                if isinstance(exc, CapabilityError)
                else str(exc)
            )
            self._refused[ref.bundle_id] = reason
            return self._refuse(ref, reason)
        except StoreError as exc:
            return self._unreachable(ref, exc)
        self._swap(ref, loaded)
        return SyncResult("installed", ref.bundle_id)

    def _unreachable(self, ref: BundleRef | None, exc: StoreError) -> SyncResult:
        """The store is out of reach: keep serving the last verified model, and say so once
        per outage in telemetry (an `error` event naming the bundle served)."""
        self.stats.store_errors += 1
        if not self._offline:
            self._offline = True
            serving = self.model.bundle_id[:12] if self.model else "nothing (no verified model yet)"
            self._event(
                "error", f"offline: update channel unreachable ({exc}); serving {serving}", ref
            )
        return SyncResult("unreachable", ref.bundle_id if ref else None, str(exc))

    def _refuse(self, ref: BundleRef | None, reason: str) -> SyncResult:
        self.stats.refusals += 1
        self._event("refusal", reason, ref)
        return SyncResult("refused", ref.bundle_id if ref else None, reason)

    def fall_back(self, reason: str) -> bool:
        """Serve the previous model again (e.g. the current one fails at run time). The failed
        bundle is remembered as refused, so the next poll does not bring it straight back."""
        prev = self.slots.ref("previous")
        if prev is None:
            return False
        if self.model is not None:
            self._refused[self.model.bundle_id] = f"failed at run time: {reason}"
        try:
            loaded = (
                self._fallback
                if self._fallback and self._fallback.bundle_id == prev.bundle_id
                else self._open(prev, None)
            )
        except IntegrityError as exc:
            self._event("refusal", f"fallback model: {exc}", prev)
            return False
        self.stats.fallbacks += 1
        self._swap(prev, loaded, f"fallback: {reason}")
        return True

    # --- serving ---------------------------------------------------------------------------
    def infer(self, frames: np.ndarray, labels: np.ndarray | None = None) -> Predictions:
        """Frames as captured (uint8 or [0,1]) -> predictions; samples telemetry on the way.
        `labels`: the user's correction / confirmation per frame, -1 where none."""
        m = self.model
        if m is None:
            raise NoModelError("no model installed yet", where=self.config.device_id)
        x01 = to_unit(frames, m.spec)
        start = time.perf_counter()
        try:
            probs = m.runner.predict(normalize(x01, m.spec))
        except RuntimeLoadError as exc:
            self._event("error", f"inference failed: {exc}", None)
            if not self.fall_back(str(exc)):
                raise
            return self.infer(frames, labels)
        n = len(x01)
        latency = (time.perf_counter() - start) * 1000.0 / max(n, 1)
        top1 = probs.argmax(axis=1)
        self.stats.inferences += n
        first_id = self._take_inference_ids(n)
        picked = self.sampler.pick(n)
        if labels is not None:  # a labelled frame is always offered: labels are the scarcest
            picked = np.union1d(picked, np.flatnonzero(np.asarray(labels) >= 0))
        if len(picked):
            now = self.clock()
            # x01 is this call's own array: small inputs are kept as views (no copy, no
            # conversion on the hot path); large ones as uint8 to bound the reservoir's memory
            keep = (
                x01
                if x01[0].nbytes <= KEEP_FLOAT_BYTES
                else (x01[picked] * 255.0 + 0.5).astype(np.uint8)
            )
            offer = self.reservoir.offer
            for k, i in enumerate(picked):
                label = int(labels[i]) if labels is not None and labels[i] >= 0 else None
                offer(  # labelled records first: a correction is the scarcest telemetry
                    Pending(
                        now,
                        "inference",
                        m,
                        keep[i if keep is x01 else k],
                        probs[i],
                        latency,
                        label,
                        inference_id=first_id + int(i),
                    ),
                    label is not None,
                )
            self.stats.sampled += len(picked)
        return Predictions(top1, probs, latency, m.bundle_id, m.metadata.model_version, first_id)

    def label(self, inference_id: int, label: int) -> bool:
        """The user's label for an earlier inference (by the id `infer` returned). While the
        record waits in the buffer it is labelled there and takes priority; once uploaded, a
        `label` event names the inference and ingestion joins the two. False when the
        inference was never sampled (or is too old to remember): nothing to join it to."""
        if label < 0:
            raise ValueError(f"label must be >= 0, got {label}")
        if self.reservoir.promote(
            lambda p: p.inference_id == inference_id, lambda p: p._replace(label=int(label))
        ):
            self.stats.late_labels += 1
            return True
        model = self._labelable.get(inference_id)
        if model is None:
            self.stats.labels_unmatched += 1
            return False
        self.events.add(
            Pending(self.clock(), "label", model, label=int(label), inference_id=inference_id)
        )
        self.stats.late_labels += 1
        return True

    def _take_inference_ids(self, n: int) -> int:
        """Reserve n inference ids; the high-water mark is persisted in blocks (as seqs are)."""
        first = self._inference_id
        self._inference_id += n
        if self._inference_id > self.slots.state.get(INFERENCE_KEY, 0):
            self.slots.state[INFERENCE_KEY] = self._inference_id + SEQ_BLOCK
            self.slots.save()
        return first

    def _event(self, kind: str, reason: str | None, ref: BundleRef | None) -> None:
        self.events.add(Pending(self.clock(), kind, self.model, error=reason, ref=ref))

    def report_error(self, reason: str) -> None:
        """An `error` event in telemetry for a fault around the agent (e.g. a bad inbox file)."""
        self._event("error", reason, None)

    # --- telemetry -------------------------------------------------------------------------
    def _take_seqs(self, n: int) -> int:
        """Reserve n sequence numbers; the high-water mark is persisted in blocks."""
        first = self._seq
        self._seq += n
        if self._seq > self.slots.state["seq_reserved"]:
            self.slots.state["seq_reserved"] = self._seq + SEQ_BLOCK
            self.slots.save()
        return first

    def flush(self, online: bool = True, spool_all: bool = False) -> FlushReport:
        """Move sampled records into a spooled batch (within budget) and upload what is due.
        `spool_all`: write everything buffered to disk regardless of budget (before exiting)."""
        now = self.clock()
        if online or spool_all:
            room = self.budget.remaining(now) - sum(
                p.stat().st_size for p in self.uploader.pending()
            )
            limit = min(
                self.config.policy.batch_records, max(0, int(room / self._bytes_per_record))
            )
            items = self.events.drain() + self.reservoir.drain(None if spool_all else limit)
            if items:
                items.sort(key=lambda p: p.ts)
                data = build_batch(self._source, items, self._take_seqs(len(items)))
                self._remember(items)
                self.uploader.spool(data)
                self.stats.spooled_records += len(items)
                self._bytes_per_record = 0.5 * self._bytes_per_record + 0.5 * len(data) / len(items)
        report = self.uploader.flush(self.budget, online)
        self.stats.uploaded_records += report.uploaded_records
        self.stats.uploaded_bytes += report.uploaded_bytes
        if report.uploaded_bytes and self._persist_budget:
            self.slots.state["budget"] = self.budget.to_state()
            self.slots.save()
        if report.error:
            self.stats.store_errors += 1
        return report

    def _remember(self, items: list[Pending]) -> None:
        """Uploaded inference ids (bounded, oldest forgotten) for labels that come later."""
        for p in items:
            if p.event == "inference" and p.inference_id is not None and p.model is not None:
                self._labelable[p.inference_id] = p.model
        for old in list(self._labelable)[: max(0, len(self._labelable) - LABELABLE)]:
            del self._labelable[old]

    def tick(self, online: bool = True) -> None:
        """Periodic work: poll the manifest and upload when each is due (and online)."""
        now = self.clock()
        if online and (self._next_poll is None or now >= self._next_poll):
            self.sync()
            self._next_poll = now + timedelta(seconds=self.config.manifest_poll_s)
        if self._next_upload is None or now >= self._next_upload:
            self.flush(online)
            self._next_upload = now + timedelta(seconds=self.config.upload_interval_s)

    def close(self) -> FlushReport:
        """Before the process exits: everything buffered goes to the spool, then one upload try."""
        return self.flush(online=True, spool_all=True)

    @property
    def evicted(self) -> int:
        """Sampled records the reservoir dropped by design (not losses)."""
        return self.reservoir.evicted

    def record_count_pending(self) -> int:
        return len(self.reservoir) + len(self.events) + self.uploader.pending_records()


__all__ = [
    "AgentConfig",
    "AgentStats",
    "DeviceAgent",
    "NoModelError",
    "Predictions",
    "SyncResult",
]

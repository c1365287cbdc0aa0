"""The fleet simulator: many real agents, in simulated time, on held-out real images.

Every simulated device is a real `DeviceAgent` with its own state directory, spool, sampling
and budget; it reads its cohort's signed manifest from the real store, verifies and installs
bundles, runs the real LiteRT interpreter (one interpreter shared per bundle, to fit hundreds
of devices in one process), and uploads Parquet telemetry. The simulator supplies what the
field would: frames drawn from the field pool (`field_pool`: images no model trained, was
chosen or was tested on) through a drift scenario, user
corrections, offline windows, and a flaky network between each device and the store.
At the end the network is restored, every device uploads what it still holds, and the
store is read back to count each record: `records_lost` is measured, not assumed.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from device.agent import AgentConfig, DeviceAgent
from device.capabilities import DeviceCaps
from device.network import Link
from device.runtime import TFLiteRunner
from device.sampling import SamplingPolicy
from device.scenarios import Scenario
from device.store import ObjectStore
from device.telemetry import read_batch
from device.uploader import TELEMETRY_PREFIX
from edgeops.errors import ConfigError

if TYPE_CHECKING:
    from edgeops.params import FleetParams

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class FramePool:
    """Frames a simulated fleet may see, (N,H,W,C) [0, 1] with integer labels and class names."""

    x01: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]


def field_pool(prepared_dir: Path | str) -> FramePool:
    """The field split of a prepared data directory: images no model trained, was chosen or was
    tested on. Never the train, val or test arrays; DataError when there is no field split."""
    import json

    from edgeops.errors import DataError

    root = Path(prepared_dir)
    try:
        if (root / "x_field.npy").exists():  # uint8 per split (components/prepared.py)
            x = np.load(root / "x_field.npy", mmap_mode="r").astype(np.float32) / np.float32(255.0)
            y = np.load(root / "y_field.npy")
        else:  # prepared before the uint8 format
            with np.load(root / "arrays.npz") as arrays:
                x, y = arrays["x_field"], arrays["y_field"]
        classes = tuple(json.loads((root / "preprocessing.json").read_text())["labels"])
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(f"no field split to draw frames from ({exc}); prepare with "
                        "prepare.field_fraction > 0", where=str(root)) from exc
    if len(x) == 0:
        raise DataError("the field split is empty; prepare with a larger prepare.field_fraction",
                        where=str(root))
    return FramePool(x.astype(np.float32), y.astype(np.int64), classes)


@dataclass(frozen=True)
class CohortSummary:
    cohort: str
    devices: int
    inferences: int
    accuracy: float | None  # top-1 against the truth the field produced (all frames)
    accuracy_before_onset: float | None
    accuracy_after_onset: float | None
    models: dict[str, int]  # model version -> devices running it at the end
    refusals: int  # refusal events (a device reports each refused bundle or metadata once)
    refusing_devices: int = 0  # devices that refused anything during the run


@dataclass(frozen=True)
class FleetSummary:
    devices: int
    cohorts: tuple[CohortSummary, ...]
    scenario: str
    onset_hours: float
    hours: float
    start: datetime
    end: datetime
    inferences: int
    records_sampled: int  # offered to the reservoirs
    records_evicted: int  # dropped by the bounded reservoirs, by design
    records_spooled: int  # written to a batch (incl. events)
    records_uploaded: int  # acknowledged by the store
    records_in_store: int  # read back from the store at the end
    records_pending: int  # still on the devices (budget, offline) at the end
    records_lost: int  # spooled - in store - pending: the goal is 0
    refusals: int
    installs: int
    store_errors: int
    bytes_uploaded: int
    bytes_per_device_per_day: float
    wall_s: float
    device_hours_per_s: float


def _caps(profile: DeviceCaps | Mapping[str, Any]) -> DeviceCaps:
    return profile if isinstance(profile, DeviceCaps) else DeviceCaps.from_mapping(profile)


def _accuracy(hits: int, total: int) -> float | None:
    return hits / total if total else None


def _count_store(store: ObjectStore, cohort: str, device_ids: set[str]) -> int:
    rows = 0
    for key in store.list(f"{TELEMETRY_PREFIX}/{cohort}/"):
        if key.split("/")[-2] in device_ids:
            rows += read_batch(store.get(key), where=key).num_rows
    return rows


def _holdings(store: ObjectStore, agents: list[tuple[str, DeviceAgent, Link]]) -> tuple[int, int]:
    """(rows in the store, rows spooled on the devices) for these devices: the loss ledger."""
    in_store = 0
    for cohort in dict.fromkeys(c for c, _, _ in agents):
        in_store += _count_store(
            store, cohort, {a.config.device_id for c, a, _ in agents if c == cohort}
        )
    return in_store, sum(a.uploader.pending_records() for _, a, _ in agents)


def simulate(
    store: ObjectStore,
    cohorts: list[str],
    images: np.ndarray,
    labels: np.ndarray,
    scenario: Scenario,
    params: FleetParams,
    trusted_root: bytes,
    profiles_by_cohort: Mapping[str, DeviceCaps | Mapping[str, Any]],
    *,
    model_keys: Mapping[str, bytes] | None = None,
    start: datetime | None = None,
    state_dir: Path | None = None,
    progress: Progress | None = None,
    on_step: Callable[[float, datetime], None] | None = None,
    enrol: Callable[[str, str, Any], object] | None = None,
    thumbnails: Mapping[str, str] | None = None,
) -> FleetSummary:
    """Run `params.devices_per_cohort` agents per cohort for `params.hours` simulated hours.

    `images`: held-out frames, (N,H,W,C) float in [0,1] or uint8, with integer `labels`.
    `state_dir`: devices keep their state there across calls (stable device ids); None uses a
    temporary directory and run-unique device ids. `on_step(hours, now)` runs after each step
    (a rollout controller can move manifests there). `progress(step, steps)` for a UI.
    `thumbnails`: per cohort, which records may carry a thumbnail (devices.yaml; default labelled).
    """
    missing = [c for c in cohorts if c not in profiles_by_cohort]
    if missing:
        raise ConfigError(f"no device profile for cohort(s) {missing}")
    x01 = (
        images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images.astype(np.float32)
    )
    labels = np.asarray(labels)
    rng = np.random.default_rng(params.seed)
    now = (start or datetime.now(UTC)).replace(microsecond=0)
    t0 = now
    root = Path(state_dir) if state_dir else Path(tempfile.mkdtemp(prefix="edgeops-fleet-"))
    run = "" if state_dir else f"{uuid.uuid4().hex[:6]}-"

    def clock() -> datetime:  # every agent reads the simulated time
        return now

    runners: dict[str, tuple[TFLiteRunner, tuple[int, int]]] = {}
    policy = SamplingPolicy(params.sample_rate, params.buffer_size, params.daily_upload_bytes)
    agents: list[tuple[str, DeviceAgent, Link]] = []
    for cohort in cohorts:
        caps = _caps(profiles_by_cohort[cohort])
        for i in range(params.devices_per_cohort):
            device_id = f"{cohort}-{run}{i:04d}"
            link = Link(store)
            cfg = AgentConfig(
                device_id=device_id,
                cohort=cohort,
                state_dir=root / device_id,
                trusted_root=trusted_root,
                caps=caps,
                model_keys=dict(model_keys or {}),
                policy=replace(policy, thumbnails=(thumbnails or {}).get(cohort, policy.thumbnails)),
                manifest_poll_s=params.manifest_poll_minutes * 60,
                upload_interval_s=params.upload_interval_minutes * 60,
                thumb_size=params.thumb_size,
                seed=int(rng.integers(0, 2**31)),
            )
            agent = DeviceAgent(cfg, link, clock=clock, runners=runners)
            if enrol is not None:
                enrol(device_id, cohort, agent.identity.public_key)
            agents.append((cohort, agent, link))

    baseline = _holdings(store, agents)
    step_h = params.step_minutes / 60.0
    steps = max(1, int(round(params.hours / step_h)))
    p_off = (
        params.offline_fraction
        * step_h
        / (params.mean_offline_hours * (1 - params.offline_fraction) + 1e-9)
    )
    p_on = min(1.0, step_h / params.mean_offline_hours)
    offline = np.zeros(len(agents), dtype=bool)
    hits: dict[tuple[str, bool], list[int]] = {}
    wall = time.perf_counter()
    for step in range(steps):
        hours = step * step_h
        now = t0 + timedelta(hours=hours)
        flip = rng.random(len(agents))
        offline = np.where(offline, flip >= p_on, flip < p_off)
        for k, (cohort, agent, link) in enumerate(agents):
            link.down = bool(rng.random() < params.store_failure_rate)
            agent.tick(online=not offline[k])
            if agent.model is None:
                continue
            n = int(rng.poisson(params.inferences_per_hour * step_h))
            if n == 0:
                continue
            x, y = scenario.draw(x01, labels, n, hours, rng)
            feedback = np.where(rng.random(n) < params.label_rate, y, -1)
            pred = agent.infer(np.round(x * 255).astype(np.uint8), feedback)
            h = hits.setdefault((cohort, scenario.active(hours)), [0, 0])
            h[0] += int((pred.top1 == y).sum())
            h[1] += n
        if on_step is not None:
            on_step(hours + step_h, now)
        if progress is not None:
            progress(step + 1, steps)
    now = t0 + timedelta(hours=steps * step_h)
    for _, agent, link in agents:  # the network comes back: everyone uploads what it holds
        link.down = False
        agent.flush(online=True)
    wall_s = time.perf_counter() - wall
    return _summarise(store, agents, hits, scenario, baseline, t0, now, wall_s)


def _summarise(
    store: ObjectStore,
    agents: list[tuple[str, DeviceAgent, Link]],
    hits: dict[tuple[str, bool], list[int]],
    scenario: Scenario,
    baseline: tuple[int, int],
    t0: datetime,
    end: datetime,
    wall_s: float,
) -> FleetSummary:
    per: list[CohortSummary] = []
    for cohort in dict.fromkeys(c for c, _, _ in agents):
        mine = [a for c, a, _ in agents if c == cohort]
        before, after = hits.get((cohort, False), [0, 0]), hits.get((cohort, True), [0, 0])
        models: dict[str, int] = {}
        for a in mine:
            v = a.model.metadata.model_version if a.model else "none"
            models[v] = models.get(v, 0) + 1
        per.append(
            CohortSummary(
                cohort=cohort,
                devices=len(mine),
                inferences=sum(a.stats.inferences for a in mine),
                accuracy=_accuracy(before[0] + after[0], before[1] + after[1]),
                accuracy_before_onset=_accuracy(*before),
                accuracy_after_onset=_accuracy(*after),
                models=models,
                refusals=sum(a.stats.refusals for a in mine),
                refusing_devices=sum(a.stats.refusals > 0 for a in mine),
            )
        )
    all_agents = [a for _, a, _ in agents]
    spooled = sum(a.stats.spooled_records for a in all_agents)
    in_store, pending = _holdings(store, agents)
    in_store -= baseline[0]
    uploaded_bytes = sum(a.stats.uploaded_bytes for a in all_agents)
    hours = (end - t0).total_seconds() / 3600
    return FleetSummary(
        devices=len(all_agents),
        cohorts=tuple(per),
        scenario=scenario.name,
        onset_hours=scenario.onset_hours,
        hours=hours,
        start=t0,
        end=end,
        inferences=sum(a.stats.inferences for a in all_agents),
        records_sampled=sum(a.stats.sampled for a in all_agents),
        records_evicted=sum(a.evicted for a in all_agents),
        records_spooled=spooled,
        records_uploaded=sum(a.stats.uploaded_records for a in all_agents),
        records_in_store=in_store,
        records_pending=pending,
        records_lost=spooled + baseline[1] - in_store - pending,
        refusals=sum(a.stats.refusals for a in all_agents),
        installs=sum(a.stats.installs for a in all_agents),
        store_errors=sum(a.stats.store_errors for a in all_agents),
        bytes_uploaded=uploaded_bytes,
        bytes_per_device_per_day=uploaded_bytes / max(len(all_agents), 1) / max(hours / 24, 1e-9),
        wall_s=wall_s,
        device_hours_per_s=len(all_agents) * hours / max(wall_s, 1e-9),
    )

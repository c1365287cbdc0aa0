"""The browser cohort's devices: its published bundle, page included, run by headless Chromium,
their telemetry signed and uploaded like any device's.

The web app's users run the page shipped in the cohort's current ONNX bundle; here that page runs
in Debian's headless Chromium on field frames (never train, validation or test images), drawn
through the fleet's drift scenario over the simulated hours, after the bundle was read and
verified through the update channel as a device would. Each simulated browser is a device with
its own enrolled key: device.browser_relay turns what its page reported into the agent's records
(same schema, same signature), so ingestion, monitoring and the rollout gates see the browser
cohort like any other. A browser that cannot start, or a cohort with nothing published, is one
line: the rest of the fleet run goes on.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any


def field_frames(x01: Any, labels: Any, scenario: Any, n: int, hours: float, step_minutes: float, seed: int
            ) -> tuple[Any, Any, list[float]]:
    """n field frames spread over the simulated hours, each drawn as the scenario shapes the field
    at its time: (uint8 frames, true labels, hours since start)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    steps = max(1, round(hours * 60 / step_minutes))
    per = np.diff(np.linspace(0, n, steps + 1).round().astype(int))
    xs, ys, at = [], [], []
    for k, m in enumerate(per):
        if m == 0:
            continue
        h = (k + 0.5) * hours / steps
        x, y = scenario.draw(x01, labels, int(m), h, rng) if scenario is not None else (
            x01[(idx := rng.integers(0, len(labels), int(m)))], np.asarray(labels)[idx])
        xs.append(x)
        ys.append(y)
        at += [h] * int(m)
    images = np.round(np.clip(np.concatenate(xs), 0, 1) * 255).astype(np.uint8)
    return images, np.concatenate(ys), at


def run_browser_cohort(settings: Any, cohort: str, x01: Any, labels: Any, *, scenario: Any = None,
                       params: Any = None, start: datetime | None = None, state_dir: Path | None = None
                       ) -> str:
    """One line for the fleet summary: the page's top-1 accuracy on the field frames and the records
    its devices uploaded, or why not."""
    import numpy as np

    from components.web_target import PAGE_FILE, BrowserError, browser_predict
    from device.browser_relay import BrowserRelay, PageResult, page_model
    from device.preprocessing import PreprocessingSpec
    from device.protocol import choose
    from device.sampling import SamplingPolicy
    from edgeops.errors import EdgeOpsError, IntegrityError
    from registry.bundles import read_bundle
    from registry.channel_access import channel_repository
    from registry.channels import read_channel
    from registry.enrolment import simulator_enroller

    params = params or settings.params().fleet
    repo = channel_repository(settings)
    if not repo.keystore.has_root() or not repo.exists():
        return f"cohort {cohort}: nothing published for the browser yet (no update channel)"
    txn = repo.begin()
    channel = read_channel(txn, cohort)
    if channel is None or channel.stable is None:
        return f"cohort {cohort}: nothing published for the browser yet"
    devices = [f"{cohort}-browser-{d:03d}" for d in range(params.devices_per_cohort)]
    # what the agents sample and upload: inferences per hour x hours x sample rate, per device
    n = max(len(devices), min(2000, round(params.inferences_per_hour * params.hours * params.sample_rate
                                           * len(devices))))
    images, y, at = field_frames(x01, labels, scenario, n, params.hours, params.step_minutes, params.seed)
    mine = {dev: list(range(d, n, len(devices))) for d, dev in enumerate(devices)}
    runs_on: dict[str, list[str]] = {}  # bundle id -> the browsers that run it (stable, or canary bucket)
    refs = {}
    for dev in devices:
        ref = choose(channel, dev)
        assert ref is not None  # a stable exists
        refs[ref.bundle_id] = ref
        runs_on.setdefault(ref.bundle_id, []).append(dev)
    probs = np.zeros((n, 0), np.float32)
    pages: dict[str, tuple[Any, float]] = {}  # bundle id -> (LoadedModel, ms per frame)
    for bundle_id, devs in runs_on.items():
        try:
            bundle = read_bundle(repo, refs[bundle_id], txn=txn)
        except IntegrityError as exc:
            return f"cohort {cohort}: bundle refused: {exc}"
        if PAGE_FILE not in bundle.files:
            return f"cohort {cohort}: bundle {bundle_id[:12]} has no {PAGE_FILE} for the browser"
        spec = PreprocessingSpec.from_json(bundle.files["preprocessing.json"].decode())
        idx = sorted(i for dev in devs for i in mine[dev])
        try:
            run = browser_predict(bundle.model_bytes, spec, images[idx], page_html=bundle.files[PAGE_FILE])
        except BrowserError as exc:
            return f"cohort {cohort}: browser check not run: {exc}"
        if probs.shape[1] == 0:
            probs = np.zeros((n, run.probs.shape[1]), np.float32)
        probs[idx] = run.probs
        pages[bundle_id] = (page_model(bundle_id, bundle.metadata, spec, len(bundle.model_bytes)),
                            run.infer_ms / len(idx))
    accuracy = float((probs.argmax(axis=1) == np.asarray(y)).mean())
    t0 = (start or datetime.now(UTC)).replace(microsecond=0)
    end = t0 + timedelta(hours=params.hours)
    labelled = np.random.default_rng(params.seed + 1).random(n) < params.label_rate  # users who confirm
    root = Path(state_dir or settings.home / "fleet") / "browsers"
    enrol = simulator_enroller(settings.keys_dir)
    thumbnails = settings.devices().cohorts[cohort].thumbnails  # the cohort's privacy setting
    policy = SamplingPolicy(sample_rate=params.sample_rate, buffer_size=params.buffer_size,
                            daily_upload_bytes=params.daily_upload_bytes, thumbnails=thumbnails)
    uploaded = 0
    try:
        for bundle_id, devs in runs_on.items():
            model, ms = pages[bundle_id]
            for dev in devs:
                relay = BrowserRelay(repo.store, cohort, dev, root / dev, clock=lambda end=end: end,
                                     policy=policy, thumb_size=params.thumb_size)
                enrol(dev, cohort, relay.identity.public_key)
                results = [PageResult(t0 + timedelta(hours=at[i]), images[i], probs[i], ms,
                                      int(y[i]) if labelled[i] else None) for i in mine[dev]]
                uploaded += relay.relay(model, results).uploaded_records
    except EdgeOpsError as exc:
        return f"cohort {cohort}: page ran, telemetry not uploaded: {exc}"
    versions = ", ".join(f"v{refs[b].model_version} on {len(d)}" for b, d in runs_on.items())
    return (f"the bundle's page ({versions} browsers) in headless Chromium, ONNX Runtime Web: "
            f"top-1 {accuracy:.1%} on {n} field frames, {np.mean([m for _, m in pages.values()]):.2f} ms per "
            f"frame; {len(devices)} browser devices uploaded {uploaded} signed records")

"""The browser cohort's device: its published bundle, page included, run by headless Chromium.

The web app's users run the page shipped in the cohort's current ONNX bundle; here that page runs
in Debian's headless Chromium on field frames (never train, validation or test images), after the
bundle was read and verified through the update channel as a device would. A browser that cannot
start, or a cohort with nothing published, is one line: the rest of the fleet run goes on.
"""

from __future__ import annotations

from typing import Any


def run_browser_cohort(settings: Any, cohort: str, x01: Any, labels: Any, frames: int = 32) -> str:
    """One line for the fleet summary: the page's top-1 accuracy on `frames` field frames, or why not."""
    import numpy as np

    from components.web_target import PAGE_FILE, BrowserError, browser_predict
    from device.preprocessing import PreprocessingSpec
    from edgeops.channel import channel_repository
    from edgeops.errors import IntegrityError
    from registry.bundles import read_bundle
    from registry.channels import read_channel

    repo = channel_repository(settings)
    txn = repo.begin()
    channel = read_channel(txn, cohort)
    if channel is None or channel.stable is None:
        return f"cohort {cohort}: nothing published for the browser yet"
    try:
        bundle = read_bundle(repo, channel.stable, txn=txn)
    except IntegrityError as exc:
        return f"cohort {cohort}: bundle refused: {exc}"
    if PAGE_FILE not in bundle.files:
        return f"cohort {cohort}: bundle {channel.stable.bundle_id[:12]} has no {PAGE_FILE} for the browser"
    spec = PreprocessingSpec.from_json(bundle.files["preprocessing.json"].decode())
    n = min(frames, len(x01))
    images = np.round(np.asarray(x01[:n]) * 255).astype(np.uint8)
    try:
        run = browser_predict(bundle.model_bytes, spec, images, page_html=bundle.files[PAGE_FILE])
    except BrowserError as exc:
        return f"cohort {cohort}: browser check not run: {exc}"
    accuracy = float((run.probs.argmax(axis=1) == np.asarray(labels[:n])).mean())
    return (f"the bundle's page (v{channel.stable.model_version}) in headless Chromium, ONNX Runtime Web: "
            f"top-1 {accuracy:.1%} on {n} field frames, {run.infer_ms / n:.1f} ms per frame")

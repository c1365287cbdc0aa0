"""Shared steps for rollout tests: register + publish a real TFLite variant, measure an arm."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import numpy as np

from device.protocol import BundleRef
from device.runtime import TFLiteRunner
from registry.bundles import publish_bundle
from registry.controller import ArmStats
from registry.mlflow_models import Lineage, register_variant

LINEAGE = Lineage("md5:data", "abc123", "run", "models:/m-parent")


class Blessed:
    blessed = True
    reasons: tuple[str, ...] = ()

    def __init__(self, target: str = "tflite-f32") -> None:
        self.target = target


def release(
    client, run_id, repo, path: Path, spec, x, *, target="tflite-f32", blessed=True,
    model_name: str = "digits",
) -> tuple[str, BundleRef]:
    """Register (releasable when blessed) and publish; returns (version, bundle ref)."""
    mv = register_variant(
        client,
        run_id,
        path,
        spec,
        x[:2],
        model_name=model_name,
        target=target,
        lineage=Lineage(LINEAGE.data_version, LINEAGE.git_commit, uuid.uuid4().hex, LINEAGE.parent_model),
        blessing=Blessed(target) if blessed else None,
        releasable=blessed,
    )
    ref = publish_bundle(
        repo, path, spec, model_name=model_name, model_version=mv.version, target=target
    )
    return str(mv.version), ref


def measure_arm(path: Path, x: np.ndarray, y: np.ndarray) -> ArmStats:
    """Run the real interpreter over labelled images the way a device arm would report them."""
    runner = TFLiteRunner(path)
    lat, probs = [], []
    for i in range(len(x)):
        t0 = time.perf_counter()
        probs.append(runner.predict(x[i : i + 1])[0])
        lat.append((time.perf_counter() - t0) * 1000)
    p = np.stack(probs)
    top1 = p.argmax(1)
    hist = np.bincount(top1, minlength=p.shape[1]) / len(top1)
    return ArmStats(
        count=len(x),
        error_rate=0.0,
        p95_latency_ms=float(np.percentile(lat, 95)),
        mean_confidence=float(p.max(1).mean()),
        prediction_hist=tuple(hist.tolist()),
        labelled=len(y),
        accuracy=float((top1 == y).mean()),
    )

"""Training-time drift references, one per deployed variant, stored with the release.

Why per variant: an int8 model's probabilities differ from the float model's, so prediction
drift must compare a cohort's telemetry with what *its* variant produced on the training data.
The feature columns come from the same `device.features.summary_features` the agent runs, so
reference and telemetry cannot disagree on what a feature means.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Protocol

import numpy as np
import pandas as pd

from device.features import FEATURE_NAMES, summary_features
from device.preprocessing import PreprocessingSpec, normalize
from device.store import ObjectStore
from edgeops.errors import MonitoringError, StoreError

_BATCH = 256


class Predictor(Protocol):
    def predict(self, x: np.ndarray) -> np.ndarray: ...


def reference_key(bundle_id: str) -> str:
    return f"references/{bundle_id}/reference.parquet"


def build_reference(
    x01: np.ndarray, labels: np.ndarray | None, runner: Predictor, spec: PreprocessingSpec
) -> pd.DataFrame:
    """Features, outputs (probs/top1/confidence) and labels of `x01` through one variant."""
    if x01.ndim != 4 or len(x01) == 0:
        raise MonitoringError(
            f"reference images must be a non-empty (N,H,W,C) array, got {x01.shape}",
            where="build_reference",
        )
    if labels is not None and len(labels) != len(x01):
        raise MonitoringError(
            f"{len(labels)} labels for {len(x01)} images", where="build_reference"
        )
    feats = summary_features(x01)
    probs = np.concatenate(
        [
            np.asarray(runner.predict(normalize(x01[i : i + _BATCH], spec)), dtype=np.float32)
            for i in range(0, len(x01), _BATCH)
        ]
    )
    df = pd.DataFrame(feats.astype(np.float32), columns=[f"f_{n}" for n in FEATURE_NAMES])
    df["probs"] = list(probs)
    df["top1"] = probs.argmax(axis=1).astype(np.int32)
    df["confidence"] = probs.max(axis=1).astype(np.float32)
    df["label"] = pd.array(labels if labels is not None else [pd.NA] * len(df), dtype="Int32")
    return df


def save_reference(store: ObjectStore, bundle_id: str, df: pd.DataFrame) -> str:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False, compression="zstd")
    key = reference_key(bundle_id)
    store.put(key, buf.getvalue())
    return key


def load_reference(store: ObjectStore, bundle_id: str) -> pd.DataFrame:
    key = reference_key(bundle_id)
    try:
        data = store.get(key)
    except StoreError as exc:
        raise MonitoringError(
            f"no drift reference for bundle {bundle_id}: {exc}", where=key
        ) from exc
    df = pd.read_parquet(io.BytesIO(data))
    df["probs"] = [np.asarray(p, dtype=np.float32) for p in df["probs"]]
    return df


def ensure_reference(
    store: ObjectStore, bundle_id: str, build: Callable[[], pd.DataFrame]
) -> pd.DataFrame:
    """Reuse the stored reference; build and store it only when this variant has none yet."""
    if store.exists(reference_key(bundle_id)):
        return load_reference(store, bundle_id)
    df = build()
    save_reference(store, bundle_id, df)
    return df

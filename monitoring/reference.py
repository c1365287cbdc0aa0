"""Monitoring references, one per deployed variant, stored with the release: the held-out
validation split through the shipped variant (never the training data, which the model has fit).

Why per variant: an int8 model's probabilities differ from the float model's, so prediction
drift must compare a cohort's telemetry with what *its* variant produced on held-out data.
The feature columns come from the same `device.features.summary_features` the agent runs, so
reference and telemetry cannot disagree on what a feature means.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from typing import Protocol

import numpy as np
import pandas as pd

from components.calibration import Calibration, fit_temperature
from device.encryption import is_sealed, open_sealed, seal
from device.features import FEATURE_NAMES, summary_features
from device.preprocessing import PreprocessingSpec, normalize
from device.store import ObjectStore
from edgeops.errors import IntegrityError, MonitoringError, RegistryError, StoreError

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
    probs = variant_probs(runner, x01, spec)
    df = pd.DataFrame(feats.astype(np.float32), columns=[f"f_{n}" for n in FEATURE_NAMES])
    df["probs"] = list(probs)
    df["top1"] = probs.argmax(axis=1).astype(np.int32)
    df["confidence"] = probs.max(axis=1).astype(np.float32)
    df["label"] = pd.array(labels if labels is not None else [pd.NA] * len(df), dtype="Int32")
    return df


def variant_probs(runner: Predictor, x01: np.ndarray, spec: PreprocessingSpec) -> np.ndarray:
    """The variant's output probabilities on [0,1] images, in batches."""
    return np.concatenate(
        [
            np.asarray(runner.predict(normalize(x01[i : i + _BATCH], spec)), dtype=np.float32)
            for i in range(0, len(x01), _BATCH)
        ]
    )


def fit_variant_temperature(
    runner: Predictor, x01: np.ndarray, labels: np.ndarray, spec: PreprocessingSpec
) -> Calibration:
    """Temperature scaling of this variant's own outputs on held-out images (validation)."""
    return fit_temperature(variant_probs(runner, x01, spec), np.asarray(labels))


def load_temperature(store: ObjectStore, bundle_id: str) -> float:
    """The temperature shipped in the bundle's preprocessing spec, read through the bundle's
    metadata (size and hash checked); 1.0 for a bundle this store does not hold."""
    from registry.bundles import bundle_file

    try:
        return PreprocessingSpec.from_json(bundle_file(store, bundle_id, "preprocessing.json")).temperature
    except (StoreError, RegistryError):  # no such bundle here (tampered ones raise IntegrityError)
        return 1.0


def save_reference(
    store: ObjectStore, bundle_id: str, df: pd.DataFrame, encryption_key: bytes | None = None
) -> str:
    """Parquet in the store; sealed with the cohort key (device.encryption) when the cohort's
    models are encrypted, so its features, outputs and labels are never stored in clear."""
    buf = io.BytesIO()
    df.to_parquet(buf, index=False, compression="zstd")
    key = reference_key(bundle_id)
    data = buf.getvalue()
    store.put(key, seal(data, encryption_key, b"reference") if encryption_key else data)
    return key


def load_reference(
    store: ObjectStore, bundle_id: str, keys: Mapping[str, bytes] | None = None
) -> pd.DataFrame:
    """`keys`: cohort keys by id, for references of encrypted cohorts."""
    key = reference_key(bundle_id)
    try:
        data = store.get(key)
    except StoreError as exc:
        raise MonitoringError(
            f"no drift reference for bundle {bundle_id}: {exc}", where=key
        ) from exc
    if is_sealed(data):
        try:
            data = open_sealed(data, keys or {}, b"reference")
        except IntegrityError as exc:
            raise MonitoringError(f"encrypted drift reference: {exc}", where=key) from exc
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

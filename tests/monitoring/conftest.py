"""Fixtures for the monitoring tests: real digits features, a tiny real TFLite model, telemetry."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from device.features import FEATURE_NAMES, summary_features
from device.preprocessing import PreprocessingSpec, normalize

FEATURES = [f"f_{n}" for n in FEATURE_NAMES]


@pytest.fixture(scope="session")
def digits16() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits as (N,16,16,1) float32 in [0,1] and int labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.kron((d.images / 16.0).astype(np.float32), np.ones((1, 2, 2), np.float32))
    return x[..., None], d.target.astype(np.int64)


@pytest.fixture(scope="session")
def digits_features(digits16) -> np.ndarray:
    return summary_features(digits16[0])


@dataclass(frozen=True)
class TinyModel:
    tflite: bytes
    spec: PreprocessingSpec


@pytest.fixture(scope="session")
def tiny_model(digits16) -> TinyModel:
    """A real float TFLite model (one dense layer, 2 epochs) on 16x16 digits."""
    import components  # noqa: F401  (TF_USE_LEGACY_KERAS before tensorflow)
    from components.keras import keras, tf

    x, y = digits16
    spec = PreprocessingSpec(
        16, 16, 1, (float(x.mean()),), (float(x.std()),), tuple(str(i) for i in range(10))
    )
    tf.random.set_seed(0)
    model = keras.Sequential(
        [
            keras.layers.Input((16, 16, 1)),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    model.fit(normalize(x, spec), y, epochs=2, batch_size=64, verbose=0)
    return TinyModel(tf.lite.TFLiteConverter.from_keras_model(model).convert(), spec)


def synthetic_frame(
    n: int,
    rng: np.random.Generator,
    shift: dict[str, float] | None = None,
    class_p: np.ndarray | None = None,
) -> pd.DataFrame:
    """Telemetry-shaped rows: f_* features N(0,1) (+ shift), probs/top1/confidence, labels."""
    x = rng.normal(size=(n, len(FEATURES))).astype(np.float32)
    df = pd.DataFrame(x, columns=FEATURES)
    for col, s in (shift or {}).items():
        df[col] += s
    k = rng.choice(10, size=n, p=class_p) if class_p is not None else rng.integers(0, 10, n)
    probs = rng.dirichlet(np.ones(10), size=n).astype(np.float32) * 0.3
    probs[np.arange(n), k] += 0.7
    df["probs"] = list(probs)
    df["top1"] = probs.argmax(1).astype(np.int32)
    df["confidence"] = probs.max(1).astype(np.float32)
    df["label"] = pd.array(k, dtype="Int32")
    return df


def telemetry_records(
    device_id: str,
    seqs: range,
    cohort: str = "pi-fleet-eu",
    model_version: str = "1",
    start: str = "2026-11-20T10:00:00Z",
    rng: np.random.Generator | None = None,
    features: np.ndarray | None = None,
    **overrides: object,
) -> list:
    """Real TelemetryRecords (the agent's wire type), one minute apart."""
    from datetime import timedelta

    from device.telemetry import TelemetryRecord

    rng = rng or np.random.default_rng(0)
    t0 = pd.Timestamp(start).to_pydatetime()
    out = []
    for i, s in enumerate(seqs):
        p = rng.dirichlet(np.ones(10)).astype(np.float32)
        f = features[i] if features is not None else rng.random(len(FEATURES))
        fields = dict(
            device_id=device_id,
            cohort=cohort,
            model_name="digits",
            model_version=model_version,
            target="tflite-f32",
            bundle_id="b1",
            seq=s,
            ts=t0 + timedelta(minutes=i),
            features=tuple(float(v) for v in f),
            probs=tuple(float(v) for v in p),
            top1=int(p.argmax()),
            confidence=float(p.max()),
            latency_ms=5.0,
            memory_bytes=1000,
            energy_mj=0.1,
            label=int(p.argmax()) if i % 2 else None,
        )
        fields.update(overrides)
        out.append(TelemetryRecord(**fields))
    return out


def device_key(device_id: str):
    """A fixed Ed25519 key per device id (tests only: real keys come from `devices enroll`)."""
    import hashlib

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(device_id.encode()).digest())


def enrolment():
    """The enrolment registry of the test's EDGEOPS_HOME (set by the test)."""
    import os

    from edgeops.settings import Settings
    from registry.enrolment import DeviceRegistry, enrolment_dir

    assert os.environ.get("EDGEOPS_HOME"), "set EDGEOPS_HOME (monkeypatch) before enrolling"
    return DeviceRegistry(enrolment_dir(Settings.from_env().keys_dir))


def enrolled() -> dict:
    return enrolment().load()


def put_batch(
    store, records: list, key: str | None = None, signer: str | None = None, enrol: bool = True
) -> str:
    """Upload records as the agent does: Parquet in a frame signed by the device's key (by
    `signer`'s key when given: a device speaking for another), enrolled in its cohort first."""
    from device.identity import DeviceIdentity, sign_batch
    from device.telemetry import records_to_table, write_batch
    from device.uploader import batch_key

    who = signer or records[0].device_id
    ident = DeviceIdentity(who, records[0].cohort, device_key(who))
    if enrol:
        enrolment().enroll(who, records[0].cohort, ident.public_key, replace=True)
    data = write_batch(records_to_table(records))
    seqs = (min(r.seq for r in records), max(r.seq for r in records))
    body = sign_batch(ident, data, len(records), seqs)
    key = key or batch_key(records[0].cohort, who, seqs, body)
    store.put(key, body)
    return key

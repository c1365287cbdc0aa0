"""References through a real TFLite model, stored per bundle and reused (LocalStore and moto S3)."""

from __future__ import annotations

import numpy as np
import pytest

from device.runtime import TFLiteRunner
from device.store import open_store
from edgeops.errors import MonitoringError
from monitoring.reference import build_reference, ensure_reference, load_reference, reference_key
from tests.monitoring.conftest import FEATURES


def _reference(digits16, tiny_model, n: int = 120):
    x, y = digits16
    return build_reference(x[:n], y[:n], TFLiteRunner(tiny_model.tflite), tiny_model.spec)


def test_build_reference_has_telemetry_features_and_variant_outputs(
    digits16, tiny_model, digits_features
) -> None:
    ref = _reference(digits16, tiny_model)
    assert list(ref.columns[: len(FEATURES)]) == FEATURES
    assert len(ref) == 120
    np.testing.assert_allclose(ref[FEATURES].to_numpy(), digits_features[:120], rtol=1e-6)
    probs = np.stack(ref["probs"].to_numpy())
    assert probs.shape == (120, 10)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-4)
    assert (ref["top1"].to_numpy() == probs.argmax(1)).all()
    assert ref["confidence"].to_numpy() == pytest.approx(probs.max(1))
    assert (ref["label"].to_numpy() == digits16[1][:120]).all()
    assert (ref["top1"] == ref["label"]).mean() > 0.5  # the model learned something


def test_build_reference_refuses_mismatched_labels(digits16, tiny_model) -> None:
    x, y = digits16
    with pytest.raises(MonitoringError, match="labels"):
        build_reference(x[:10], y[:9], TFLiteRunner(tiny_model.tflite), tiny_model.spec)


def _roundtrip(store, digits16, tiny_model) -> None:
    calls: list[int] = []

    def build():
        calls.append(1)
        return _reference(digits16, tiny_model, 40)

    first = ensure_reference(store, "b123", build)
    assert store.exists(reference_key("b123"))
    again = ensure_reference(store, "b123", build)
    assert calls == [1]  # reused, not recomputed
    assert again[FEATURES].equals(first[FEATURES])
    np.testing.assert_allclose(np.stack(again["probs"]), np.stack(first["probs"]))
    with pytest.raises(MonitoringError, match="no drift reference"):
        load_reference(store, "missing")


def test_reference_stored_and_reused_local(tmp_path, digits16, tiny_model) -> None:
    _roundtrip(open_store(str(tmp_path / "store")), digits16, tiny_model)


def test_reference_stored_and_reused_s3(s3_env, digits16, tiny_model) -> None:
    _roundtrip(
        open_store(s3_env["EDGEOPS_STORE_URL"], endpoint_url=s3_env["AWS_ENDPOINT_URL"]),
        digits16,
        tiny_model,
    )


def test_the_temperature_ships_in_the_bundle_and_is_read_back(tmp_path, tiny_model) -> None:
    from dataclasses import replace

    from device.store import open_store
    from monitoring.reference import load_temperature
    from registry.bundles import publish_bundle
    from registry.tuf_keys import Keystore
    from registry.tuf_repo import TufRepository

    store = open_store(str(tmp_path / "store"))
    repo = TufRepository(store, Keystore(tmp_path / "keys"))
    repo.init(["c"])
    model = tmp_path / "model.tflite"
    model.write_bytes(tiny_model.tflite)
    spec = replace(tiny_model.spec, temperature=0.62)
    ref = publish_bundle(repo, model, spec, model_name="m", model_version="1", target="tflite-f32")
    assert load_temperature(store, ref.bundle_id) == pytest.approx(0.62)
    assert load_temperature(store, "0" * 64) == 1.0  # a bundle this store does not hold

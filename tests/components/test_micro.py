"""TFLite Micro runs a tiny int8 model: parity with LiteRT, and the arena it really needs."""

from __future__ import annotations

import numpy as np
import pytest
from fixtures_models import digits  # noqa: F401

from components.micro import check_micro, minimum_arena


@pytest.fixture(scope="module")
def int8_file(digits, tmp_path_factory):  # noqa: F811
    from components.architectures import build_mobilenet
    from components.convert.tflite import to_tflite
    from device.preprocessing import normalize

    model = build_mobilenet((8, 8, 1), 10, alpha=0.5)
    model.compile("adam", "sparse_categorical_crossentropy")
    x = normalize(digits.x_train, digits.spec)
    model.fit(x, digits.y_train, epochs=1, verbose=0)
    path = tmp_path_factory.mktemp("micro") / "model.tflite"
    to_tflite(model, "tflite-int8", x[:100], path, per_channel=True)
    return path.read_bytes(), normalize(digits.x_test[:30], digits.spec)


def test_tiny_int8_model_runs_with_parity_and_a_real_arena(int8_file) -> None:
    from components.measure import tflite_costs
    from device.runtime import TFLiteRunner

    data, x = int8_file
    planner = tflite_costs(data)["arena_bytes"]
    check = check_micro(data, x, TFLiteRunner(data).predict(x), planner)
    assert check.runs, check.reason
    assert check.agreement >= 0.95 and check.n == 30
    # TFLite Micro's arena also holds tensor structs and scratch: never below LiteRT's plan
    assert check.arena_bytes >= planner
    assert minimum_arena(data, start=check.arena_bytes) == check.arena_bytes  # bisection is stable


def test_an_arena_below_the_minimum_fails(int8_file) -> None:
    from components.micro import ALIGN, _works

    data, _ = int8_file
    arena = minimum_arena(data)
    assert _works(data, arena) and not _works(data, arena - ALIGN)


def test_a_file_micro_cannot_load_gives_a_reason() -> None:
    check = check_micro(b"\x00" * 64, np.zeros((1, 8, 8, 1), np.float32), np.zeros((1, 10), np.float32))
    assert not check.runs and "TFLite Micro" in check.reason


def test_cortex_m_blessing_budgets_the_micro_arena_and_coral_is_refused() -> None:
    import dataclasses
    from pathlib import Path

    from components.blessing import constraint_reasons
    from components.conversion import Variant
    from components.measure import Measurement
    from components.profiles import load_devices

    catalog = load_devices(Path(__file__).resolve().parents[2] / "devices.yaml")
    mcu, coral = catalog.profile_for("mcu-line-a"), catalog.profiles["coral-edge-tpu"]
    m = Measurement("tflite-int8", 30_000, 20_000, 25_000, 25_000, 100_000, 0.1, 0.1, 5, 20_000, "planner")
    v = Variant("tflite-int8", Path("/nonexistent"), 30_000, 20_000, 0.97, 0.97, 1.0, 0.0,
                "int8", "int8", ("int8",), (), 100, m, 0.97)
    assert any("not run in TFLite Micro" in r for r in constraint_reasons(v, mcu))
    ok = dataclasses.replace(v, measurement=dataclasses.replace(m, micro_arena_bytes=30_000, micro_agreement=1.0))
    assert constraint_reasons(ok, mcu) == []
    # Micro parity is held to the gate the conversion ran under (convert.min_agreement), 0.99 unless set
    near = dataclasses.replace(ok, measurement=dataclasses.replace(ok.measurement, micro_agreement=0.984))
    assert constraint_reasons(near, mcu) == ["TFLite Micro top-1 agreement with LiteRT 0.9840 < 0.99"]
    lenient = dataclasses.replace(near, measurement=dataclasses.replace(near.measurement, micro_min_agreement=0.97))
    assert constraint_reasons(lenient, mcu) == []
    big = dataclasses.replace(ok, measurement=dataclasses.replace(ok.measurement, micro_arena_bytes=mcu.arena_bytes + 16))
    assert constraint_reasons(big, mcu) == [f"arena {mcu.arena_bytes + 16} bytes > budget {mcu.arena_bytes}"]
    assert any("edgetpu_compiler" in r for r in constraint_reasons(ok, coral))

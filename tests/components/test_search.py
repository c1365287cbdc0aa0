"""The accuracy-aware search: sensitivity on validation only, the Pareto front, the cheapest
variant per profile within the margin."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from fixtures_models import make_digits

from components.search import (
    Point,
    choose_for_profile,
    guided_ratios,
    layer_sensitivity,
    pareto_front,
)


class NoTest:
    """Validation and train only: touching the test split fails the test."""

    def __init__(self) -> None:
        d = make_digits(n_test=300)
        self.x_train, self.y_train, self.spec = d.x_train[200:], d.y_train[200:], d.spec
        self.x_val, self.y_val = d.x_train[:200], d.y_train[:200]

    @property
    def x_test(self) -> np.ndarray:
        raise AssertionError("the search read the test split")

    y_test = x_test


def test_sensitivity_reads_validation_only_and_orders_damage() -> None:
    from components.architectures import build_mobilenet
    from device.preprocessing import normalize

    data = NoTest()
    model = build_mobilenet((8, 8, 1), 10, alpha=0.5)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(normalize(data.x_train, data.spec), data.y_train, epochs=3, verbose=0)
    before = [w.copy() for w in model.get_weights()]
    rows = layer_sensitivity(model, data, ratios=(0.25, 0.75), clusters=(4,))
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))  # restored
    assert {r["kind"] for r in rows} == {"channels", "sparsity", "clusters"}
    layers = {r["layer"] for r in rows}
    assert "stem" in layers and "b3_pw" in layers
    # removing 75% of a layer's channels hurts at least as much, summed, as removing 25%
    drop = {(r["kind"], r["amount"]): 0.0 for r in rows}
    for r in rows:
        drop[(r["kind"], r["amount"])] += r["drop_pts"]
    assert drop[("channels", 0.75)] >= drop[("channels", 0.25)]
    ratios = guided_ratios(rows, max_drop_pts=1e9)
    assert set(ratios) == layers and all(r == 0.75 for r in ratios.values())
    assert all(r == 0.0 for r in guided_ratios(rows, max_drop_pts=-1e9).values())


def test_pareto_front_and_profile_choice() -> None:
    from components.conversion import Variant
    from components.measure import Measurement
    from components.profiles import load_devices

    pts = [Point("a", 0.97, 100, 1.0), Point("b", 0.96, 50, 1.0), Point("c", 0.95, 60, 2.0), Point("d", 0.97, 100, 0.5)]
    assert [p.name for p in pareto_front(pts)] == ["b", "d"]

    def variant(target: str, val: float, wire: int) -> Variant:
        m = Measurement(target, 90_000, 1, 1, 1, 1_000, 0.1, 0.1, 1, 10_000, "t", 10_000, 1.0, "", wire)
        dt = "int8" if target == "tflite-int8" else "float32"
        return Variant(target, Path("/x"), 90_000, 1, 0.0, 0.0, 1.0, 0.0, dt, dt, (dt,), (), 1, m, val)

    catalog = load_devices(Path(__file__).resolve().parents[2] / "devices.yaml")
    mcu = catalog.profile_for("mcu-line-a")
    vs = {"f32": variant("tflite-f32", 0.98, 80_000), "int8": variant("tflite-int8", 0.975, 30_000),
          "pcqat": variant("tflite-int8", 0.968, 12_000), "bad": variant("tflite-int8", 0.90, 5_000)}
    assert choose_for_profile(vs, mcu, margin=0.01)[0] == "pcqat"  # f32 cannot run there
    assert choose_for_profile(vs, mcu, margin=0.005)[0] == "int8"
    big = dataclasses.replace(vs["pcqat"], bytes=mcu.max_model_bytes + 1)
    assert choose_for_profile({"pcqat": big}, mcu, 0.01)[0] is None

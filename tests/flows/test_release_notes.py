"""Registry tags carry every accuracy with its interval and every verdict's test (the version
description itself: flows.report.version_notes, tests/flows/test_report.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from components.blessing import Paired, bless
from components.conversion import Variant
from components.measure import Measurement
from components.profiles import DeviceProfile
from edgeops.params import EvaluateParams
from flows.publish import evidence_tags


def _variant(pred: np.ndarray, parent: np.ndarray, y: np.ndarray) -> Variant:
    return Variant(target="tflite-f32", path=Path("m.tflite"), bytes=1000, gzip_bytes=900,
                   accuracy=float((pred == y).mean()), float_accuracy=float((parent == y).mean()),
                   agreement=float((pred == parent).mean()), max_abs_diff=0.0, input_dtype="float32",
                   output_dtype="float32", tensor_dtypes=("float32",), ops=("CONV_2D",), n_test=len(y),
                   val_accuracy=0.95, predictions=tuple(pred.tolist()), float_predictions=tuple(parent.tolist()),
                   measurement=Measurement("tflite-f32", 1000, 900, 800, 200, 10_000, 0.1, 0.2, 5, 4096, "test"))


def test_tags_show_intervals_and_paired_tests() -> None:
    y = np.arange(400) % 10
    parent = y.copy()
    parent[:12] = (y[:12] + 1) % 10  # 97% accurate
    v = _variant(parent.copy(), parent, y)
    profile = DeviceProfile(name="pi", targets=("tflite-f32",), max_model_bytes=10**6, arena_bytes=10**6,
                            latency_budget_ms=100.0, throughput_macs_per_s=1e9)
    b = bless(v, profile, v.float_accuracy, None, EvaluateParams(), Paired(y, parent)).to_dict()
    blessings = {"pi": b, "mcu": {"blessed": False, "reasons": ["not chosen: x ranks first on validation"],
                                  "metrics": {}, "outcome": "not chosen"}}
    tags = evidence_tags(v, blessings)
    assert tags["accuracy_ci"].startswith("0.9700 (95% CI 0.9483-0.9828")
    assert tags["evidence"].startswith("pi: pass; test accuracy") and "mcu" not in tags["evidence"]

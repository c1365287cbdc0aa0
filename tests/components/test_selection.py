"""Selection: accuracy first within budgets, then size; a clear report when nothing fits."""

from __future__ import annotations

import dataclasses

import pytest
from fixtures_models import digits, digits_model  # noqa: F401

from components.blessing import bless
from components.conversion import Variant, convert_and_verify
from components.profiles import DeviceProfile
from components.selection import candidate_table, plot_size_vs_accuracy, select
from edgeops.params import ConvertParams, EvaluateParams

EVAL = EvaluateParams()


@pytest.fixture(scope="module")
def variants(digits, digits_model, tmp_path_factory) -> dict[str, Variant]:  # noqa: F811
    out = tmp_path_factory.mktemp("select")
    params = ConvertParams(latency_runs=5, representative_samples=100)
    return {
        t: convert_and_verify(digits_model, t, digits, params, out / t)
        for t in ("tflite-f32", "tflite-f16", "tflite-int8")
    }


def _profile(**kw) -> DeviceProfile:
    base = dict(
        name="p",
        targets=("tflite-f32", "tflite-f16", "tflite-int8"),
        max_model_bytes=10**7,
        arena_bytes=10**7,
        latency_budget_ms=100.0,
        throughput_macs_per_s=1e9,
    )
    return DeviceProfile(**{**base, **kw})


def _bless_all(variants, profile):
    return {n: bless(v, profile, v.float_accuracy, None, EVAL) for n, v in variants.items()}


def test_accuracy_first_then_size(variants) -> None:
    # equal accuracies: make them equal on purpose, then the smallest file wins
    same = {
        n: dataclasses.replace(v, accuracy=0.9, float_accuracy=0.9) for n, v in variants.items()
    }
    p = _profile()
    choice = select(same, _bless_all(same, p), p)
    assert choice.target == min(same, key=lambda n: same[n].bytes) == "tflite-int8"
    # a more accurate variant wins even when larger
    better = {**same, "tflite-f32": dataclasses.replace(same["tflite-f32"], accuracy=0.95)}
    assert select(better, _bless_all(better, p), p).target == "tflite-f32"


def test_budget_excludes_and_nothing_fits_reports(variants) -> None:
    f32 = variants["tflite-f32"].bytes
    p = _profile(max_model_bytes=f32 - 1)
    blessings = _bless_all(variants, p)
    choice = select(variants, blessings, p)
    assert choice.target != "tflite-f32" and choice.blessed == 2
    none = _profile(max_model_bytes=100)
    empty = select(variants, _bless_all(variants, none), none)
    assert empty.target is None and empty.blessed == 0
    assert "no variant fits profile p" in empty.reason and "bytes > budget 100" in empty.reason


def test_table_and_plot(variants, tmp_path) -> None:
    p = _profile(targets=("tflite-int8",))
    blessings = _bless_all(variants, p)
    table = candidate_table(variants, blessings, p)
    assert len(table) == 3 and table.iloc[0].variant == "tflite-int8" and table.iloc[0].selected
    assert table.selected.sum() == 1
    assert "does not run tflite-f32" in table.set_index("variant").loc["tflite-f32", "reasons"]
    png = plot_size_vs_accuracy(variants, blessings, p, tmp_path / "plot.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_variant_round_trips_through_json(variants) -> None:
    import json

    v = variants["tflite-int8"]
    again = Variant.from_dict(json.loads(json.dumps(v.to_dict())))
    assert again == v

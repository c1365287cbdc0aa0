"""Every cohort in devices.yaml gets a variant its profile allows, or one readable reason."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from components.blessing import bless
from components.conversion import Variant
from components.measure import Measurement
from components.profiles import load_devices
from components.selection import choose, select
from edgeops.params import EvaluateParams

DEVICES = Path(__file__).resolve().parents[2] / "devices.yaml"
INT8 = ("int8",)
F32 = ("float32",)


def _variant(target: str, size: int, dtypes: tuple[str, ...], val: float) -> Variant:
    m = Measurement(target, size, size // 2, size, size // 4, 2_000_000, 0.05, 0.06, 5, 40_000, "test")
    dt = dtypes[0]
    return Variant(target, Path(f"/nonexistent/{target}"), size, size // 2, 0.97, 0.975, 0.995, 1e-3,
                   dt, dt, dtypes, (), 360, m, val)


def _with_micro(v: Variant) -> Variant:
    """An int8 file that also ran in TFLite Micro (its measured arena is what Cortex-M budgets)."""
    m = dataclasses.replace(v.measurement, micro_arena_bytes=42_000, micro_agreement=1.0)
    return dataclasses.replace(v, measurement=m)


def _variants() -> dict[str, Variant]:
    """One of every kind the pipeline builds, with plausible sizes and validation scores."""
    return {
        "tflite-f32": _variant("tflite-f32", 80_000, F32, 0.975),
        "tflite-f16": _variant("tflite-f16", 45_000, F32, 0.975),
        "tflite-dynamic": _variant("tflite-dynamic", 30_000, F32 + INT8, 0.972),
        "tflite-int8": _with_micro(_variant("tflite-int8", 38_000, INT8, 0.97)),
        "onnx": _variant("onnx", 81_000, F32, 0.975),
        "savedmodel": _variant("savedmodel", 300_000, F32, 0.975),
        "openvino": _variant("openvino", 90_000, F32, 0.975),
    }


def test_every_cohort_gets_an_allowed_variant_or_a_reason() -> None:
    catalog = load_devices(DEVICES)
    # a cohort for every profile, and every device class the product is for
    assert {c.profile for c in catalog.cohorts.values()} == set(catalog.profiles)
    assert {"android-phone", "iphone", "raspberry-pi-4", "coral-edge-tpu", "cortex-m", "windows-pc",
            "browser", "server", "intel-ncs"} <= set(catalog.profiles)
    variants = _variants()
    params = EvaluateParams()
    chosen = {}
    for name, cohort in catalog.cohorts.items():
        profile = catalog.profiles[cohort.profile]
        blessings = {n: bless(v, profile, v.float_accuracy, None, params) for n, v in variants.items()}
        sel = select(variants, blessings, profile)
        if profile.runtime == "edgetpu":  # no edgetpu_compiler here: never blessed, and says why
            assert sel.target is None and "edgetpu_compiler" in sel.reason, sel.reason
            continue
        assert sel.target is not None, f"{name}: {sel.reason}"
        assert profile.allows(variants[sel.target].target), name
        chosen[name] = variants[sel.target].target
    assert chosen["mcu-line-a"] == "tflite-int8" and "coral-line" not in chosen
    assert chosen["windows-desktops"] == chosen["web-users"] == "onnx"
    assert chosen["inference-servers"] == "savedmodel"
    assert chosen["intel-vision-line"] == "openvino"
    assert chosen["pi-fleet-eu"] in ("tflite-f32", "tflite-f16")


def test_a_profile_no_variant_fits_gets_one_readable_line() -> None:
    catalog = load_devices(DEVICES)
    only_tflite = {n: v for n, v in _variants().items() if n.startswith("tflite")}
    server = catalog.profile_for("inference-servers")
    target, reason = choose(only_tflite, server)
    assert target is None and "\n" not in reason
    assert reason.startswith("no variant fits profile server:") and "does not run tflite-f32" in reason
    # a microcontroller whose budget the int8 variant exceeds: the size is the reason
    big = {"tflite-int8": dataclasses.replace(only_tflite["tflite-int8"], bytes=10**6)}
    target, reason = choose(big, catalog.profile_for("mcu-line-a"))
    assert target is None and "1000000 bytes > budget 256000 of cortex-m" in reason


@pytest.mark.parametrize("runs_on", ["agent", "browser", "server"])
def test_runs_on_is_checked(runs_on: str, tmp_path: Path) -> None:
    text = DEVICES.read_text().replace("runs_on: browser", f"runs_on: {runs_on}")
    (tmp_path / "d.yaml").write_text(text)
    assert load_devices(tmp_path / "d.yaml").profiles["browser"].runs_on == runs_on
    (tmp_path / "bad.yaml").write_text(DEVICES.read_text().replace("runs_on: browser", "runs_on: toaster"))
    from edgeops.errors import ConfigError

    with pytest.raises(ConfigError, match="runs_on"):
        load_devices(tmp_path / "bad.yaml")

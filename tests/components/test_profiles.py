"""devices.yaml: the shipped catalog loads; typos and inconsistencies are ConfigErrors."""

from __future__ import annotations

from pathlib import Path

import pytest

from components.profiles import load_devices
from edgeops.errors import ConfigError

ROOT = Path(__file__).parents[2]


def test_shipped_catalog_has_the_skeleton_cohorts() -> None:
    cat = load_devices(ROOT / "devices.yaml")
    assert cat.profile_for("pi-fleet-eu").allows("tflite-f32")
    mcu = cat.profile_for("mcu-line-a")
    assert mcu.int8_only and mcu.targets == ("tflite-int8",) and mcu.name == "cortex-m"
    assert {"coral-edge-tpu", "windows-pc", "server", "android-phone", "iphone"} <= set(
        cat.profiles
    )
    assert "tflite-int8" in cat.targets() and "onnx" in cat.targets()


PROFILE = """
profiles:
  p:
    targets: [tflite-f32]
    max_model_bytes: 1000
    arena_bytes: 1000
    latency_budget_ms: 5
    throughput_macs_per_s: 1.0e+6
cohorts:
  c: {profile: p}
"""


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (PROFILE.replace("arena_bytes", "arena_byte"), "arena_byte"),
        (PROFILE.replace("{profile: p}", "{profile: nope}"), "unknown profile nope"),
        (PROFILE.replace("[tflite-f32]", "[tflite-f64]"), "targets"),
        (PROFILE.replace("targets:", "int8_only: true\n    targets:"), "int8_only"),
        ("profiles: [", "not valid YAML"),
        ("- a list", "must be a mapping"),
    ],
)
def test_bad_devices_file(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "devices.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_devices(path)


def test_missing_file_and_unknown_cohort(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_devices(tmp_path / "nope.yaml")
    path = tmp_path / "devices.yaml"
    path.write_text(PROFILE)
    with pytest.raises(ConfigError, match="unknown cohort"):
        load_devices(path).profile_for("zz")

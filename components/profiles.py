"""Device profiles and cohorts from devices.yaml: what each class of device can run.

Release managers edit devices.yaml; a typo fails loudly (extra="forbid") as a ConfigError that
names the file and the key. Blessing, selection and the latency estimate read these budgets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from edgeops.errors import ConfigError

Target = Literal[
    "tflite-f32", "tflite-f16", "tflite-dynamic", "tflite-int8", "onnx", "savedmodel", "openvino"
]
KNOWN_TARGETS: tuple[str, ...] = Target.__args__  # type: ignore[attr-defined]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LatencyCalibration(_Strict):
    """Device milliseconds per host millisecond for the same variant (LiteRT, one thread, batch 1):
    the on-device latency estimate is the host measurement of each variant times this factor."""

    host_to_device: float = Field(gt=0, description="device latency / this host's latency, same file")
    source: str = Field(min_length=1, description="how the factor was obtained (a measurement, or what it assumes)")


class DeviceProfile(_Strict):
    """What one class of device can run, and the budgets a variant must meet there."""

    name: str = ""
    description: str = ""
    targets: tuple[Target, ...] = Field(min_length=1, description="artifact kinds, best first")
    int8_only: bool = Field(False, description="every op and tensor must be integer")
    max_model_bytes: int = Field(gt=0)
    arena_bytes: int = Field(gt=0, description="memory for activations (the tensor arena)")
    latency_budget_ms: float = Field(gt=0)
    throughput_macs_per_s: float = Field(
        gt=0, description="nominal; the latency estimate uses it only without a latency_calibration"
    )
    latency_calibration: LatencyCalibration | None = Field(
        None, description="scales each variant's host-measured latency to this profile (an estimate)"
    )
    unverified_targets: tuple[Literal["coreml-f32", "coreml-f16"], ...] = Field(
        (),
        description="converted here but not runnable here (Core ML): registered as 'converted, not "
        "run', never blessed or chosen; listed so the release builds them for this profile",
    )
    runs_on: Literal["agent", "browser", "server"] = Field(
        "agent",
        description="what serves the variant: the device agent (LiteRT / ONNX Runtime), a web "
        "page in the browser (onnxruntime-web), or a model server behind HTTP",
    )
    runtime: Literal["litert", "tflite-micro", "edgetpu"] = Field(
        "litert",
        description="where int8 variants must be checked beyond LiteRT: tflite-micro (run in TFLite "
        "Micro; its measured arena is the budgeted one) or edgetpu (needs an Edge TPU-compiled file)",
    )

    @model_validator(mode="after")
    def _int8_targets(self) -> DeviceProfile:
        if self.int8_only and any(t != "tflite-int8" for t in self.targets):
            raise ValueError("an int8_only profile can only list tflite-int8")
        return self

    def allows(self, target: str) -> bool:
        return target in self.targets


class Cohort(_Strict):
    """A named group of real devices that share a profile; rollouts target cohorts."""

    name: str = ""
    profile: str
    encrypt: bool = False
    # privacy: which telemetry records carry a thumbnail of the input (labelled: only those a user
    # labelled, for retraining; all: every sampled one, an explicit opt-in; none: never)
    thumbnails: Literal["labelled", "all", "none"] = "labelled"
    description: str = ""


class DeviceCatalog(_Strict):
    profiles: dict[str, DeviceProfile]
    cohorts: dict[str, Cohort]

    @model_validator(mode="before")
    @classmethod
    def _names(cls, data: dict) -> dict:
        """Fill each entry's name from its key, so profiles travel with their own name."""
        if not isinstance(data, dict):
            return data
        for key in ("profiles", "cohorts"):
            entries = data.get(key)
            if isinstance(entries, dict):
                data[key] = {
                    n: ({**v, "name": n} if isinstance(v, dict) else v) for n, v in entries.items()
                }
        return data

    @model_validator(mode="after")
    def _cohorts_known(self) -> DeviceCatalog:
        for cohort in self.cohorts.values():
            if cohort.profile not in self.profiles:
                raise ValueError(f"cohort {cohort.name} names unknown profile {cohort.profile}")
        return self

    def profile_for(self, cohort: str) -> DeviceProfile:
        if cohort not in self.cohorts:
            raise ConfigError(f"unknown cohort {cohort!r}; known: {sorted(self.cohorts)}")
        return self.profiles[self.cohorts[cohort].profile]

    def targets(self) -> list[str]:
        """Every target some profile needs, in a stable order."""
        wanted = {t for p in self.profiles.values() for t in p.targets}
        return [t for t in KNOWN_TARGETS if t in wanted]


def load_devices(path: Path | str) -> DeviceCatalog:
    """Read devices.yaml into a typed catalog; ConfigError names the file and the key."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError("devices file not found", where=str(path)) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"devices file is not valid YAML: {exc}", where=str(path)) from exc
    if not isinstance(raw, dict):
        raise ConfigError(
            "devices file must be a mapping with profiles and cohorts", where=str(path)
        )
    try:
        return DeviceCatalog.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"devices key {loc}: {first['msg']}", where=str(path)) from exc

"""What this device can run, checked against a verified bundle before it is installed.

The device carries its own copy of its profile (from devices.yaml, provisioned with the
agent's config): a bundle that is signed and intact but made for another class of device
(wrong target, too big, float ops on an int8-only accelerator, an arena it cannot hold, a
newer agent protocol) is refused like a tampered one, and the current model stays.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from device import AGENT_VERSION
from device.preprocessing import PreprocessingSpec
from device.protocol import BundleMetadata
from device.runtime import ONNXRunner, Runner, open_runner, plain_interpreter, tensor_spans
from edgeops.errors import IntegrityError


class CapabilityError(IntegrityError):
    """A valid bundle this device cannot run: refused, the current model kept."""


@dataclass(frozen=True)
class DeviceCaps:
    """The device-side view of a profile. `active_power_w` feeds the energy estimate only."""

    name: str = "generic-linux"
    targets: tuple[str, ...] = ("tflite-f32", "tflite-f16", "tflite-dynamic", "tflite-int8")
    int8_only: bool = False
    max_model_bytes: int = 50_000_000
    arena_bytes: int = 256_000_000
    latency_budget_ms: float = 100.0
    active_power_w: float = 3.0

    @classmethod
    def from_mapping(cls, d: Mapping[str, Any]) -> DeviceCaps:
        """From a devices.yaml profile (or its model_dump()); unknown keys are ignored."""
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        if "targets" in kw:
            kw["targets"] = tuple(kw["targets"])
        return cls(**kw)


def _version(v: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in v.split("."))
    except ValueError:
        raise IntegrityError(f"bad version string {v!r}") from None


def arena_bytes(model: bytes) -> int:
    """The tensor arena at batch 1: the address span the LiteRT planner gave the activations
    (what components.measure reports to the blessing, so device and pipeline agree)."""
    interp = plain_interpreter(model)
    ops = interp._get_ops_details()
    activations = {int(i) for op in ops for i in op["outputs"]}
    activations |= {int(d["index"]) for d in interp.get_input_details()}
    span, total = tensor_spans(interp, activations)
    return span if span <= total else total


def estimate_memory(model: bytes) -> tuple[int, int]:
    """(arena bytes, memory bytes = model + arena) for the profile check and telemetry."""
    arena = arena_bytes(model)
    return arena, len(model) + arena


def load_runner(
    caps: DeviceCaps, target: str, model: bytes, num_threads: int = 1
) -> tuple[Runner, tuple[int, int]]:
    """The runtime for the bundle's target and (arena, memory) bytes. A target outside the
    profile is refused before any runtime is loaded (a TFLite-only device has no ONNX Runtime)."""
    if target not in caps.targets:
        raise CapabilityError(
            f"profile {caps.name} runs {', '.join(caps.targets)}, not {target}",
            where=f"bundle target {target}",
        )
    runner = open_runner(target, model, num_threads)
    if isinstance(runner, ONNXRunner):
        arena = runner.arena_bytes()
        return runner, (arena, len(model) + arena)
    return runner, estimate_memory(model)


def check_capabilities(
    caps: DeviceCaps,
    meta: BundleMetadata,
    runner: Runner,
    spec: PreprocessingSpec,
    model_size: int,
    arena: int,
) -> None:
    """Raise CapabilityError naming the first budget or format this device cannot meet."""
    where = f"bundle {meta.model_name} v{meta.model_version} {meta.target}"
    if meta.target not in caps.targets:
        raise CapabilityError(
            f"profile {caps.name} runs {', '.join(caps.targets)}, not {meta.target}", where=where
        )
    if _version(meta.min_agent_version) > _version(AGENT_VERSION):
        raise CapabilityError(
            f"needs agent {meta.min_agent_version}, this is {AGENT_VERSION}", where=where
        )
    if model_size > caps.max_model_bytes:
        raise CapabilityError(
            f"model is {model_size} bytes, profile {caps.name} allows {caps.max_model_bytes}",
            where=where,
        )
    if arena > caps.arena_bytes:
        raise CapabilityError(
            f"needs a {arena}-byte tensor arena (memory), profile {caps.name} has {caps.arena_bytes}",
            where=where,
        )
    if caps.int8_only:
        dt = runner.tensor_dtypes()
        if dt["input"] not in ("int8", "uint8") or dt["output"] not in ("int8", "uint8"):
            raise CapabilityError(
                f"profile {caps.name} is int8-only, model input/output is {dt['input']}/{dt['output']}",
                where=where,
            )
    want = (spec.height, spec.width, spec.channels)
    if tuple(runner.input_shape) != want:
        raise CapabilityError(
            f"model input {runner.input_shape} does not match its preprocessing spec {want}",
            where=where,
        )

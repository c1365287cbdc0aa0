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

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from device import AGENT_VERSION
from device.preprocessing import PreprocessingSpec
from device.protocol import BundleMetadata
from device.runtime import TFLiteRunner
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


def estimate_memory(model: bytes) -> int:
    """Model bytes plus every tensor at batch 1: an upper bound on what the arena must hold."""
    interp = Interpreter(model_content=model)
    interp.allocate_tensors()
    tensors = sum(
        int(np.prod(t["shape"])) * np.dtype(t["dtype"]).itemsize
        for t in interp.get_tensor_details()
        if len(t["shape"])
    )
    return len(model) + tensors


def check_capabilities(
    caps: DeviceCaps,
    meta: BundleMetadata,
    runner: TFLiteRunner,
    spec: PreprocessingSpec,
    model_size: int,
    memory_bytes: int,
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
    if memory_bytes > caps.arena_bytes:
        raise CapabilityError(
            f"needs about {memory_bytes} bytes of memory, profile {caps.name} has {caps.arena_bytes}",
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

"""Phase three of conversion: run the converted artifact in its real runtime and judge it.

Pure numpy over predictions, plus the profile rules (int8-only, size budget), so the same checks
serve every target family.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from components.profiles import DeviceProfile

FLOAT_DTYPES = frozenset({"float16", "float32", "float64", "bfloat16"})


@dataclass(frozen=True)
class Parity:
    accuracy: float
    agreement: float
    max_abs_diff: float
    n: int


def parity(probs: np.ndarray, reference: np.ndarray, y: np.ndarray) -> Parity:
    """Top-1 accuracy of `probs`, its top-1 agreement with `reference` and the largest gap."""
    if probs.shape != reference.shape:
        raise ValueError(f"output shape {probs.shape} != float model output {reference.shape}")
    top = probs.argmax(axis=1)
    return Parity(
        accuracy=float((top == y).mean()),
        agreement=float((top == reference.argmax(axis=1)).mean()),
        max_abs_diff=float(np.abs(probs - reference).max()),
        n=len(y),
    )


def profile_violations(
    target: str,
    dtypes: dict[str, Any],
    ops: list[dict[str, Any]] | list[str],
    size_bytes: int,
    profile: DeviceProfile,
) -> list[str]:
    """Reasons this artifact cannot run on `profile`; empty when it can."""
    reasons = []
    if not profile.allows(target):
        reasons.append(f"profile {profile.name} does not run {target}")
    if profile.int8_only:
        if dtypes["input"] != "int8" or dtypes["output"] != "int8":
            reasons.append(
                f"int8-only profile {profile.name}: input {dtypes['input']}, output {dtypes['output']}"
            )
        floats = sorted(set(dtypes["tensors"]) & FLOAT_DTYPES)
        if floats:
            reasons.append(f"int8-only profile {profile.name}: float tensors ({', '.join(floats)})")
        float_ops = sorted(
            {
                op["op"]
                for op in ops
                if isinstance(op, dict) and FLOAT_DTYPES & set(op["inputs"] + op["outputs"])
            }
        )
        if float_ops:
            reasons.append(f"int8-only profile {profile.name}: float ops ({', '.join(float_ops)})")
    if size_bytes > profile.max_model_bytes:
        reasons.append(f"{size_bytes} bytes > budget {profile.max_model_bytes} of {profile.name}")
    return reasons

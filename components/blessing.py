"""The typed verdict that a variant may ship to a device profile (TFX's blessing).

Gates are values: bless() never raises on a bad variant, it returns Blessing(blessed=False) with
every reason, and the registry refuses to mark an unblessed variant releasable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from components.convert.verify import profile_violations

if TYPE_CHECKING:
    from components.conversion import Variant
    from components.profiles import DeviceProfile
    from edgeops.params import EvaluateParams


@dataclass(frozen=True)
class Blessing:
    blessed: bool
    target: str
    profile: str
    reasons: tuple[str, ...]  # why not, one line each; empty when blessed
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "blessed": self.blessed,
            "target": self.target,
            "profile": self.profile,
            "reasons": list(self.reasons),
            "metrics": dict(self.metrics),
        }


def _budget_reasons(variant: Variant, profile: DeviceProfile, metrics: dict[str, Any]) -> list[str]:
    m = variant.measurement
    if m is None:
        return [
            "not measured: arena and latency budgets cannot be checked (convert with measure=True)"
        ]
    est = m.estimated_latency_ms(profile)
    metrics.update(
        arena_bytes=m.arena_bytes,
        estimated_latency_ms=est,
        host_latency_ms=m.host_latency_ms,
        macs=m.macs,
    )
    reasons = []
    if m.arena_bytes > profile.arena_bytes:
        reasons.append(f"arena {m.arena_bytes} bytes > budget {profile.arena_bytes}")
    if est > profile.latency_budget_ms:
        reasons.append(f"estimated latency {est:.2f} ms > budget {profile.latency_budget_ms} ms")
    return reasons


def bless(
    variant: Variant,
    profile: DeviceProfile,
    float_accuracy: float,
    baseline_accuracy: float | None,
    params: EvaluateParams,
) -> Blessing:
    """Accuracy vs the float parent and vs the cohort's stable (None: first release), and budgets."""
    drop = float_accuracy - variant.accuracy
    metrics: dict[str, Any] = {
        "accuracy": variant.accuracy,
        "float_accuracy": float_accuracy,
        "accuracy_drop": drop,
        "agreement": variant.agreement,
        "bytes": variant.bytes,
        "gzip_bytes": variant.gzip_bytes,
        "baseline_accuracy": baseline_accuracy,
    }
    reasons = []
    if drop > params.max_accuracy_drop:
        reasons.append(
            f"accuracy {variant.accuracy:.4f} is {drop:.4f} below its float parent "
            f"(max drop {params.max_accuracy_drop})"
        )
    if baseline_accuracy is not None:
        regression = baseline_accuracy - variant.accuracy
        metrics["regression_vs_stable"] = regression
        if regression > params.max_regression_vs_stable:
            reasons.append(
                f"accuracy {variant.accuracy:.4f} is {regression:.4f} below the cohort's stable "
                f"{baseline_accuracy:.4f} (max {params.max_regression_vs_stable})"
            )
    dtypes = {
        "input": variant.input_dtype,
        "output": variant.output_dtype,
        "tensors": list(variant.tensor_dtypes),
    }
    reasons += profile_violations(variant.target, dtypes, list(variant.ops), variant.bytes, profile)
    reasons += _budget_reasons(variant, profile, metrics)
    return Blessing(not reasons, variant.target, profile.name, tuple(reasons), metrics)

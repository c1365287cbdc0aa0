"""The typed verdict that a variant may ship to a device profile (TFX's blessing).

Gates are values: bless() never raises on a bad variant, it returns Blessing(blessed=False) with
every reason, and the registry refuses to mark an unblessed variant releasable.

Two kinds of check, kept apart because selection may act on one and never on the other.
`non_test_checks` reads no test label (what the profile forbids, its budgets on its own runtime,
the TFLite Micro parity gate, which ran on the conversion gate's split): selection may pass over
a variant that fails one. `scored_on_test` scores accuracy on the TEST split (against the float
parent and the cohort's stable): it judges the one chosen variant, once, and never steers which
variant is chosen (components.selection).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from components.convert.verify import profile_violations
from components.evidence import Verdict, accuracy, non_inferiority

if TYPE_CHECKING:
    from components.conversion import Variant
    from components.profiles import DeviceProfile
    from edgeops.params import EvaluateParams


@dataclass(frozen=True)
class Paired:
    """Top-1 predictions on the same test images, for paired verdicts instead of bare accuracies."""

    y: np.ndarray  # test labels
    float_predictions: np.ndarray | None = None  # the float parent (the trained Keras model)
    stable_predictions: np.ndarray | None = None  # what the cohort runs now; None: first release


@dataclass(frozen=True)
class Blessing:
    blessed: bool
    target: str
    profile: str
    reasons: tuple[str, ...]  # why not, one line each; empty when blessed
    metrics: dict[str, Any] = field(default_factory=dict)
    outcome: str = ""  # pass, fail or not enough evidence ("" from older records: blessed decides)
    # the failed checks that read no test label, "check: reason" (a subset of `reasons`); the
    # rest of `reasons` come from the test-scored checks. () from older records and "not chosen"
    non_test: tuple[str, ...] = ()

    @property
    def verdict(self) -> str:
        return self.outcome or ("pass" if self.blessed else "fail")

    def to_dict(self) -> dict[str, Any]:
        return {
            "blessed": self.blessed,
            "target": self.target,
            "profile": self.profile,
            "reasons": list(self.reasons),
            "metrics": dict(self.metrics),
            "outcome": self.verdict,
            "non_test": list(self.non_test),
        }


def _budget_checks(variant: Variant, profile: DeviceProfile, metrics: dict[str, Any]) -> list[tuple[str, str]]:
    m = variant.measurement
    if m is None:
        return [("measurement",
                 "not measured: arena and latency budgets cannot be checked (convert with measure=True)")]
    est = m.estimated_latency_ms(profile)  # host measurement x the profile's calibration
    arena = m.arena_for(profile)  # TFLite Micro's measured minimum on a Cortex-M profile
    metrics.update(
        arena_bytes=arena,
        estimated_latency_ms=est,
        latency_estimate=m.latency_basis(profile),
        host_latency_ms=m.host_latency_ms,
        macs=m.macs,
        wire_bytes=m.wire_bytes,
        weight_bytes=m.weight_bytes,
    )
    checks = [("runtime", r) for r in (m.runtime_reasons(profile) if variant.target == "tflite-int8" else [])]
    if arena is not None and arena > profile.arena_bytes:
        checks.append(("arena budget", f"arena {arena} bytes > budget {profile.arena_bytes}"))
    if est > profile.latency_budget_ms:
        checks.append(("latency budget", f"estimated latency {est:.2f} ms > budget {profile.latency_budget_ms} ms "
                                          f"({m.latency_basis(profile)})"))
    return checks


def non_test_checks(variant: Variant, profile: DeviceProfile,
                    metrics: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    """(check, reason) of each failed check that reads no test label: the profile's target,
    dtype and op rules ("profile"), its size budget ("size budget"), its runtime (Edge TPU
    compiler, TFLite Micro run and parity: "runtime"), arena and latency budgets; "measurement"
    when the variant was never measured. Empty: the profile can run it within every budget."""
    dtypes = {
        "input": variant.input_dtype,
        "output": variant.output_dtype,
        "tensors": list(variant.tensor_dtypes),
    }
    rules = profile_violations(variant.target, dtypes, list(variant.ops), 0, profile)
    sized = profile_violations(variant.target, dtypes, list(variant.ops), variant.bytes, profile)
    checks = [("profile", r) for r in rules] + [("size budget", r) for r in sized if r not in rules]
    return checks + _budget_checks(variant, profile, {} if metrics is None else metrics)


def constraint_reasons(variant: Variant, profile: DeviceProfile, metrics: dict[str, Any] | None = None) -> list[str]:
    """What the profile forbids, from the artifact alone (no labels): dtypes, ops, size, budgets.

    Selection filters on these before it ranks on validation; the blessing repeats them.
    """
    return [reason for _, reason in non_test_checks(variant, profile, metrics)]


def _paired_verdict(variant: Variant, paired: Paired, reference: np.ndarray, margin: float,
                    alpha: float) -> Verdict:
    pred = np.asarray(variant.predictions)
    y = np.asarray(paired.y)
    return non_inferiority(pred == y, np.asarray(reference) == y, margin, alpha)


def scored_on_test(
    variant: Variant,
    float_accuracy: float,
    baseline_accuracy: float | None,
    params: EvaluateParams,
    paired: Paired | None,
    metrics: dict[str, Any],
) -> tuple[list[str], bool]:
    """(reasons, undecided) of the checks scored on the TEST split: accuracy against the float
    parent and against the cohort's stable (paired non-inferiority where `paired` allows, point
    estimates otherwise). `undecided`: a failed paired check lacked evidence rather than failed.
    Adds the figures to `metrics`."""
    drop = float_accuracy - variant.accuracy
    reasons: list[str] = []
    undecided = False
    usable = paired is not None and len(variant.predictions) == len(paired.y) > 0
    if usable:
        assert paired is not None
        est = accuracy(np.asarray(variant.predictions) == np.asarray(paired.y))
        metrics.update(accuracy_ci=[est.low, est.high], n_test=est.n,
                       test="one-sided paired non-inferiority (exact McNemar-style + loss bound)")
        checks = [("float parent", paired.float_predictions, params.max_accuracy_drop, "vs_float"),
                  ("cohort's stable", paired.stable_predictions, params.max_regression_vs_stable, "vs_stable")]
        for what, reference, margin, key in checks:
            if reference is None or len(reference) != len(paired.y):
                continue
            v = _paired_verdict(variant, paired, reference, margin, params.alpha)
            metrics[key] = v.to_dict()
            if key == "vs_stable":
                metrics["regression_vs_stable"] = -v.difference
                metrics["baseline_accuracy"] = float(np.mean(np.asarray(reference) == np.asarray(paired.y)))
            if not v.passed:
                undecided |= v.outcome == "not enough evidence"
                reasons.append(f"against its {what}: {v.reason}")
    else:
        metrics["test"] = "point estimates (no paired predictions)"
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
    return reasons, undecided


def bless(
    variant: Variant,
    profile: DeviceProfile,
    float_accuracy: float,
    baseline_accuracy: float | None,
    params: EvaluateParams,
    paired: Paired | None = None,
) -> Blessing:
    """Accuracy vs the float parent and vs the cohort's stable (None: first release), and budgets.

    With `paired` predictions each accuracy gate is a one-sided non-inferiority test on the same
    test images (components.evidence) with the margins of `params`: pass, fail, or not enough
    evidence, with the interval and p-value in the metrics. Without them (a record that kept no
    predictions) the gates fall back to point estimates and say so in the metrics. The metrics
    also name the split the conversion gate decided on (`gate_split`: validation, or test where
    the data had no validation images) with its agreement and image count.
    """
    metrics: dict[str, Any] = {
        "accuracy": variant.accuracy,
        "float_accuracy": float_accuracy,
        "accuracy_drop": float_accuracy - variant.accuracy,
        "agreement": variant.agreement,
        "bytes": variant.bytes,
        "gzip_bytes": variant.gzip_bytes,
        "baseline_accuracy": baseline_accuracy,
        "val_accuracy": variant.val_accuracy,
        "gate_split": variant.gate_split,
        "gate_agreement": variant.gate_agreement,
        "gate_n": variant.gate_n,
    }
    reasons, undecided = scored_on_test(variant, float_accuracy, baseline_accuracy, params, paired, metrics)
    hard = non_test_checks(variant, profile, metrics)
    reasons += [reason for _, reason in hard]
    outcome = "pass" if not reasons else ("not enough evidence" if undecided and not hard and all(
        "not enough evidence" in r for r in reasons) else "fail")
    return Blessing(not reasons, variant.target, profile.name, tuple(reasons), metrics, outcome,
                    tuple(f"{check}: {reason}" for check, reason in hard))

"""Accuracy without labels: confidence-based performance estimation (CBPE), and the harm verdict.

CBPE (NannyML, "Confidence-based Performance Estimation", docs.nannyml.com/stable/how_it_works/
performance_estimation.html): when a classifier's probabilities are calibrated, the chance that
a prediction is right is its top-1 probability, so a window's expected accuracy is the mean
calibrated top-1 probability of its rows, no labels needed. The probabilities are calibrated with
the temperature fitted on the validation split (components.calibration) and shipped in the
bundle's preprocessing spec. `nannyml` itself does not resolve beside our lock (its s3fs pins
an older botocore; shared/DEPENDENCIES.md), so the method is written here.

The interval is CBPE's sampling error (the standard error of the mean calibrated confidence),
made robust to rows clustered by device: with several devices, the cluster-robust (sandwich)
variance over per-device sums is used when it is larger, so a fleet whose frames come in
per-device clumps is not judged as if every row were independent.

Harm: the accuracy drop of the window against the variant's held-out reference (both estimated
the same way, or both measured on labels) with a one-sided lower confidence bound; harm is that
bound above `harm_margin`. Estimation assumes calibration holds under the shift: a shift that
makes the model confidently wrong (an unseen class, inverted images) is underestimated, which is
why measured accuracy from labels overrides the estimate when a window has enough of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from components.calibration import apply_temperature
from edgeops.errors import MonitoringError


@dataclass(frozen=True)
class AccuracyEstimate:
    accuracy: float
    se: float
    n: int
    method: str  # "cbpe" (from calibrated confidence) | "labels" (measured)

    def interval(self, confidence: float = 0.95) -> tuple[float, float]:
        z = float(norm.ppf(0.5 + confidence / 2))
        return max(0.0, self.accuracy - z * self.se), min(1.0, self.accuracy + z * self.se)


@dataclass(frozen=True)
class HarmVerdict:
    harmful: bool
    drop: float  # reference - window, accuracy points as a fraction
    drop_low: float  # one-sided lower confidence bound of the drop
    method: str
    reason: str


def stack_probs(probs: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    arr = np.asarray(probs) if isinstance(probs, np.ndarray) and probs.ndim == 2 else None
    if arr is None:
        if len(probs) == 0:
            raise MonitoringError("no probabilities to estimate from", where="cbpe")
        arr = np.stack([np.asarray(p, dtype=np.float64) for p in probs])
    return arr.astype(np.float64)


def _se(values: np.ndarray, groups: np.ndarray | None) -> float:
    n = len(values)
    iid = float(values.std(ddof=1) / np.sqrt(n)) if n > 1 else 1.0
    if groups is None:
        return iid
    labels, inv = np.unique(np.asarray(groups), return_inverse=True)
    g = len(labels)
    if g < 2:
        return iid
    resid = np.bincount(inv, weights=values - values.mean(), minlength=g)
    cluster = float(np.sqrt((resid**2).sum() * g / (g - 1)) / n)
    return max(iid, cluster)


def cbpe(
    probs: Sequence[np.ndarray] | np.ndarray,
    temperature: float = 1.0,
    groups: Sequence[str] | np.ndarray | None = None,
) -> AccuracyEstimate:
    """Estimated accuracy of these predictions from their calibrated top-1 probability."""
    conf = apply_temperature(stack_probs(probs), temperature).max(axis=1)
    g = None if groups is None else np.asarray(groups)
    if g is not None and len(g) != len(conf):
        raise MonitoringError(f"{len(g)} group ids for {len(conf)} rows", where="cbpe")
    return AccuracyEstimate(float(conf.mean()), _se(conf, g), len(conf), "cbpe")


def measured_accuracy(
    top1: np.ndarray, labels: np.ndarray, groups: Sequence[str] | np.ndarray | None = None
) -> AccuracyEstimate:
    """Accuracy on labelled rows with the same (cluster-robust) standard error."""
    hit = (np.asarray(top1, dtype=np.int64) == np.asarray(labels, dtype=np.int64)).astype(float)
    if len(hit) == 0:
        raise MonitoringError("no labelled rows", where="measured accuracy")
    acc = float(hit.mean())
    # a Bernoulli proportion near 0 or 1 has a tiny sample variance; floor it with one
    # pseudo-error (Agresti-Coull-like) so 50 of 50 right is not an exact 100%
    p = (hit.sum() + 1) / (len(hit) + 2)
    floor = float(np.sqrt(p * (1 - p) / len(hit)))
    se = _se(hit, None if groups is None else np.asarray(groups)) if len(hit) > 1 else 1.0
    return AccuracyEstimate(acc, max(se, floor), len(hit), "labels")


def harm(
    reference: AccuracyEstimate, window: AccuracyEstimate, margin: float, alpha: float = 0.05
) -> HarmVerdict:
    """Harmful when the lower (1 - alpha) bound of reference - window exceeds `margin`."""
    drop = reference.accuracy - window.accuracy
    se = float(np.hypot(reference.se, window.se))
    low = drop - float(norm.ppf(1 - alpha)) * se
    harmful = low > margin
    word = "estimated" if window.method == "cbpe" else "measured"
    reason = (
        f"{word} accuracy {window.accuracy:.3f} vs reference {reference.accuracy:.3f}: "
        f"drop {drop * 100:+.1f} pts (lower {100 * (1 - alpha):.0f}% bound {low * 100:+.1f}) "
        f"{'>' if harmful else '<='} margin {margin * 100:.1f} pts"
    )
    return HarmVerdict(harmful, drop, low, window.method, reason)

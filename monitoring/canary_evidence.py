"""Can the canary be worse? A sequential accuracy comparison of canary and stable devices.

The proxy gates (errors, latency, confidence, prediction mix) cannot see a model that is simply
less accurate, and labelled accuracy alone needs dozens of labels per arm that a 1% or 5% step
never collects. So each look compares the arms' accuracy estimated from calibrated confidence
(CBPE, monitoring.performance; each arm with its own bundle's temperature, rows clustered by
device), or measured on labels once both arms have `min_labels` of them, with an interval on
the difference canary - stable:

- fail: the whole interval lies below -margin (the canary is worse by more than the margin):
  roll back;
- pass: the whole interval lies above -margin (not worse by more than the margin): the step
  may advance;
- not enough evidence otherwise: hold, whatever the proxies say.

Looks are repeated (every controller pass), so each look spends alpha / max_looks (a
Bonferroni alpha-spending bound: the chance of any wrong verdict over max_looks looks stays
below alpha).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import pandas as pd
from scipy.stats import norm

from device.store import ObjectStore
from monitoring.gates import canary_arms
from monitoring.performance import AccuracyEstimate, cbpe, measured_accuracy
from monitoring.reference import load_temperature
from monitoring.table import inferences, read_table
from registry.controller import Decision

Verdict = Literal["pass", "fail", "not enough evidence"]


@dataclass(frozen=True)
class CanaryEvidence:
    verdict: Verdict
    canary: AccuracyEstimate | None
    stable: AccuracyEstimate | None
    diff: float  # canary - stable
    low: float
    high: float
    reason: str


def _arm(
    rows: pd.DataFrame, temperature: float, min_labels: int
) -> tuple[AccuracyEstimate, AccuracyEstimate | None]:
    groups = rows["device_id"].to_numpy()
    est = cbpe(list(rows["probs"]), temperature, groups)
    lab = rows[rows["label"].notna()] if "label" in rows.columns else rows.iloc[0:0]
    measured = (
        measured_accuracy(lab["top1"], lab["label"], lab["device_id"].to_numpy())
        if len(lab) >= min_labels
        else None
    )
    return est, measured


def _as_if_labelled(est: AccuracyEstimate) -> AccuracyEstimate:
    """Promotion is a bet on the realised accuracy, not only on its expectation: an estimate's
    interval is widened to what labels on every row would give (Var = p(1-p)/n), so a handful of
    confident rows cannot promise more than as many labels could."""
    p = min(max(est.accuracy, 1.0 / (est.n + 2)), 1 - 1.0 / (est.n + 2))
    return replace(est, se=max(est.se, float(np.sqrt(p * (1 - p) / est.n))))


def compare_arms(
    canary_rows: pd.DataFrame,
    stable_rows: pd.DataFrame,
    canary_temperature: float = 1.0,
    stable_temperature: float = 1.0,
    *,
    margin: float = 0.02,
    alpha: float = 0.05,
    max_looks: int = 20,
    min_rows: int = 50,
    min_labels: int = 30,
) -> CanaryEvidence:
    """Evidence on canary - stable accuracy from one window of both arms."""
    if min(len(canary_rows), len(stable_rows)) < min_rows:
        return CanaryEvidence(
            "not enough evidence",
            None,
            None,
            0.0,
            -1.0,
            1.0,
            f"accuracy evidence: {len(canary_rows)} canary / {len(stable_rows)} stable rows "
            f"(< {min_rows} per arm)",
        )
    c_est, c_lab = _arm(canary_rows, canary_temperature, min_labels)
    s_est, s_lab = _arm(stable_rows, stable_temperature, min_labels)
    c_est, s_est = _as_if_labelled(c_est), _as_if_labelled(s_est)
    c, s = (c_lab, s_lab) if c_lab is not None and s_lab is not None else (c_est, s_est)
    z = float(norm.ppf(1 - alpha / max_looks / 2))
    diff = c.accuracy - s.accuracy
    half = z * float(np.hypot(c.se, s.se))
    low, high = diff - half, diff + half
    verdict: Verdict = (
        "fail" if high < -margin else "pass" if low > -margin else "not enough evidence"
    )
    word = "measured" if c.method == "labels" else "estimated"
    reason = (
        f"{word} accuracy canary {c.accuracy:.3f} vs stable {s.accuracy:.3f}: difference "
        f"{diff * 100:+.1f} pts [{low * 100:+.1f}, {high * 100:+.1f}] against margin "
        f"-{margin * 100:.1f}: {verdict}"
    )
    return CanaryEvidence(verdict, c, s, diff, low, high, reason)


def evidence_from_store(
    store: ObjectStore,
    cohort: str,
    canary_bundle: str,
    stable_bundle: str,
    start: pd.Timestamp,
    end: pd.Timestamp,
    percentage: float | None = None,
    salt: str | None = None,
    **kwargs: float | int,
) -> CanaryEvidence:
    """The arms' rows chosen as the proxy gates choose them (monitoring.gates.canary_arms: by
    bundle and, with the rollout's percentage and salt, by canary membership)."""
    rows = inferences(read_table(store, cohort=cohort, start=start, end=end))
    canary, stable = canary_arms(
        rows, canary_bundle, stable_bundle, percentage=percentage, salt=salt
    )
    return compare_arms(
        rows[canary],
        rows[stable],
        load_temperature(store, canary_bundle),
        load_temperature(store, stable_bundle),
        **kwargs,  # type: ignore[arg-type]
    )


def apply_evidence(decision: Decision, ev: CanaryEvidence) -> Decision:
    """No promotion past a step without evidence; a credibly worse canary rolls back."""
    if ev.verdict == "fail" and decision.action != "rollback":
        return replace(decision, action="rollback", reasons=(f"gate failed: {ev.reason}",))
    if decision.action == "advance" and ev.verdict != "pass":
        return replace(decision, action="hold", reasons=(f"holding: {ev.reason}",))
    return replace(decision, reasons=(*decision.reasons, ev.reason))

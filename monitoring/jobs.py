"""Everything judged about one complete window of one scope (cohort, model version, bundle).

What decides (`monitor.trigger`): by default harm, an accuracy drop against the variant's
held-out reference beyond `harm_margin` with confidence, estimated from calibrated confidence
(CBPE, monitoring.performance) or measured on labels when the window has `min_labels` of them.
The drift jobs are the explanation attached to it (which features moved, how far). With
`trigger: drift` the old rule holds: data drift P(x), label drift P(y) and concept drift P(y|x)
decide, prediction and embedding drift do not vote, and the deciding tests share the
family-wise alpha (Bonferroni over the tests that actually ran). Segments (per device) are
judged on every window and flagged with false-discovery control (monitoring.segments).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd

from edgeops.params import MonitorParams
from monitoring.concept import concept_drift
from monitoring.drift import (
    DriftResult,
    data_drift,
    embedding_drift,
    label_drift,
    labelled_pair,
    prediction_drift,
)
from monitoring.performance import (
    AccuracyEstimate,
    HarmVerdict,
    estimate_harm,
)
from monitoring.segments import SegmentFlag, flag_segments

DECIDING = ("data", "label", "concept")


@dataclass(frozen=True)
class WindowReport:
    cohort: str
    model_version: str
    bundle_id: str
    window_start: datetime
    n_current: int
    results: dict[str, DriftResult] = field(default_factory=dict)
    estimate: AccuracyEstimate | None = None  # CBPE on this window
    reference_estimate: AccuracyEstimate | None = None  # CBPE on the held-out reference
    labelled: AccuracyEstimate | None = None  # measured, when the window has enough labels
    harm: HarmVerdict | None = None
    segments: tuple[SegmentFlag, ...] = ()
    trigger: str = "drift"
    late_rows: int = 0
    status: str = "judged"  # judged | late (only late rows counted for a window judged before)
    run_id: str | None = None  # the MLflow child run the window was logged under (flows.monitoring)

    @property
    def scope(self) -> str:
        return f"{self.cohort}/{self.model_version}/{self.bundle_id[:12]}"

    @property
    def drifted_kinds(self) -> tuple[str, ...]:
        return tuple(k for k in DECIDING if k in self.results and self.results[k].drifted)

    @property
    def drifted(self) -> bool:
        return bool(self.drifted_kinds)

    @property
    def harmful(self) -> bool:
        return self.harm is not None and self.harm.harmful

    @property
    def deciding(self) -> bool:
        """The signal the retrain policy acts on under `monitor.trigger`."""
        return self.harmful if self.trigger == "harm" else self.drifted

    @property
    def drifted_features(self) -> tuple[str, ...]:
        res = self.results.get("data")
        return res.drifted_features if res is not None else ()

    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {"n_current": float(self.n_current), "drifted": float(self.drifted)}
        for res in self.results.values():
            out.update({k: float(v) for k, v in res.metrics.items()})
        if self.estimate is not None:
            low, high = self.estimate.interval()
            out |= {"estimated_accuracy": self.estimate.accuracy, "estimated_accuracy_low": low,
                    "estimated_accuracy_high": high}
        if self.reference_estimate is not None:
            out["reference_estimated_accuracy"] = self.reference_estimate.accuracy
        if self.labelled is not None:
            out["labelled_accuracy"] = self.labelled.accuracy
        if self.harm is not None:
            out |= {"accuracy_drop": self.harm.drop, "accuracy_drop_low": self.harm.drop_low,
                    "harmful": float(self.harm.harmful)}
        out |= {"segments_flagged": float(len(self.segments)), "late_rows": float(self.late_rows)}
        return out

    def reasons(self) -> list[str]:
        out = [self.harm.reason] if self.harm is not None else []
        out += [r for res in self.results.values() for r in res.reasons]
        return out + [f"segment {f}" for f in self.segments]


def distinct_frames(current: pd.DataFrame) -> pd.DataFrame:
    """One row per distinct input (identical summary features), for the tests on P(x) and the
    predictions. A repeated frame carries no new evidence about the input distribution, and the
    per-feature tests assume independent samples: a fleet that sees the same scenes again and
    again (or a simulator drawing from a finite pool of held-out images) would otherwise make a
    small pool's sampling noise look like drift. Label and concept jobs keep every row."""
    cols = [c for c in current.columns if c.startswith("f_")]
    return current.drop_duplicates(subset=cols).reset_index(drop=True) if cols else current


def run_window(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    params: MonitorParams,
    *,
    cohort: str,
    model_version: str,
    bundle_id: str,
    window_start: datetime,
    report_dir: Path | None = None,
    embeddings: bool = True,
    temperature: float = 1.0,
    late_rows: int = 0,
    row_segments: bool = True,
) -> WindowReport:
    """Harm, segments and every drift job on one window; HTML reports under `report_dir`.
    `row_segments=False`: no per-device tests on these rows (the caller tests devices on the
    window's statistics, monitoring.segments.flag_segments_from_stats, when they are a sample)."""
    enough_labels = labelled_pair(reference, current, params) is not None
    k = 3 if enough_labels else 1
    deciding = params.model_copy(update={"stattest_threshold": params.stattest_threshold / k})

    def html(kind: str) -> Path | None:
        return report_dir / f"{kind}_drift.html" if report_dir is not None else None

    frames = distinct_frames(current)
    groups = frames["device_id"].to_numpy() if "device_id" in frames.columns else None
    results: dict[str, DriftResult] = {
        "data": data_drift(reference, frames, deciding, html("data"), groups=groups)
    }
    results["prediction"] = prediction_drift(reference, frames, params, html("prediction"))
    if embeddings:
        column = "embedding" if "embedding" in current.columns else "probs"
        results["embedding"] = embedding_drift(
            reference, current, params, column, html("embedding")
        )
    for kind, job in (("label", label_drift), ("concept", concept_drift)):
        res = job(reference, current, deciding, html(kind))
        if res is not None:
            results[kind] = res
    est, ref_est, lab, verdict = judge_harm(reference, current, params, temperature)
    return WindowReport(
        cohort, model_version, bundle_id, window_start, len(current), results, est, ref_est, lab,
        verdict, tuple(flag_segments(current, params.segment_fdr)) if row_segments else (),
        params.trigger, late_rows,
    )


def judge_harm(
    reference: pd.DataFrame, current: pd.DataFrame, params: MonitorParams, temperature: float
) -> tuple[AccuracyEstimate, AccuracyEstimate, AccuracyEstimate | None, HarmVerdict]:
    """The window's prediction-powered estimate (CBPE rectified by its labels) and the harm
    verdict from two votes at half the level each (monitoring.performance.estimate_harm)."""
    return estimate_harm(reference, current, params, temperature)

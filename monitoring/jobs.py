"""All drift jobs of one window of one scope (cohort, model version, bundle): a typed report.

Which verdicts decide: data drift P(x), label drift P(y) and concept drift P(y|x) are reasons
to retrain; prediction and embedding drift are reported (and feed rollout gates) but are
symptoms of the others, so they do not vote. The deciding tests share the family-wise alpha
(Bonferroni over the tests that actually ran), so a window without drift raises an alarm with
probability <= `stattest_threshold` however many labels it has.
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

DECIDING = ("data", "label", "concept")


@dataclass(frozen=True)
class WindowReport:
    cohort: str
    model_version: str
    bundle_id: str
    window_start: datetime
    n_current: int
    results: dict[str, DriftResult] = field(default_factory=dict)

    @property
    def scope(self) -> str:
        return f"{self.cohort}/{self.model_version}/{self.bundle_id[:12]}"

    @property
    def drifted_kinds(self) -> tuple[str, ...]:
        return tuple(k for k in DECIDING if k in self.results and self.results[k].drifted)

    @property
    def drifted(self) -> bool:
        return bool(self.drifted_kinds)

    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {"n_current": float(self.n_current), "drifted": float(self.drifted)}
        for res in self.results.values():
            out.update({k: float(v) for k, v in res.metrics.items()})
        return out

    def reasons(self) -> list[str]:
        return [r for res in self.results.values() for r in res.reasons]


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
) -> WindowReport:
    """Every drift job on one window; HTML reports under `report_dir` when given."""
    enough_labels = labelled_pair(reference, current, params) is not None
    k = 3 if enough_labels else 1
    deciding = params.model_copy(update={"stattest_threshold": params.stattest_threshold / k})

    def html(kind: str) -> Path | None:
        return report_dir / f"{kind}_drift.html" if report_dir is not None else None

    frames = distinct_frames(current)
    results: dict[str, DriftResult] = {
        "data": data_drift(reference, frames, deciding, html("data"))
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
    return WindowReport(cohort, model_version, bundle_id, window_start, len(current), results)

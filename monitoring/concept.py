"""Concept drift from labelled feedback: did the model get worse, and did P(y|x) move?

Accuracy and F1 come from Evidently's classification metrics (current window vs the variant's
held-out reference, with the ClassificationPreset as the HTML report); the accuracy drop is
judged with a one-sided interval (monitoring.performance.harm), not as a bare difference. Evidently has no test for a
change of a *conditional* distribution, so P(y|x) is tested here with scipy: the model's
prediction summarises x, and for each predicted class k the label distribution P(y | top1 = k)
of the reference and of the window are compared (chi-square test of homogeneity per stratum,
statistics and degrees of freedom summed over strata: one p-value). A concept shift such as
"what was a 1 is now labelled 2" moves P(y | top1 = 1) while P(x) stays put.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from evidently import DataDefinition, Dataset, MulticlassClassification, Report
from evidently.metrics import Accuracy, F1Score
from evidently.presets import ClassificationPreset
from scipy.stats import chi2, chi2_contingency

from edgeops.params import MonitorParams
from monitoring.drift import DriftResult, labelled_pair
from monitoring.performance import harm, measured_accuracy


def conditional_label_test(
    ref_top1: np.ndarray,
    ref_y: np.ndarray,
    cur_top1: np.ndarray,
    cur_y: np.ndarray,
    min_rows: int = 5,
    min_expected: float = 5.0,
) -> tuple[float, float, int]:
    """(p-value, chi-square, dof) of H0: P(y | top1) is the same in reference and current.

    Like with like, and no near-empty cells (the chi-square approximation needs them filled):
    a stratum with fewer than `min_rows` rows on either side is left out, and within a stratum
    the label values whose expected count falls below `min_expected` are pooled into one (a
    stratum still sparse after pooling is left out)."""
    stat, dof = 0.0, 0
    for k in np.union1d(ref_top1, cur_top1):
        r, c = ref_y[ref_top1 == k], cur_y[cur_top1 == k]
        if len(r) < min_rows or len(c) < min_rows:
            continue
        labels = np.union1d(r, c)
        table = np.array([[np.sum(r == v) for v in labels], [np.sum(c == v) for v in labels]])
        small = table.sum(axis=0) * table.sum(axis=1).min() / table.sum() < min_expected
        if small.any():
            table = np.c_[table[:, ~small], table[:, small].sum(axis=1)]
            table = table[:, table.sum(axis=0) > 0]
        if table.shape[1] < 2:
            continue
        expected = table.sum(axis=0)[None, :] * table.sum(axis=1)[:, None] / table.sum()
        if expected.min() < min_expected:  # even pooled, too sparse to test: left out
            continue
        s, _, d, _ = chi2_contingency(table, correction=False)
        stat, dof = stat + float(s), dof + int(d)
    if dof == 0:
        return 1.0, 0.0, 0
    return float(chi2.sf(stat, dof)), stat, dof


def _frame(df: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "target": df["label"].astype("int64").astype(str),
            "prediction": df["top1"].astype("int64").astype(str),
        }
    )


_DEFINITION = DataDefinition(
    categorical_columns=["target", "prediction"],
    classification=[MulticlassClassification(target="target", prediction_labels="prediction")],
)


def _scores(df: pd.DataFrame) -> tuple[float, float]:
    snap = Report([Accuracy(), F1Score()]).run(
        Dataset.from_pandas(_frame(df), data_definition=_DEFINITION)
    )
    acc, f1 = (float(m["value"]) for m in snap.dict()["metrics"])
    return acc, f1


def concept_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    params: MonitorParams,
    html_path: Path | None = None,
) -> DriftResult | None:
    """None when either side has fewer than `min_labels` labelled rows: no verdict without evidence."""
    pair = labelled_pair(reference, current, params)
    if pair is None:
        return None
    ref, cur = pair
    ref_acc, ref_f1 = _scores(ref)
    cur_acc, cur_f1 = _scores(cur)
    p, stat, dof = conditional_label_test(
        ref["top1"].to_numpy(np.int64),
        ref["label"].to_numpy(np.int64),
        cur["top1"].to_numpy(np.int64),
        cur["label"].to_numpy(np.int64),
    )
    drop = ref_acc - cur_acc
    verdict = harm(
        measured_accuracy(ref["top1"], ref["label"]),
        measured_accuracy(cur["top1"], cur["label"]),
        params.max_accuracy_drop,
        params.stattest_threshold,
    )
    reasons = []
    if verdict.harmful:  # the accuracy drop, with its interval, beyond max_accuracy_drop
        reasons.append(f"concept: {verdict.reason}")
    if p < params.stattest_threshold:
        reasons.append(f"concept: P(y|top1) moved, chi2={stat:.1f} dof={dof} p={p:.3g}")
    html = None
    if html_path is not None:
        snap = Report([ClassificationPreset()]).run(
            Dataset.from_pandas(_frame(cur), data_definition=_DEFINITION),
            Dataset.from_pandas(_frame(ref), data_definition=_DEFINITION),
        )
        html_path.parent.mkdir(parents=True, exist_ok=True)
        snap.save_html(str(html_path))
        html = html_path
    metrics = {
        "accuracy_reference": ref_acc,
        "accuracy_current": cur_acc,
        "f1_reference": ref_f1,
        "f1_current": cur_f1,
        "accuracy_drop": drop,
        "accuracy_drop_low": verdict.drop_low,
        "p_conditional": p,
        "concept_drifted": float(bool(reasons)),
    }
    return DriftResult(
        "concept",
        bool(reasons),
        float(bool(reasons)),
        {"p_y_given_top1": p},
        params.stattest_threshold,
        len(ref),
        len(cur),
        html,
        metrics,
        tuple(reasons) or (f"concept: no change (p={p:.3g})",),
    )

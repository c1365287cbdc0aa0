"""Concept drift from labelled feedback: did the model get worse, and did P(y|x) move?

Accuracy and F1 come from Evidently's classification metrics (current window vs the variant's
reference, with the ClassificationPreset as the HTML report). Evidently has no test for a
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


def conditional_label_test(
    ref_top1: np.ndarray, ref_y: np.ndarray, cur_top1: np.ndarray, cur_y: np.ndarray
) -> tuple[float, float, int]:
    """(p-value, chi-square, dof) of H0: P(y | top1) is the same in reference and current."""
    stat, dof = 0.0, 0
    for k in np.union1d(ref_top1, cur_top1):
        r, c = ref_y[ref_top1 == k], cur_y[cur_top1 == k]
        if len(r) == 0 or len(c) == 0:
            continue
        labels = np.union1d(r, c)
        if len(labels) < 2:
            continue
        table = np.array([[np.sum(r == v) for v in labels], [np.sum(c == v) for v in labels]])
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
    reasons = []
    if drop > params.max_accuracy_drop:
        reasons.append(
            f"concept: accuracy {cur_acc:.3f} vs reference {ref_acc:.3f} (drop > {params.max_accuracy_drop})"
        )
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

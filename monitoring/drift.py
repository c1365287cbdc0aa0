"""Evidently drift jobs over one window of telemetry against a variant's training reference.

Why Bonferroni: a data-drift verdict looks at every summary feature at once. With k features
each tested at alpha, a window without drift raises at least one alarm with probability up to
1 - (1 - alpha)^k (92% for k = 50 at 0.05). Testing each feature at alpha / k and calling drift
when any feature drifts keeps the family-wise false alarm rate <= alpha, while a real shift
(brightness, rotation) moves some feature far enough to pass the stricter bar at ~1000 samples.
Evidently's own `drift_share` rule stays available with `MonitorParams.family_wise=False`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.metrics import EmbeddingsDrift, ValueDrift
from evidently.metrics.embeddings import (
    DistanceDriftMethod,
    MMDDriftMethod,
    ModelDriftMethod,
    RatioDriftMethod,
)
from evidently.presets import DataDriftPreset
from scipy.stats import ks_2samp

from edgeops.errors import MonitoringError
from edgeops.params import MonitorParams

FEATURE_PREFIX = "f_"
# Tests whose Evidently score is a p-value (drift when score < threshold); only these can be
# corrected for multiple testing. Distances (wasserstein, psi, jensenshannon...) cannot.
P_VALUE_TESTS = frozenset(
    {
        "ks",
        "chisquare",
        "z",
        "mannw",
        "anderson",
        "cramer_von_mises",
        "t_test",
        "fisher_exact",
        "g_test",
        "es",
    }
)
_EMBEDDING_METHODS = {
    "mmd": MMDDriftMethod,
    "model": ModelDriftMethod,
    "distance": DistanceDriftMethod,
    "ratio": RatioDriftMethod,
}
_EMBEDDING_ROWS = 1000  # MMD builds an (m+n)^2 kernel: subsample both sides
_PLOT_ROWS = 300


@dataclass(frozen=True)
class DriftResult:
    """One drift verdict for one window; `metrics` is flat and ready for MLflow."""

    kind: str  # data | prediction | label | concept | embedding
    drifted: bool
    drift_share: float
    per_feature: dict[str, float]  # column -> Evidently score (p-value for p-value tests)
    threshold: float  # per-test threshold actually applied (after correction)
    n_reference: int
    n_current: int
    report_html: Path | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    reasons: tuple[str, ...] = ()

    @property
    def drifted_features(self) -> tuple[str, ...]:
        if self.kind == "embedding":  # a score, not a p-value: drift when above
            return tuple(c for c, s in self.per_feature.items() if s > self.threshold)
        return tuple(c for c, s in self.per_feature.items() if s < self.threshold)


def feature_columns(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if c.startswith(FEATURE_PREFIX)]


def _check(reference: pd.DataFrame, current: pd.DataFrame, columns: list[str], where: str) -> None:
    if not columns:
        raise MonitoringError("no columns to test for drift", where=where)
    missing = [c for c in columns if c not in reference.columns or c not in current.columns]
    if missing:
        raise MonitoringError(
            f"columns missing from reference or current: {missing[:5]}", where=where
        )
    if len(reference) < 2 or len(current) < 2:
        raise MonitoringError(
            f"too few rows (reference {len(reference)}, current {len(current)})", where=where
        )


def per_test_threshold(params: MonitorParams, k: int) -> float:
    if params.stattest not in P_VALUE_TESTS or params.cat_stattest not in P_VALUE_TESTS:
        raise MonitoringError(
            f"stattests must return p-values, got {params.stattest}/{params.cat_stattest}",
            where="params.monitor",
        )
    return params.stattest_threshold / k if params.family_wise else params.stattest_threshold


def _save(snapshot: Any, html_path: Path | None) -> Path | None:
    if html_path is None:
        return None
    html_path.parent.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(html_path))
    return html_path


def entitle(html_path: Path, title: str) -> None:
    """Give a saved Evidently report a page title and a heading (cohort, model version, window,
    verdict): Evidently 0.7's HTML carries neither, and a folder of them is unreadable. The
    first <head> and <body> tags are the document's (the scripts come after them)."""
    import html
    import re

    text = html_path.read_text(encoding="utf-8")
    safe = html.escape(title)
    text = re.sub(r"<head[^>]*>", lambda m: f"{m.group(0)}<title>{safe}</title>", text, count=1)
    heading = f'<h1 style="font-family:sans-serif;margin:16px">{safe}</h1>'
    text = re.sub(r"<body[^>]*>", lambda m: m.group(0) + heading, text, count=1)
    tmp = html_path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(html_path)


def _value_drifts(snapshot: Any) -> dict[str, float]:
    out: dict[str, float] = {}
    for m in snapshot.dict()["metrics"]:
        cfg = m.get("config", {})
        if cfg.get("type", "").endswith(":ValueDrift"):
            out[cfg["column"]] = float(m["value"])
    return out


def _stattest_scores(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: dict[str, str],
    thr: float,
    categorical: frozenset[str] = frozenset(),
) -> dict[str, float]:
    """Evidently's own stattests without its report: the same scores, none of the plots.

    A Report renders plotly widgets for every column while it runs, HTML wanted or not (0.5 s
    a column on 2 busy cores); a verdict-only job calls the registered stattests directly,
    after the same NaN/inf cleaning the report applies.
    """
    from evidently.legacy.calculations.stattests import get_stattest
    from evidently.legacy.core import ColumnType

    out: dict[str, float] = {}
    for col, method in columns.items():
        kind = ColumnType.Categorical if col in categorical else ColumnType.Numerical
        ref = reference[col].replace([np.inf, -np.inf], np.nan).dropna()
        cur = current[col].replace([np.inf, -np.inf], np.nan).dropna()
        test = get_stattest(ref, cur, kind, method)
        out[col] = float(test(ref, cur, kind, thr).drift_score)
    return out


def _value_drift_scores(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: dict[str, str],
    thr: float,
    html_path: Path | None,
    categorical: frozenset[str] = frozenset(),
) -> tuple[dict[str, float], Path | None]:
    """Per-column Evidently ValueDrift scores; a Report (and its HTML) only when a file is asked for."""
    if html_path is None:
        return _stattest_scores(reference, current, columns, thr, categorical), None
    definition = DataDefinition(
        numerical_columns=[c for c in columns if c not in categorical],
        categorical_columns=[c for c in columns if c in categorical] or None,
    )
    snap = Report([ValueDrift(column=c, method=m, threshold=thr) for c, m in columns.items()]).run(
        Dataset.from_pandas(current[list(columns)], data_definition=definition),
        Dataset.from_pandas(reference[list(columns)], data_definition=definition),
    )
    return _value_drifts(snap), _save(snap, html_path)


def _verdict(
    kind: str, scores: dict[str, float], thr: float, params: MonitorParams
) -> tuple[bool, float, tuple]:
    drifted_cols = [c for c, s in scores.items() if s < thr]
    share = len(drifted_cols) / len(scores)
    drifted = bool(drifted_cols) if params.family_wise else share >= params.drift_share
    rule = (
        f"any of {len(scores)} at p<{thr:.2g}"
        if params.family_wise
        else f"share>={params.drift_share}"
    )
    reason = (
        f"{kind}: {len(drifted_cols)}/{len(scores)} drifted ({rule}): {', '.join(drifted_cols[:5])}"
    )
    return drifted, share, (reason,)


def design_effect(values: np.ndarray, groups: np.ndarray) -> float:
    """Kish's design effect 1 + (m0 - 1) ICC of values clustered in groups (one-way ANOVA ICC,
    m0 the size-adjusted mean cluster size); 1 when the groups do not differ."""
    codes, inv = np.unique(groups, return_inverse=True)
    k, n = len(codes), len(values)
    if k < 2 or n <= k:
        return 1.0
    sizes = np.bincount(inv, minlength=k).astype(np.float64)
    means = np.bincount(inv, weights=values, minlength=k) / sizes
    msb = float((sizes * (means - values.mean()) ** 2).sum() / (k - 1))
    msw = float(((values - means[inv]) ** 2).sum() / (n - k))
    m0 = (n - (sizes**2).sum() / n) / (k - 1)
    denom = msb + (m0 - 1) * msw
    icc = (msb - msw) / denom if denom > 0 else 0.0
    return float(1 + (m0 - 1) * max(icc, 0.0))


def _clustered_ks(
    reference: pd.DataFrame, current: pd.DataFrame, cols: list[str], groups: np.ndarray
) -> dict[str, float]:
    """KS p-values with the window's size shrunk to its effective size n / design effect: frames
    from one device share its scene and light, so n rows from 10 devices carry less evidence
    about the fleet than n independent rows (rows of a feature that devices do not cluster on
    keep their full size)."""
    from scipy.stats import kstwobign

    out: dict[str, float] = {}
    m = len(reference)
    for col in cols:
        ref = reference[col].to_numpy(np.float64)
        cur = current[col].to_numpy(np.float64)
        ok = np.isfinite(cur)
        d = float(ks_2samp(ref[np.isfinite(ref)], cur[ok]).statistic)
        n_eff = ok.sum() / design_effect(cur[ok], groups[ok])
        out[col] = float(kstwobign.sf(d * np.sqrt(n_eff * m / (n_eff + m))))
    return out


@contextlib.contextmanager
def _constant_columns_allowed() -> Iterator[None]:
    """Evidently's drift preset also tabulates feature correlations with numpy; a feature that is
    constant in a window (a dark frame's max, say) has none, and numpy warns once per column pair
    and window. The NaN it gets is the right answer and no verdict reads it: silence numpy's
    floating-point warnings for the report run only, not a process-wide filter."""
    with np.errstate(invalid="ignore", divide="ignore"):
        yield


def data_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    params: MonitorParams,
    html_path: Path | None = None,
    columns: list[str] | None = None,
    groups: np.ndarray | None = None,
) -> DriftResult:
    """Input drift P(x) on the summary features (f_*), one Evidently DataDriftPreset run.

    `groups` (the device of each current row): with 3 or more devices and the KS test, each
    feature is tested at the window's effective size (robust to rows clustered by device)."""
    cols = columns if columns is not None else feature_columns(reference)
    _check(reference, current, cols, "data drift")
    thr = per_test_threshold(params, len(cols))
    snap = None
    clustered = groups is not None and params.stattest == "ks" and len(np.unique(groups)) >= 3
    if clustered:
        scores = _clustered_ks(reference, current, cols, np.asarray(groups))
    elif html_path is None:
        scores = _stattest_scores(reference, current, dict.fromkeys(cols, params.stattest), thr)
    else:
        definition = DataDefinition(numerical_columns=cols)
        preset = DataDriftPreset(
            columns=cols, method=params.stattest, threshold=thr, drift_share=params.drift_share
        )
        with _constant_columns_allowed():
            snap = Report([preset]).run(
                Dataset.from_pandas(current[cols], data_definition=definition),
                Dataset.from_pandas(reference[cols], data_definition=definition),
            )
        scores = _value_drifts(snap)
    if clustered and html_path is not None:  # the report for people, the clustered test decides
        definition = DataDefinition(numerical_columns=cols)
        with _constant_columns_allowed():
            snap = Report([DataDriftPreset(columns=cols, method=params.stattest, threshold=thr)]).run(
                Dataset.from_pandas(current[cols], data_definition=definition),
                Dataset.from_pandas(reference[cols], data_definition=definition),
            )
    drifted, share, reasons = _verdict("data", scores, thr, params)
    metrics = {
        "data_drift_share": share,
        "data_drifted": float(drifted),
        "data_min_p": min(scores.values()),
        **{f"p_{c}": s for c, s in scores.items()},
    }
    return DriftResult(
        "data",
        drifted,
        share,
        scores,
        thr,
        len(reference),
        len(current),
        _save(snap, html_path),
        metrics,
        reasons,
    )


def prediction_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    params: MonitorParams,
    html_path: Path | None = None,
) -> DriftResult:
    """Output drift: the predicted class distribution (categorical) and the confidence (numerical)."""
    _check(reference, current, ["top1", "confidence"], "prediction drift")
    thr = per_test_threshold(params, 2)
    ref, cur = (
        d[["top1", "confidence"]].astype({"top1": "int64", "confidence": "float64"})
        for d in (reference, current)
    )
    columns = {"top1": params.cat_stattest, "confidence": params.stattest}
    scores, html = _value_drift_scores(ref, cur, columns, thr, html_path, frozenset({"top1"}))
    drifted, share, reasons = _verdict("prediction", scores, thr, params)
    metrics = {
        "prediction_drifted": float(drifted),
        "p_top1": scores["top1"],
        "p_confidence": scores["confidence"],
        "mean_confidence_reference": float(ref["confidence"].mean()),
        "mean_confidence_current": float(cur["confidence"].mean()),
    }
    return DriftResult(
        "prediction",
        drifted,
        share,
        scores,
        thr,
        len(ref),
        len(cur),
        html,
        metrics,
        reasons,
    )


def labelled(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["label"].notna()] if "label" in df.columns else df.iloc[0:0]


def labelled_pair(
    reference: pd.DataFrame, current: pd.DataFrame, params: MonitorParams
) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """Labelled rows of both sides; None when either has fewer than `min_labels` (no verdict
    without evidence)."""
    ref, cur = labelled(reference), labelled(current)
    return (ref, cur) if min(len(ref), len(cur)) >= params.min_labels else None


def label_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    params: MonitorParams,
    html_path: Path | None = None,
) -> DriftResult | None:
    """P(y) on labelled feedback; None when there are fewer than `min_labels` labels."""
    pair = labelled_pair(reference, current, params)
    if pair is None:
        return None
    ref, cur = (pd.DataFrame({"label": d["label"].astype("int64")}) for d in pair)
    thr = params.stattest_threshold
    scores, html = _value_drift_scores(
        ref, cur, {"label": params.cat_stattest}, thr, html_path, frozenset({"label"})
    )
    drifted = scores["label"] < params.stattest_threshold
    return DriftResult(
        "label",
        drifted,
        float(drifted),
        scores,
        params.stattest_threshold,
        len(ref),
        len(cur),
        html,
        {"label_drifted": float(drifted), "p_label": scores["label"]},
        (f"label: p={scores['label']:.3g} vs {params.stattest_threshold}",),
    )


def embedding_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    params: MonitorParams,
    column: str = "probs",
    html_path: Path | None = None,
    seed: int = 0,
) -> DriftResult:
    """Drift of a vector column (an `embedding` column when devices send one, else `probs`)."""
    _check(reference, current, [column], "embedding drift")
    ref = np.stack(
        reference[column].sample(min(len(reference), _EMBEDDING_ROWS), random_state=seed).to_numpy()
    )
    cur = np.stack(
        current[column].sample(min(len(current), _EMBEDDING_ROWS), random_state=seed).to_numpy()
    )
    cols = [f"{column}_{i}" for i in range(ref.shape[1])]
    cur_df, ref_df = pd.DataFrame(cur, columns=cols), pd.DataFrame(ref, columns=cols)
    method = _EMBEDDING_METHODS[params.embedding_method]()
    # The verdict calls Evidently's drift method directly: its report also fits a t-SNE for the
    # plot (seconds per run), so the report is only built when an HTML file is asked for.
    score = float(method(cur_df, ref_df)[0])
    html = None
    if html_path is not None:
        definition = DataDefinition(numerical_columns=cols, embeddings={column: cols})
        snap = Report([EmbeddingsDrift(embeddings_name=column, drift_method=method)]).run(
            Dataset.from_pandas(cur_df.head(_PLOT_ROWS), data_definition=definition),
            Dataset.from_pandas(ref_df.head(_PLOT_ROWS), data_definition=definition),
        )
        html = _save(snap, html_path)
    drifted = score > method.threshold  # a distance/AUC/share score: drift when above
    return DriftResult(
        "embedding",
        drifted,
        float(drifted),
        {column: score},
        method.threshold,
        len(ref),
        len(cur),
        html,
        {"embedding_drift_score": score, "embedding_drifted": float(drifted)},
        (f"embedding {column}: {params.embedding_method} score {score:.3g} vs {method.threshold}",),
    )

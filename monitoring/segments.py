"""Below the cohort: per-device (and per reported hardware/firmware/agent) statistics, and faults.

A frozen camera, a miswired sensor or a slow firmware shows in one segment long before it moves
the cohort: one of four devices sending the same frame is a quarter of the window but a single
distinct input. Each segment value is compared with the rest of its window on cheap statistics:
the share of repeated frames (identical summary features within the segment), the prediction
mix, the confidence and the latency. With many segments and four tests each, the p-values are
held to a false discovery rate with Benjamini-Hochberg, so a fleet of healthy devices raises a
false flag in at most `segment_fdr` of windows. A discovery is flagged only when it would matter
(a 0.05 confidence gap; 1.5x and 1 ms slower), and a field needs three or more values to single
one out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import chi2_contingency, fisher_exact, mannwhitneyu

SEGMENT_FIELDS = ("device_id", "hardware", "firmware", "agent_version")
_MIN_ROWS = 10
_MIN_CELL = 5
_MIN_VALUES = 3  # a segment field needs 3+ values: with two, "which one is faulty" has no answer
_MIN_CONFIDENCE_GAP = 0.05
_MIN_LATENCY_RATIO = 1.5


@dataclass(frozen=True)
class SegmentFlag:
    field: str
    value: str
    statistic: str  # repeated_frames | prediction_mix | confidence | latency
    p_value: float
    detail: str

    def __str__(self) -> str:
        return f"{self.field}={self.value}: {self.statistic} ({self.detail}, p={self.p_value:.2g})"


def benjamini_hochberg(p: np.ndarray, q: float) -> np.ndarray:
    """Mask of rejected hypotheses at false discovery rate q (Benjamini & Hochberg, 1995)."""
    p = np.asarray(p, dtype=np.float64)
    m = len(p)
    if m == 0:
        return np.zeros(0, dtype=bool)
    order = np.argsort(p)
    ok = p[order] <= q * np.arange(1, m + 1) / m
    k = int(np.max(np.flatnonzero(ok))) + 1 if ok.any() else 0
    out = np.zeros(m, dtype=bool)
    out[order[:k]] = True
    return out


def repeated(rows: pd.DataFrame) -> np.ndarray:
    """Per row: does an earlier row of the same device carry the identical frame (features)?"""
    cols = [c for c in rows.columns if c.startswith("f_")]
    if not cols or rows.empty:
        return np.zeros(len(rows), dtype=bool)
    keys = ["device_id", *cols] if "device_id" in rows.columns else cols
    return rows.duplicated(subset=keys).to_numpy()


def segment_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per device: rows, repeated-frame share, mean confidence, p95 latency, top class share."""
    if rows.empty or "device_id" not in rows.columns:
        return pd.DataFrame()
    df = rows.assign(_rep=repeated(rows))
    g = df.groupby("device_id")
    return pd.DataFrame(
        {
            "rows": g.size(),
            "repeated_share": g["_rep"].mean(),
            "mean_confidence": g["confidence"].mean(),
            "p95_latency_ms": g["latency_ms"].quantile(0.95),
            "top_class_share": g["top1"].agg(lambda s: s.value_counts(normalize=True).iloc[0]),
        }
    )


def _mix_p(inside: pd.Series, outside: pd.Series) -> float:
    """Chi-square of the prediction mix, classes with fewer than 5 expected rows pooled."""
    a, b = inside.to_numpy(np.int64), outside.to_numpy(np.int64)
    k = int(max(a.max(initial=0), b.max(initial=0))) + 1
    table = np.stack([np.bincount(a, minlength=k), np.bincount(b, minlength=k)])
    table = table[:, table.sum(axis=0) > 0]
    expected_small = table.sum(axis=0) * min(table.sum(axis=1)) / table.sum() < _MIN_CELL
    if expected_small.any():
        table = np.c_[table[:, ~expected_small], table[:, expected_small].sum(axis=1)]
        table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return 1.0
    return float(chi2_contingency(table, correction=False)[1])


def _tests(
    rows: pd.DataFrame, mask: np.ndarray, rep: np.ndarray
) -> dict[str, tuple[float, str, bool]]:
    """p-value, detail and whether the difference is large enough to matter, per statistic."""
    inside, outside = rows[mask], rows[~mask]
    r_in, r_out = int(rep[mask].sum()), int(rep[~mask].sum())
    _, p_rep = fisher_exact(
        [[r_in, len(inside) - r_in], [r_out, len(outside) - r_out]], alternative="greater"
    )
    out = {
        "repeated_frames": (
            float(p_rep),
            f"{r_in / len(inside):.0%} repeated vs {r_out / max(len(outside), 1):.0%}",
        ),
        "prediction_mix": (_mix_p(inside["top1"], outside["top1"]), "class mix differs"),
        "confidence": (
            float(mannwhitneyu(inside["confidence"], outside["confidence"]).pvalue),
            f"mean {inside['confidence'].mean():.3f} vs {outside['confidence'].mean():.3f}",
        ),
    }
    relevant = {"repeated_frames": True, "prediction_mix": True,
                "confidence": abs(inside["confidence"].mean() - outside["confidence"].mean())
                >= _MIN_CONFIDENCE_GAP}
    lat_in, lat_out = inside["latency_ms"].dropna(), outside["latency_ms"].dropna()
    if len(lat_in) and len(lat_out) and lat_in.nunique() + lat_out.nunique() > 2:
        out["latency"] = (
            float(mannwhitneyu(lat_in, lat_out, alternative="greater").pvalue),
            f"median {lat_in.median():.1f} ms vs {lat_out.median():.1f} ms",
        )
        slow = max(_MIN_LATENCY_RATIO * lat_out.median(), lat_out.median() + 1.0)
        relevant["latency"] = lat_in.median() >= slow
    return {k: (p, detail, relevant[k]) for k, (p, detail) in out.items()}


def flag_segments(rows: pd.DataFrame, fdr: float = 0.05) -> list[SegmentFlag]:
    """Segments (device, hardware, ...) that differ from the rest of the window, BH-controlled."""
    rep = repeated(rows)
    found: list[tuple[str, str, str, float, str]] = []
    matters: list[bool] = []
    for field in (f for f in SEGMENT_FIELDS if f in rows.columns):
        values = rows[field].astype("string").fillna("?")
        if values.nunique() < _MIN_VALUES:
            continue
        for value in values.unique():
            mask = (values == value).to_numpy()
            if mask.sum() < _MIN_ROWS or (~mask).sum() < _MIN_ROWS:
                continue
            for stat, (p, detail, relevant) in _tests(rows, mask, rep).items():
                found.append((field, str(value), stat, p, detail))
                matters.append(relevant)
    if not found:
        return []
    # every test counts in BH; a flag is a BH discovery that is also large enough to matter
    # (a subset of the discoveries, so the false discovery rate stays <= fdr)
    keep = benjamini_hochberg(np.array([f[3] for f in found]), fdr) & np.array(matters)
    return [SegmentFlag(*f) for f, k in zip(found, keep, strict=True) if k]


def flag_segments_from_stats(moments: pd.DataFrame, fdr: float = 0.05) -> list[SegmentFlag]:
    """`flag_segments` for devices from merged window statistics (monitoring.stats: one row per
    device with `inferences`, `repeated`, `conf_sum`, `conf_sumsq`), so every row of the window
    counts however many devices it has, with no row read. Repeated frames: a one-sided binomial
    test of the device's share against the rest's; confidence: Welch's z on the means. The
    prediction mix and latency need per-device histograms and stay with the row-based test."""
    from scipy.stats import binom, norm

    m = moments[moments["inferences"] >= _MIN_ROWS].reset_index(drop=True)
    total_n = float(moments["inferences"].sum())
    if len(m) < _MIN_VALUES:
        return []
    n = m["inferences"].to_numpy(np.float64)
    r = m["repeated"].to_numpy(np.float64)
    n_out = total_n - n
    ok = n_out >= _MIN_ROWS
    m, n, r, n_out = m[ok].reset_index(drop=True), n[ok], r[ok], n_out[ok]
    if len(m) == 0:
        return []
    r_out = float(moments["repeated"].sum()) - r
    p0 = (r_out + 0.5) / (n_out + 1.0)  # the rest's share, kept off 0 (a healthy fleet repeats none)
    p_rep = binom.sf(r - 1, n, p0)
    s, ss = m["conf_sum"].to_numpy(np.float64), m["conf_sumsq"].to_numpy(np.float64)
    s_out, ss_out = float(moments["conf_sum"].sum()) - s, float(moments["conf_sumsq"].sum()) - ss
    mean_in, mean_out = s / n, s_out / n_out
    var_in = np.maximum(ss / n - mean_in**2, 0) * n / np.maximum(n - 1, 1)
    var_out = np.maximum(ss_out / n_out - mean_out**2, 0) * n_out / np.maximum(n_out - 1, 1)
    se = np.sqrt(var_in / n + var_out / n_out)
    z = np.divide(mean_in - mean_out, se, out=np.zeros_like(se), where=se > 0)
    p_conf = 2 * norm.sf(np.abs(z))
    p_all = np.concatenate([p_rep, p_conf])
    relevant = np.concatenate([r > 0, np.abs(mean_in - mean_out) >= _MIN_CONFIDENCE_GAP])
    keep = benjamini_hochberg(p_all, fdr) & relevant
    devices = m["device_id"].astype(str).to_numpy()
    out = []
    for i in np.flatnonzero(keep):
        j = i % len(m)
        if i < len(m):
            detail = f"{r[j] / n[j]:.0%} repeated vs {r_out[j] / max(n_out[j], 1):.0%}"
            out.append(SegmentFlag("device_id", devices[j], "repeated_frames", float(p_all[i]), detail))
        else:
            detail = f"mean {mean_in[j]:.3f} vs {mean_out[j]:.3f}"
            out.append(SegmentFlag("device_id", devices[j], "confidence", float(p_all[i]), detail))
    return out

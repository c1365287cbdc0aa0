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

With labels (a random tenth of a window, say) the estimate is prediction-powered
(`ppi_accuracy`, Angelopoulos et al. 2023): CBPE plus the labelled rows' mean of (correct -
confidence), unbiased whatever the shift does to calibration, with an interval from both
variances; without labels it is CBPE. `estimate_harm` is the whole verdict on one window.

Harm: the accuracy drop of the window against the variant's held-out reference (both estimated
the same way, or both measured on labels) with a one-sided lower confidence bound; harm is that
bound above `harm_margin`. Estimation assumes calibration holds under the shift: a shift that
makes the model confidently wrong (an unseen class, inverted images) is underestimated, which is
why measured accuracy from labels overrides the estimate when a window has enough of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy.stats import norm

from components.calibration import apply_temperature
from edgeops.errors import MonitoringError
from edgeops.params import MonitorParams


@dataclass(frozen=True)
class AccuracyEstimate:
    accuracy: float
    se: float
    n: int
    method: str  # "cbpe" (calibrated confidence) | "labels" (measured) | "ppi" (both)

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


def _ppi_parts(
    conf: np.ndarray, hit: np.ndarray, labelled: np.ndarray, groups: np.ndarray | None
) -> tuple[float, float]:
    """(estimate, se) of mean(conf over all rows) + mean(hit - conf over the labelled rows)."""
    n_all, n = len(conf), int(labelled.sum())
    c_l, resid = conf[labelled], hit[labelled] - conf[labelled]
    g_l = None if groups is None else groups[labelled]
    var_all = _se(conf, groups) ** 2
    # the residual's variance, floored by what calibration itself predicts (E[(y - c)^2] =
    # E[c (1 - c)] when calibrated): a handful of labels that all agree is not certainty
    var_resid = max(_se(resid, g_l) ** 2, float(np.mean(c_l * (1 - c_l))) / n)
    # the labelled rows are also among all rows: Cov(mean_all c, mean_lab r) = Cov(c, r) / N
    cov = float(np.cov(c_l, resid)[0, 1]) / n_all if n > 1 else 0.0
    est = float(conf.mean() + resid.mean())
    return est, float(np.sqrt(max(var_all + var_resid + 2 * cov, var_resid)))


def ppi_accuracy(
    probs: Sequence[np.ndarray] | np.ndarray,
    labels: Sequence[float] | np.ndarray,
    temperature: float = 1.0,
    groups: Sequence[str] | np.ndarray | None = None,
    min_labels: int = 20,
) -> AccuracyEstimate:
    """A window's accuracy from calibrated confidence on every row, corrected by the labelled rows.

    Prediction-powered inference (Angelopoulos et al., "Prediction-powered inference", Science
    2023), here its mean estimator: mean calibrated confidence over all N rows (CBPE) plus the
    mean of (correct - confidence) over the n labelled rows (the "rectifier"). When labels are a
    random sample of the window it is unbiased whatever the shift does to calibration (an
    unseen class, inverted frames: CBPE alone reads those as fine), and its variance is
    Var(c)/N + Var(correct - c)/n, smaller than labels alone whenever confidence explains part
    of correctness. Both terms are cluster-robust by device. With fewer than `min_labels`
    labelled rows (`labels` NaN or negative where none) it is CBPE, method "cbpe".

    Labels must be missing at random: feedback that users give mostly on mistakes makes the
    rectifier, and so the estimate, pessimistic."""
    p = apply_temperature(stack_probs(probs), temperature)
    y = np.asarray(labels, dtype=np.float64)
    g = None if groups is None else np.asarray(groups)
    if len(y) != len(p) or (g is not None and len(g) != len(p)):
        raise MonitoringError(f"{len(y)} labels or group ids for {len(p)} rows", where="ppi")
    labelled = np.isfinite(y) & (y >= 0)
    if labelled.sum() < max(2, min_labels):
        return cbpe(p, 1.0, g)
    conf = p.max(axis=1)
    hit = np.zeros(len(p))
    hit[labelled] = (p[labelled].argmax(axis=1) == y[labelled].astype(np.int64)).astype(float)
    est, se = _ppi_parts(conf, hit, labelled, g)
    return AccuracyEstimate(min(1.0, max(0.0, est)), se, len(p), "ppi")


def harm(
    reference: AccuracyEstimate, window: AccuracyEstimate, margin: float, alpha: float = 0.05
) -> HarmVerdict:
    """Harmful when the lower (1 - alpha) bound of reference - window exceeds `margin`."""
    drop = reference.accuracy - window.accuracy
    se = float(np.hypot(reference.se, window.se))
    low = drop - float(norm.ppf(1 - alpha)) * se
    harmful = low > margin
    word = {"cbpe": "estimated", "ppi": "label-corrected estimated"}.get(window.method, "measured")
    reason = (
        f"{word} accuracy {window.accuracy:.3f} vs reference {reference.accuracy:.3f}: "
        f"drop {drop * 100:+.1f} pts (lower {100 * (1 - alpha):.0f}% bound {low * 100:+.1f}) "
        f"{'>' if harmful else '<='} margin {margin * 100:.1f} pts"
    )
    return HarmVerdict(harmful, drop, low, window.method, reason)


# Labelled rows a window needs before its reported estimate is label-corrected (PPI) rather than
# CBPE alone. PPI is unbiased with any number of random labels; its interval carries their
# scarcity (the residual variance is floored by calibration's own E[c(1 - c)] / n). Below 5
# the interval spans most of [0, 1] and says little, so CBPE's reading is kept.
ESTIMATE_MIN_LABELS = 5


def _labelled(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["label"].notna()] if "label" in df.columns else df.iloc[0:0]


def _groups(df: pd.DataFrame) -> np.ndarray | None:
    return df["device_id"].to_numpy() if "device_id" in df.columns else None


def estimate_harm(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    params: MonitorParams,
    temperature: float,
) -> tuple[AccuracyEstimate, AccuracyEstimate, AccuracyEstimate | None, HarmVerdict]:
    """(window estimate, reference estimate, measured window accuracy or None, harm verdict).

    The window's estimate is prediction-powered (`ppi_accuracy`): CBPE rectified by the window's
    labels once it has ESTIMATE_MIN_LABELS of them, CBPE alone before. Two signals vote on harm,
    each at half of `harm_alpha` (Bonferroni, so harm is declared with probability <= harm_alpha
    when the accuracy did not drop): CBPE against CBPE on the held-out reference (precise, but
    blind to shifts that break calibration), and, with labels, the PPI estimate against the
    reference's measured accuracy (unbiased under any shift when labels are a random sample).
    With fewer than `harm_min_labels` labels CBPE alone decides at the full level (a mean of a
    handful of 0/1 rectifiers is too far from normal for a bound), and the reported estimate is
    still label-corrected, its reason saying so. Drop-in for
    monitoring.jobs.judge_harm (same arguments, same tuple)."""
    groups = _groups(current)
    cbpe_win = cbpe(list(current["probs"]), temperature, groups)
    ref_est = cbpe(list(reference["probs"]), temperature)
    lab_ref, lab_cur = _labelled(reference), _labelled(current)
    if len(lab_ref) >= 2:
        # the temperature was fitted on these very rows, so their mean confidence knows the
        # variant's accuracy no better than their labels do: the reference carries the sampling
        # error of its measured accuracy (else a small validation split that happens to read
        # high makes every mild shift look harmful)
        ref_se = measured_accuracy(lab_ref["top1"], lab_ref["label"]).se
        ref_est = replace(ref_est, se=max(ref_est.se, ref_se))
    enough = min(len(lab_ref), len(lab_cur)) >= params.harm_min_labels
    labels = current["label"].astype("Float64").fillna(np.nan).to_numpy(np.float64)
    min_labels = params.harm_min_labels if enough else ESTIMATE_MIN_LABELS
    est = ppi_accuracy(list(current["probs"]), labels, temperature, groups, min_labels)
    if not enough:
        verdict = harm(ref_est, cbpe_win, params.harm_margin, params.harm_alpha)
        if est.method != "ppi":
            return cbpe_win, ref_est, None, verdict
        # too few labels to vote, enough to keep the reported estimate honest: CBPE alone reads
        # an inverted or darkened camera as 20-30 points better than it is, and the rectifier
        # removes that bias at the price of a wide (reported) interval
        lo, hi = est.interval()
        note = (f"label-corrected estimate {est.accuracy:.3f} [{lo:.3f}, {hi:.3f}] from "
                f"{len(lab_cur)} labels (a vote needs {params.harm_min_labels})")
        return est, ref_est, None, replace(verdict, reason=f"{verdict.reason}; {note}")
    lab = measured_accuracy(lab_cur["top1"], lab_cur["label"], _groups(lab_cur))
    ref_lab = measured_accuracy(lab_ref["top1"], lab_ref["label"])
    alpha = params.harm_alpha / 2
    by_cbpe = harm(ref_est, cbpe_win, params.harm_margin, alpha)
    by_ppi = harm(ref_lab, est, params.harm_margin, alpha)
    first, second = (
        (by_ppi, by_cbpe) if by_ppi.harmful or not by_cbpe.harmful else (by_cbpe, by_ppi)
    )
    return est, ref_est, lab, replace(first, reason=f"{first.reason}; {second.reason}")

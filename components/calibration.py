"""Temperature scaling: make a variant's confidence mean what it says, fitted on validation.

Why: label-free accuracy estimation (monitoring.performance, CBPE) reads a window's expected
accuracy off the model's top-1 probabilities, which is only right when those probabilities are
calibrated. A small network trained with augmentation and label smoothing is usually under- or
over-confident; one temperature T (probs ∝ exp(log p / T)), fitted by minimising the negative
log-likelihood on the validation split (Guo et al., "On Calibration of Modern Neural Networks",
ICML 2017), fixes most of that without changing any prediction (the argmax is invariant).

Pure numpy/scipy over probability arrays, so it applies to any variant (float, int8, ONNX)
from its own outputs. The temperature ships in the bundle's preprocessing spec.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar

from edgeops.errors import DataError

_EPS = 1e-7
_LOG_T_BOUNDS = (-3.0, 3.0)  # T in [0.05, 20]


@dataclass(frozen=True)
class Calibration:
    temperature: float
    nll_before: float
    nll_after: float
    ece_before: float
    ece_after: float
    n: int


def _check(probs: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or len(p) == 0:
        raise DataError(f"calibration: probabilities must be a non-empty (N, K) array, got {p.shape}")
    if labels is not None and len(labels) != len(p):
        raise DataError(f"calibration: {len(labels)} labels for {len(p)} probability rows")
    return p


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Softmax(log p / T) row-wise, in float64; T = 1 returns the (renormalised) input."""
    if not temperature > 0:
        raise DataError(f"calibration: temperature must be positive, got {temperature}")
    logits = np.log(np.clip(_check(probs), _EPS, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


def _nll(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(labels)), labels], _EPS, 1.0))))


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """ECE: |accuracy - confidence| per equal-width confidence bin, weighted by the bin's share."""
    p = _check(probs, labels)
    conf = p.max(axis=1)
    hit = (p.argmax(axis=1) == np.asarray(labels)).astype(np.float64)
    idx = np.clip((conf * bins).astype(np.int64), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.sum() / len(p) * abs(hit[m].mean() - conf[m].mean())
    return float(total)


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> Calibration:
    """The NLL-minimising temperature on held-out (validation) outputs and labels."""
    p = _check(probs, labels)
    y = np.asarray(labels, dtype=np.int64)
    if y.min() < 0 or y.max() >= p.shape[1]:
        raise DataError(f"calibration: labels outside [0, {p.shape[1]})")
    res = minimize_scalar(
        lambda lt: _nll(apply_temperature(p, float(np.exp(lt))), y),
        bounds=_LOG_T_BOUNDS,
        method="bounded",
    )
    t = float(np.exp(res.x))
    cal = apply_temperature(p, t)
    return Calibration(
        temperature=t,
        nll_before=_nll(p, y),
        nll_after=_nll(cal, y),
        ece_before=expected_calibration_error(p, y),
        ece_after=expected_calibration_error(cal, y),
        n=len(y),
    )

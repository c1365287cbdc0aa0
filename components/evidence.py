"""Confidence for every accuracy and every verdict: Wilson intervals and a paired non-inferiority test.

Two models scored on the same test images are compared image by image. Only discordant images
carry information about their difference: `wins` (candidate right, reference wrong) and `losses`
(candidate wrong, reference right). The question a release gate asks is one-sided: is the
candidate worse than the reference by no more than `margin` (accuracy points as a fraction)?

H0: acc(candidate) - acc(reference) <= -margin, against H1: > -margin. Two exact tests of this H0
are combined with Bonferroni (each at alpha / 2, p = 2 x the smaller p-value, capped at 1; with
margin 0 the loss bound is void and the first test alone is used):

- the conditional (McNemar-style) test on the discordant pairs: given n = wins + losses, wins is
  Binomial(n, theta); H0 at its boundary means theta0 = 1/2 - N * margin / (2 n) (the discordant
  share N/n plugged in; with margin 0 this is exactly the one-sided exact McNemar test),
  p = P(Binomial(n, theta0) >= wins);
- the loss bound: acc difference >= -loss rate, so a loss rate shown below the margin proves H1
  even when nothing is discordant (a converted file that agrees with its parent everywhere),
  p = P(Binomial(N, margin) <= losses).

Verdict: `pass` when p < alpha; `fail` when the observed difference is already below -margin;
otherwise `not enough evidence` (the point estimate is within the margin but the test split is
too small, or too few images are discordant, to show it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import stats

Outcome = Literal["pass", "fail", "not enough evidence"]


@dataclass(frozen=True)
class Estimate:
    """An accuracy with its Wilson interval."""

    value: float
    low: float
    high: float
    n: int
    confidence: float = 0.95

    def __str__(self) -> str:
        pct = round(self.confidence * 100)
        return f"{self.value:.4f} ({pct}% CI {self.low:.4f}-{self.high:.4f}, n={self.n})"

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "ci": [self.low, self.high], "n": self.n, "confidence": self.confidence}


@dataclass(frozen=True)
class Verdict:
    """A paired non-inferiority comparison and its outcome, with the reason in words."""

    outcome: Outcome
    p_value: float
    difference: float  # candidate accuracy - reference accuracy, on the same images
    low: float  # one-sided (1 - alpha) Wald lower bound on the difference
    margin: float
    wins: int
    losses: int
    n: int
    alpha: float
    reason: str

    @property
    def passed(self) -> bool:
        return self.outcome == "pass"

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def wilson(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion; (0, 1) when n is 0."""
    if n <= 0:
        return 0.0, 1.0
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, float(centre - half)), min(1.0, float(centre + half))


def accuracy(correct: np.ndarray | list[bool], confidence: float = 0.95) -> Estimate:
    """Accuracy of a per-image correctness vector, with its Wilson interval."""
    c = np.asarray(correct, dtype=bool)
    k, n = int(c.sum()), int(c.size)
    low, high = wilson(k, n, confidence)
    return Estimate(k / n if n else float("nan"), low, high, n, confidence)


def _difference_low(wins: int, losses: int, n: int, alpha: float) -> float:
    """One-sided (1 - alpha) Wald lower bound on a paired difference of proportions."""
    d = (wins - losses) / n
    se = np.sqrt(max(wins + losses - n * d * d, 0.0)) / n
    return max(-1.0, float(d - stats.norm.ppf(1 - alpha) * se))


def non_inferiority(
    candidate_correct: np.ndarray | list[bool],
    reference_correct: np.ndarray | list[bool],
    margin: float,
    alpha: float = 0.05,
) -> Verdict:
    """Is the candidate at most `margin` worse than the reference on these paired images?"""
    cand = np.asarray(candidate_correct, dtype=bool)
    ref = np.asarray(reference_correct, dtype=bool)
    if cand.shape != ref.shape or cand.ndim != 1:
        raise ValueError(f"paired outcomes differ in shape: {cand.shape} vs {ref.shape}")
    n = int(cand.size)
    wins = int((cand & ~ref).sum())
    losses = int((~cand & ref).sum())
    return paired_test(wins, losses, n, margin, alpha)


def paired_test(wins: int, losses: int, n: int, margin: float, alpha: float = 0.05) -> Verdict:
    """The test of the module docstring from discordant counts on `n` paired images."""
    if n <= 0:
        return Verdict("not enough evidence", 1.0, float("nan"), -1.0, margin, 0, 0, 0, alpha,
                       "no test images to compare on")
    discordant = wins + losses
    diff = (wins - losses) / n
    if discordant:
        theta0 = min(1.0, max(0.0, 0.5 - n * margin / (2 * discordant)))
        p_cond = float(stats.binom.sf(wins - 1, discordant, theta0))
    else:
        p_cond = 1.0
    p_loss = float(stats.binom.cdf(losses, n, margin)) if margin > 0 else 1.0
    p = min(1.0, 2 * min(p_cond, p_loss)) if margin > 0 else p_cond
    low = _difference_low(wins, losses, n, alpha)
    counts = f"{wins} wins, {losses} losses on {n} paired images"
    if p < alpha:
        outcome: Outcome = "pass"
        reason = f"non-inferior within {margin:g}: difference {diff:+.4f} (p={p:.3g} < {alpha:g}; {counts})"
    elif diff < -margin:
        outcome = "fail"
        reason = f"worse by more than {margin:g}: difference {diff:+.4f} (p={p:.3g}; {counts})"
    else:
        outcome = "not enough evidence"
        reason = (f"not enough evidence for non-inferiority within {margin:g}: difference {diff:+.4f}, "
                  f"p={p:.3g} >= {alpha:g} ({counts}; too few images or discordant pairs to decide)")
    return Verdict(outcome, p, diff, low, margin, wins, losses, n, alpha, reason)

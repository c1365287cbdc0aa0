"""The variant per device profile, chosen on the validation split; the full candidate table.

The rule (per profile): among variants the profile can run within every budget (dtypes and ops,
size, arena on its runtime, estimated latency), take the best validation accuracy; then the
CHEAPEST variant whose validation accuracy is within `margin` of it: fewest wire bytes (what a
device downloads, device.wire), then the lowest estimated latency on the profile. "Within the
margin" is a paired one-sided non-inferiority test on the same validation images
(components.evidence) when per-image predictions are there, a point comparison otherwise (and
the reason says which). The test split never enters the choice: it judges only the chosen
variant, once, in its blessing (components.blessing). Selection walks validation's order and
passes over a variant only for a check that reads no test label (components.blessing's
non_test_checks); a profile whose chosen variant fails on test gets a Selection with target
None and the reasons, never another variant: a report, not a release.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from components.blessing import Blessing
    from components.conversion import Variant
    from components.profiles import DeviceProfile

COLUMNS = [
    "variant",
    "target",
    "blessed",
    "selected",
    "val_accuracy",
    "within_margin",
    "accuracy",
    "accuracy_drop",
    "bytes",
    "wire_bytes",
    "weight_bytes",
    "gzip_bytes",
    "host_latency_ms",
    "estimated_latency_ms",
    "arena_bytes",
    "macs",
    "reasons",
]


@dataclass(frozen=True)
class Selection:
    profile: str
    target: str | None  # the chosen variant's name (key in the variants dict); None: no release
    reason: str
    accuracy: float | None = None  # test accuracy of the chosen variant, reported once
    bytes: int | None = None
    candidates: int = 0
    blessed: int = 0
    candidate: str | None = None  # what validation chose (past non-test check failures), blessed or not
    val_accuracy: float | None = None
    outcome: str = ""  # the chosen variant's blessing verdict: pass, fail, not enough evidence
    wire_bytes: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class Choice:
    """One profile's choice on validation: what was chosen, against which best, and every
    fitting variant's verdict against that best (pass: within the margin)."""

    name: str | None
    reason: str
    best: str | None = None
    verdicts: dict[str, str] | None = None  # variant -> "pass" / "fail" / "not enough evidence"
    fit: tuple[str, ...] = ()
    # variant -> its failed checks that read no test label ("check: reason"): why rank left it out
    excluded: dict[str, tuple[str, ...]] | None = None


def _val(v: Variant) -> float:
    return v.val_accuracy if v.val_accuracy is not None and not math.isnan(v.val_accuracy) else float("nan")


def estimated_latency(v: Variant, profile: DeviceProfile) -> float:
    m = v.measurement
    return m.estimated_latency_ms(profile) if m is not None else float("inf")


def cost(name: str, v: Variant, profile: DeviceProfile) -> tuple[int, float, str]:
    """What a device pays: wire bytes, then the estimated latency on the profile."""
    return (v.wire_bytes, estimated_latency(v, profile), name)


def _within(v: Variant, best: Variant, margin: float, alpha: float, y_val: Any) -> tuple[str, str]:
    """(outcome, reason) of `v` against `best` on validation: paired when predictions allow."""
    from components.evidence import non_inferiority

    y = None if y_val is None else np.asarray(y_val)
    if y is not None and len(y) and len(v.val_predictions) == len(best.val_predictions) == len(y):
        verdict = non_inferiority(np.asarray(v.val_predictions) == y, np.asarray(best.val_predictions) == y,
                                  margin, alpha)
        return verdict.outcome, f"paired on validation: {verdict.reason}"
    ok = _val(v) >= _val(best) - margin
    return ("pass" if ok else "fail"), (f"point estimate (no paired validation predictions): "
                                        f"{_val(v):.4f} vs {_val(best):.4f}, margin {margin:g}")


def rank(
    variants: dict[str, Variant], profile: DeviceProfile, margin: float = 0.0, alpha: float = 0.05,
    y_val: Any = None,
) -> Choice:
    """The cheapest variant the profile can run that is non-inferior (within `margin`) to the
    best one on validation; reads no test label."""
    from components.blessing import non_test_checks

    checks = {n: non_test_checks(v, profile) for n, v in variants.items()}
    excluded = {n: tuple(f"{check}: {reason}" for check, reason in c) for n, c in checks.items() if c}
    runnable = {n: v for n, v in variants.items() if n not in excluded}
    if not runnable:
        listed = "; ".join(f"{n}: {', '.join(r for _, r in c)}" for n, c in sorted(checks.items()))
        return Choice(None, f"no variant fits profile {profile.name}: {listed or 'no candidates'}",
                      excluded=excluded)
    fit = {n: v for n, v in runnable.items() if not math.isnan(_val(v))}
    if not fit:  # records without a validation split (older variants.json): cost alone decides
        name = min(runnable, key=lambda n: cost(n, runnable[n], profile))
        return Choice(name, f"{name}: cheapest of {len(runnable)} that fit {profile.name}; no validation "
                      "accuracy recorded to compare them on", name, {name: "pass"}, tuple(sorted(runnable)),
                      excluded)
    best = min(fit, key=lambda n: (-_val(fit[n]), *cost(n, fit[n], profile)))
    verdicts, reasons = {}, {}
    for n, v in fit.items():
        verdicts[n], reasons[n] = ("pass", "the best on validation") if n == best else _within(
            v, fit[best], margin, alpha, y_val)
    name = min((n for n in fit if verdicts[n] == "pass"), key=lambda n: cost(n, fit[n], profile))
    v = fit[name]
    reason = (f"{name}: cheapest of {sum(o == 'pass' for o in verdicts.values())} within {margin:g} of the best "
              f"on validation ({best}, {_val(fit[best]):.4f}) among {len(fit)} that fit {profile.name}: "
              f"{v.wire_bytes} wire bytes, {estimated_latency(v, profile):.3g} ms estimated, validation "
              f"{_val(v):.4f}; {reasons[name]}")
    return Choice(name, reason, best, verdicts, tuple(sorted(fit)), excluded)


def choose(
    variants: dict[str, Variant], profile: DeviceProfile, margin: float = 0.0, alpha: float = 0.05,
    y_val: Any = None,
) -> tuple[str | None, str]:
    """(name, reason) of `rank`: the variant validation chooses for the profile."""
    c = rank(variants, profile, margin, alpha, y_val)
    return c.name, c.reason


def validation_order(choice: Choice, variants: dict[str, Variant], profile: DeviceProfile) -> list[str]:
    """The order selection walks: validation's choice, then the other variants within the margin
    of the best on validation (all that fit where none has a validation accuracy), cheapest first.
    Built from validation figures and costs only."""
    if choice.name is None:
        return []
    verdicts = choice.verdicts or {}
    scored = any(not math.isnan(_val(variants[n])) for n in choice.fit)
    rest = [n for n in choice.fit if n != choice.name and (verdicts.get(n) == "pass" or not scored)]
    return [choice.name, *sorted(rest, key=lambda n: cost(n, variants[n], profile))]


def _better_but_excluded(variants: dict[str, Variant], choice: Choice, v: Variant,
                         profile: DeviceProfile) -> list[tuple[str, list[str]]]:
    """Variants of a target the profile runs, better than `v` on validation, that rank left out
    for a failed check that reads no test label: (name, ["check: reason", ...])."""
    better = [(n, list(failed)) for n, failed in (choice.excluded or {}).items()
              if profile.allows(variants[n].target) and _val(variants[n]) > _val(v)]
    return sorted(better, key=lambda item: -_val(variants[item[0]]))


def _over(items: list[tuple[str, list[str]]]) -> str:
    return "; ".join(f"{n} passed over: {', '.join(f)}" for n, f in items)


def _test_evidence(v: Variant, b: Blessing) -> str:
    """The test verdict's figures: the accuracy with its 95% interval, each paired difference with
    its one-sided lower bound."""
    from components.evidence import wilson

    m = b.metrics
    if m.get("accuracy_ci"):
        lo, hi = m["accuracy_ci"]
        n = m.get("n_test")
    else:
        n = v.n_test
        lo, hi = wilson(round(v.accuracy * n), n)
    parts = [f"test accuracy {v.accuracy:.4f} (95% CI {lo:.4f}-{hi:.4f}, n={n}"
             + ("" if m.get("accuracy_ci") else ", point-estimate gates: no paired test predictions") + ")"]
    for key, what in (("vs_float", "float parent"), ("vs_stable", "cohort's stable")):
        if isinstance(m.get(key), dict):
            d = m[key]
            parts.append(f"vs its {what} {d['difference']:+.4f}, one-sided {100 * (1 - d['alpha']):g}% lower "
                         f"bound {d['low']:+.4f}, margin {d['margin']:g}")
    return "; ".join(parts)


def select(
    variants: dict[str, Variant], blessings: dict[str, Blessing], profile: DeviceProfile,
    margin: float = 0.0, alpha: float = 0.05, y_val: Any = None,
) -> Selection:
    """The variant to release for the profile, or None with the reasons; blessings are keyed
    like `variants`.

    Walk `validation_order` (validation's choice first, then the others within the margin,
    cheapest first); the first whose checks that read no test label pass is THE choice
    (components.blessing.non_test_checks, and those its blessing recorded). Its blessing's
    test-scored checks then judge that one variant, once: if it fails on test, nothing is
    released for the profile. No test score ever moves the choice to another variant."""
    choice = rank(variants, profile, margin, alpha, y_val)
    if choice.name is None:
        return Selection(profile.name, None, f"nothing released for profile {profile.name}: {choice.reason}",
                         candidates=len(blessings))
    skipped: list[tuple[str, list[str]]] = []
    name = None
    for n in validation_order(choice, variants, profile):
        # rank let through only variants whose own checks pass: what remains is what a blessing
        # recorded (a record made against other budgets says so here)
        failures = list(b.non_test) if (b := blessings.get(n)) is not None else []
        if not failures:
            name = n
            break
        skipped.append((n, failures))
    if name is None:
        return Selection(
            profile.name, None,
            f"nothing released for profile {profile.name}: no variant in validation order passes the checks "
            f"that read no test label ({_over(skipped)})",
            candidates=len(blessings), candidate=None,
        )
    v = variants[name]
    head = choice.reason if not skipped else (
        f"{name}: the next in validation order ({v.wire_bytes} wire bytes, validation {_val(v):.4f}) after a "
        f"check that reads no test label failed ({_over(skipped)}); validation's choice: {choice.reason}")
    if excluded := _better_but_excluded(variants, choice, v, profile):
        head += f"; better on validation but failing a check that reads no test label: {_over(excluded)}"
    b = blessings.get(name)
    common = dict(candidates=len(blessings), candidate=name, val_accuracy=v.val_accuracy)
    if b is None or b.outcome == "not chosen":
        why = "; ".join(b.reasons) if b is not None else "no blessing given"
        return Selection(profile.name, None, f"nothing released for profile {profile.name}: {head}; not judged "
                         f"on test for this profile ({why})", outcome=b.verdict if b is not None else "", **common)
    evidence = _test_evidence(v, b)
    if not b.blessed:
        return Selection(
            profile.name, None,
            f"nothing released for profile {profile.name}: {head}; {b.verdict} on test: {'; '.join(b.reasons)}; "
            f"{evidence}; the test verdict judges this variant only (no other variant is tried on test)",
            outcome=b.verdict, **common,
        )
    return Selection(
        profile.name,
        name,
        f"{head}; blessed on test: {evidence}; {v.bytes} file bytes, {v.wire_bytes} wire bytes",
        accuracy=v.accuracy,
        bytes=v.bytes,
        blessed=1,
        outcome=b.verdict,
        wire_bytes=v.wire_bytes,
        **common,
    )


def candidate_table(
    variants: dict[str, Variant], blessings: dict[str, Blessing], profile: DeviceProfile,
    margin: float = 0.0, alpha: float = 0.05, y_val: Any = None,
) -> pd.DataFrame:
    """One row per variant for this profile: what it can run, then cheapest first; `selected`
    marks the choice, `within_margin` the verdict against the best on validation.

    Test figures (accuracy, drop) appear for the selected variant only: the others were never
    scored on test for this profile."""
    from components.blessing import constraint_reasons

    chosen = select(variants, blessings, profile, margin, alpha, y_val).target
    within = rank(variants, profile, margin, alpha, y_val).verdicts or {}
    rows = []
    for name, v in variants.items():
        b = blessings.get(name)
        m = v.measurement
        rows.append(
            {
                "variant": name,
                "target": v.target,
                "blessed": bool(b and b.blessed),
                "selected": name == chosen,
                "val_accuracy": v.val_accuracy,
                "within_margin": within.get(name, "does not fit" if constraint_reasons(v, profile)
                                            else "no validation accuracy"),
                "accuracy": v.accuracy if name == chosen else None,  # test: the chosen one only
                "accuracy_drop": (b.metrics.get("accuracy_drop") if b else None) if name == chosen else None,
                "bytes": v.bytes,
                "wire_bytes": v.wire_bytes,
                "weight_bytes": m.weight_bytes if m else None,
                "gzip_bytes": v.gzip_bytes,
                "host_latency_ms": m.host_latency_ms if m else None,
                "estimated_latency_ms": m.estimated_latency_ms(profile) if m else None,
                "arena_bytes": m.arena_bytes if m else None,
                "macs": m.macs if m else None,
                "reasons": "; ".join(b.reasons) if b else "not blessed for this profile",
            }
        )
    table = pd.DataFrame(rows, columns=COLUMNS)
    unfit = {n: bool(constraint_reasons(v, profile)) for n, v in variants.items()}
    order = sorted(  # what the profile can run, then cost: no test figure orders the table
        range(len(rows)),
        key=lambda i: (unfit[rows[i]["variant"]], cost(rows[i]["variant"], variants[rows[i]["variant"]], profile)),
    )
    return table.iloc[order].reset_index(drop=True)


def plot_size_vs_accuracy(
    variants: dict[str, Variant],
    blessings: dict[str, Blessing],
    profile: DeviceProfile,
    path: Path | str,
    margin: float = 0.0,
    alpha: float = 0.05,
    y_val: Any = None,
    stable: tuple[str, int, float] | None = None,
    front: set[str] | frozenset[str] = frozenset(),
) -> Path:
    """Wire bytes against validation accuracy for the variants this profile can run, the search's
    Pareto front (`front`: names, components.search.profile_front) joined up
    (components.plots.size_vs_accuracy_png). `stable`: (label, wire bytes, validation accuracy on
    this release's split) of what the cohort runs now, if anything."""
    from components.plots import SizePoint, size_vs_accuracy_png

    table = candidate_table(variants, blessings, profile, margin, alpha, y_val)
    runnable = table[table.within_margin != "does not fit"]
    points = [SizePoint(r.variant, int(r.wire_bytes), float(r.val_accuracy) if pd.notna(r.val_accuracy) else math.nan,
                        bool(r.blessed), bool(r.selected),
                        False, r.within_margin == "pass", r.variant in front) for r in runnable.itertuples()]
    if stable is not None:
        points.append(SizePoint(stable[0], int(stable[1]), float(stable[2]), True, False, True, False, False))
    path = Path(path)
    size_vs_accuracy_png(points, path, f"{profile.name}: wire bytes vs validation accuracy",
                         budget=profile.max_model_bytes)
    return path

"""The variant per device profile, chosen on the validation split; the full candidate table; a plot.

Order: validation accuracy first (among variants the profile can run within every budget), then
fewer wire bytes (what a device downloads), then lower latency. The test split never enters the choice: it judges only the
chosen variant, once, in its blessing (components.blessing). A profile whose chosen variant is
not blessed gets a Selection with target None and the reasons: a report, not a release.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
    "accuracy",
    "accuracy_drop",
    "bytes",
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
    candidate: str | None = None  # what validation chose, blessed or not
    val_accuracy: float | None = None
    outcome: str = ""  # the chosen variant's blessing verdict: pass, fail, not enough evidence

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _latency(v: Variant) -> float:
    return v.measurement.host_latency_ms if v.measurement else float("inf")


def _wire(v: Variant) -> int:
    """Bytes a device downloads (zstd on the wire, device.wire); the file size when unmeasured."""
    return v.measurement.wire_bytes if v.measurement and v.measurement.wire_bytes else v.bytes


def _rank(name: str, v: Variant) -> tuple[float, int, float, str]:
    val = v.val_accuracy if v.val_accuracy is not None and not math.isnan(v.val_accuracy) else -1.0
    return (-val, _wire(v), _latency(v), name)


def choose(variants: dict[str, Variant], profile: DeviceProfile) -> tuple[str | None, str]:
    """The best variant the profile can run, by validation accuracy; reads no test label."""
    from components.blessing import constraint_reasons

    why = {n: constraint_reasons(v, profile) for n, v in variants.items()}
    ok = sorted((_rank(n, v), n) for n, v in variants.items() if not why[n])
    if not ok:
        listed = "; ".join(f"{n}: {', '.join(r)}" for n, r in sorted(why.items()))
        return None, f"no variant fits profile {profile.name}: {listed or 'no candidates'}"
    name = ok[0][1]
    return name, f"best validation accuracy ({variants[name].val_accuracy}) of {len(ok)} that fit"


def select(
    variants: dict[str, Variant], blessings: dict[str, Blessing], profile: DeviceProfile
) -> Selection:
    """The validation-ranked best among the blessed; blessings are keyed like `variants`."""
    candidate, _ = choose(variants, profile)
    ok = sorted(
        (_rank(n, v), n) for n, v in variants.items() if n in blessings and blessings[n].blessed
    )
    if not ok:
        if candidate is not None and candidate in blessings:
            b = blessings[candidate]
            why = f"{candidate} (chosen on validation): {b.verdict}: {'; '.join(b.reasons)}"
        else:
            why = "; ".join(f"{n}: {', '.join(b.reasons)}" for n, b in sorted(blessings.items()))
        return Selection(
            profile.name,
            None,
            f"no variant fits profile {profile.name}: {why or 'no candidates'}",
            candidates=len(blessings),
            candidate=candidate,
            val_accuracy=variants[candidate].val_accuracy if candidate else None,
            outcome=blessings[candidate].verdict if candidate in blessings else "",
        )
    name = ok[0][1]
    v = variants[name]
    return Selection(
        profile.name,
        name,
        f"best validation accuracy ({v.val_accuracy}) among {len(ok)} blessed; test {v.accuracy:.4f}, "
        f"{v.bytes} bytes",
        accuracy=v.accuracy,
        bytes=v.bytes,
        candidates=len(blessings),
        blessed=len(ok),
        candidate=candidate,
        val_accuracy=v.val_accuracy,
        outcome=blessings[name].verdict,
    )


def candidate_table(
    variants: dict[str, Variant], blessings: dict[str, Blessing], profile: DeviceProfile
) -> pd.DataFrame:
    """One row per variant for this profile, best first; `selected` marks the choice.

    Test figures (accuracy, drop) appear for the selected variant only: the others were never
    scored on test for this profile."""
    chosen = select(variants, blessings, profile).target
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
                "accuracy": v.accuracy if name == chosen else None,  # test: the chosen one only
                "accuracy_drop": (b.metrics.get("accuracy_drop") if b else None) if name == chosen else None,
                "bytes": v.bytes,
                "gzip_bytes": v.gzip_bytes,
                "host_latency_ms": m.host_latency_ms if m else None,
                "estimated_latency_ms": m.estimated_latency_ms(profile) if m else None,
                "arena_bytes": m.arena_bytes if m else None,
                "macs": m.macs if m else None,
                "reasons": "; ".join(b.reasons) if b else "not blessed for this profile",
            }
        )
    from components.blessing import constraint_reasons

    table = pd.DataFrame(rows, columns=COLUMNS)
    unfit = {n: bool(constraint_reasons(v, profile)) for n, v in variants.items()}
    order = sorted(  # by what the profile can run, then validation: no test figure orders the table
        range(len(rows)),
        key=lambda i: (unfit[rows[i]["variant"]], _rank(rows[i]["variant"], variants[rows[i]["variant"]])),
    )
    return table.iloc[order].reset_index(drop=True)


def plot_size_vs_accuracy(
    variants: dict[str, Variant],
    blessings: dict[str, Blessing],
    profile: DeviceProfile,
    path: Path | str,
) -> Path:
    """Bytes (log) against accuracy; blessed filled, the rest hollow, the budget as a line."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    table = candidate_table(variants, blessings, profile)
    table["val_accuracy"] = pd.to_numeric(table["val_accuracy"], errors="coerce")
    table = table[table["val_accuracy"].notna()]  # a variant without a validation score is not placed
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    for blessed, marker in ((True, "o"), (False, "x")):
        part = table[table.blessed == blessed]
        ax.scatter(
            part.bytes, part.val_accuracy, marker=marker, label="blessed" if blessed else "not blessed"
        )
    for _, row in table.iterrows():
        label = row.variant + (" *" if row.selected else "")
        ax.annotate(
            label, (row.bytes, row.val_accuracy), fontsize=7, xytext=(3, 3), textcoords="offset points"
        )
    ax.axvline(profile.max_model_bytes, linestyle="--", color="grey", label="size budget")
    ax.set(
        xscale="log",
        xlabel="model bytes",
        ylabel="validation accuracy",
        title=f"{profile.name}: size vs accuracy",
    )
    ax.legend(fontsize=7)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    return path

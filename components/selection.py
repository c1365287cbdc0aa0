"""The best blessed variant per device profile, the full candidate table, and a plot.

Order: accuracy first (among variants inside every budget), then smaller file, then lower
latency. A profile where nothing is blessed gets a Selection with target None and a reason
that lists why each candidate failed: a report, not a release.
"""

from __future__ import annotations

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
    accuracy: float | None = None
    bytes: int | None = None
    candidates: int = 0
    blessed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _latency(v: Variant) -> float:
    return v.measurement.host_latency_ms if v.measurement else float("inf")


def _rank(name: str, v: Variant) -> tuple[float, int, float, str]:
    return (-v.accuracy, v.bytes, _latency(v), name)


def select(
    variants: dict[str, Variant], blessings: dict[str, Blessing], profile: DeviceProfile
) -> Selection:
    """Pick the best blessed variant for `profile`; blessings are keyed like `variants`."""
    ok = sorted(
        (_rank(n, v), n) for n, v in variants.items() if n in blessings and blessings[n].blessed
    )
    if not ok:
        why = "; ".join(f"{n}: {', '.join(b.reasons)}" for n, b in sorted(blessings.items()))
        return Selection(
            profile.name,
            None,
            f"no variant fits profile {profile.name}: {why or 'no candidates'}",
            candidates=len(blessings),
        )
    name = ok[0][1]
    v = variants[name]
    return Selection(
        profile.name,
        name,
        f"most accurate blessed variant ({v.accuracy:.4f}, {v.bytes} bytes) of {len(ok)} blessed",
        accuracy=v.accuracy,
        bytes=v.bytes,
        candidates=len(blessings),
        blessed=len(ok),
    )


def candidate_table(
    variants: dict[str, Variant], blessings: dict[str, Blessing], profile: DeviceProfile
) -> pd.DataFrame:
    """One row per variant for this profile, best first; `selected` marks the choice."""
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
                "accuracy": v.accuracy,
                "accuracy_drop": (
                    b.metrics.get("accuracy_drop") if b else v.float_accuracy - v.accuracy
                ),
                "bytes": v.bytes,
                "gzip_bytes": v.gzip_bytes,
                "host_latency_ms": m.host_latency_ms if m else None,
                "estimated_latency_ms": m.estimated_latency_ms(profile) if m else None,
                "arena_bytes": m.arena_bytes if m else None,
                "macs": m.macs if m else None,
                "reasons": "; ".join(b.reasons) if b else "not blessed for this profile",
            }
        )
    table = pd.DataFrame(rows, columns=COLUMNS)
    order = sorted(
        range(len(rows)),
        key=lambda i: (
            not rows[i]["blessed"],
            _rank(rows[i]["variant"], variants[rows[i]["variant"]]),
        ),
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
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    for blessed, marker in ((True, "o"), (False, "x")):
        part = table[table.blessed == blessed]
        ax.scatter(
            part.bytes, part.accuracy, marker=marker, label="blessed" if blessed else "not blessed"
        )
    for _, row in table.iterrows():
        label = row.variant + (" *" if row.selected else "")
        ax.annotate(
            label, (row.bytes, row.accuracy), fontsize=7, xytext=(3, 3), textcoords="offset points"
        )
    ax.axvline(profile.max_model_bytes, linestyle="--", color="grey", label="size budget")
    ax.set(
        xscale="log",
        xlabel="model bytes",
        ylabel="test accuracy",
        title=f"{profile.name}: size vs accuracy",
    )
    ax.legend(fontsize=7)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    return path

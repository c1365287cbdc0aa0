"""Figures a reviewer looks at: training curves, confusion matrix, accuracy-vs-cost Pareto plots.

Each function returns PNG bytes (and writes them to `path` when given), rendered with the
non-interactive Agg backend so it works on servers and in flows without a display.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from components.sweep import SweepPoint


def _figure(ncols: int = 1, size: tuple[float, float] = (6.0, 4.0)):
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=100)
    axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
    return fig, axes


def _png(fig, path: Path | str | None, outside: bool = False) -> bytes:
    """`outside`: text drawn right of the axes is kept (bbox_inches="tight" instead of tight_layout)."""
    buf = io.BytesIO()
    if outside:
        fig.savefig(buf, format="png", bbox_inches="tight")
    else:
        fig.tight_layout()
        fig.savefig(buf, format="png")
    data = buf.getvalue()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(data)
    return data


def training_curves_png(
    history: dict[str, list[float]], path: Path | str | None = None, title: str = "training"
) -> bytes:
    """Loss and accuracy per epoch, train against validation."""
    fig, (loss_ax, acc_ax) = _figure(2, (10.0, 4.0))
    for key, ax in (("loss", loss_ax), ("accuracy", acc_ax)):
        for name, style in ((key, "-"), (f"val_{key}", "--")):
            if name in history:
                ax.plot(range(1, len(history[name]) + 1), history[name], style, label=name)
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend()
    for extra in ("soft_loss", "hard_loss"):
        if extra in history:
            loss_ax.plot(range(1, len(history[extra]) + 1), history[extra], ":", label=extra)
            loss_ax.legend()
    fig.suptitle(title)
    return _png(fig, path)


def confusion_matrix_png(
    confusion: np.ndarray, labels: Sequence[str], path: Path | str | None = None, title: str = "test split"
) -> bytes:
    """Counts per (true, predicted) label, errors easy to spot."""
    n = len(labels)
    fig, (ax,) = _figure(1, (max(4.0, 0.5 * n + 2), max(3.5, 0.5 * n + 1.5)))
    ax.imshow(confusion, cmap="Blues")
    ax.set_xticks(range(n), labels=list(labels), rotation=45 if n > 6 else 0)
    ax.set_yticks(range(n), labels=list(labels))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    top = confusion.max() if confusion.size else 0
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if confusion[i, j]:
                    colour = "white" if confusion[i, j] > top / 2 else "black"
                    ax.text(j, i, str(int(confusion[i, j])), ha="center", va="center", color=colour, fontsize=8)
    acc = np.trace(confusion) / max(int(confusion.sum()), 1)
    ax.set_title(f"{title}: accuracy {acc:.4f}")
    return _png(fig, path)


def pareto_png(points: Sequence[SweepPoint], path: Path | str | None = None) -> bytes:
    """Validation accuracy (what the front is chosen on) against MACs and against parameters; the Pareto front is joined up."""
    from components.sweep import pareto_front

    fig, axes = _figure(2, (11.0, 4.5))
    for ax, cost in zip(axes, ("macs", "params"), strict=True):
        xs = [getattr(p, cost) for p in points]
        ys = [p.val_accuracy for p in points]
        ax.scatter(xs, ys, c=[p.rho for p in points], cmap="viridis", s=40)
        for p in points:
            ax.annotate(f"a={p.alpha:g} r={p.rho}", (getattr(p, cost), p.val_accuracy), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
        front = sorted(pareto_front(points, cost), key=lambda p: getattr(p, cost))
        ax.plot([getattr(p, cost) for p in front], [p.val_accuracy for p in front], "r-", label="Pareto front")
        ax.set_xscale("log")
        ax.set_xlabel(cost)
        ax.set_ylabel("validation accuracy")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    fig.suptitle("width multiplier alpha x input resolution rho")
    return _png(fig, path)


def training_curves(history: dict[str, list[float]], path: Path | str, title: str = "training") -> Path:
    """`training_curves_png` written to `path`; returns the path (for artifact loggers)."""
    training_curves_png(history, path, title)
    return Path(path)


def confusion_matrix(
    confusion: np.ndarray, labels: Sequence[str], path: Path | str, title: str = "test split"
) -> Path:
    confusion_matrix_png(confusion, labels, path, title)
    return Path(path)


def pareto(points: Sequence[SweepPoint], path: Path | str) -> Path:
    pareto_png(points, path)
    return Path(path)


@dataclass(frozen=True)
class SizePoint:
    """One variant a profile can run, as the size-vs-accuracy plot shows it."""

    name: str
    wire_bytes: int
    val_accuracy: float
    blessed: bool = False
    selected: bool = False
    stable: bool = False  # what the cohort runs now
    within_margin: bool = False  # non-inferior to the best on validation (selection's verdict)
    front: bool = False  # on the search's Pareto front (accuracy, wire bytes, latency)


def _spread(ys: list[float], gap: float, low: float, high: float) -> list[float]:
    """Label heights in axes fractions: the sorted ys pushed apart to at least `gap`, kept inside
    [low, high] (a plain sweep up then down; matplotlib has no label placement of its own)."""
    out = list(ys)
    for i in range(1, len(out)):
        out[i] = max(out[i], out[i - 1] + gap)
    if out and out[-1] > high:
        out[-1] = high
        for i in range(len(out) - 2, -1, -1):
            out[i] = min(out[i], out[i + 1] - gap)
    return [max(low, y) for y in out]


def size_vs_accuracy_png(
    points: Sequence[SizePoint], path: Path | str | None = None, title: str = "size vs accuracy",
    budget: int | None = None,
) -> bytes:
    """Wire bytes (log) against validation accuracy. Axes span the points (the size budget is drawn
    only when it falls near them, else named in the legend); labels sit in a column right of the
    axes with leader lines, so they never overlap; the selected variant is a star, the cohort's
    current stable a square ring; filled: blessed, green: within the margin of the best."""
    pts = [p for p in points if p.wire_bytes > 0 and math.isfinite(p.val_accuracy)]
    fig, (ax,) = _figure(1, (8.0, max(4.0, 0.28 * len(pts) + 1.5)))
    if not pts:
        ax.text(0.5, 0.5, "no variant this profile can run", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        ax.set_title(title)
        return _png(fig, path)
    xs = [p.wire_bytes for p in pts]
    ys = [p.val_accuracy for p in pts]
    x_lo, x_hi = min(xs) / 1.4, max(xs) * 1.4
    pad = max(0.005, 0.08 * (max(ys) - min(ys)))
    y_lo, y_hi = min(ys) - pad, min(1.0 + pad / 2, max(ys) + pad)
    for p in pts:
        colour = "tab:green" if p.within_margin else "tab:grey"
        ax.scatter([p.wire_bytes], [p.val_accuracy], s=36, marker="o", edgecolors=colour,
                   facecolors=colour if p.blessed else "none", zorder=3)
        if p.selected:
            ax.scatter([p.wire_bytes], [p.val_accuracy], s=220, marker="*", color="tab:red", zorder=4)
        if p.stable:
            ax.scatter([p.wire_bytes], [p.val_accuracy], s=140, marker="s", facecolors="none",
                       edgecolors="tab:blue", linewidths=1.5, zorder=2)
    handles = [
        ax.scatter([], [], marker="o", color="tab:green", label="within margin, blessed"),
        ax.scatter([], [], marker="o", facecolors="none", edgecolors="tab:grey", label="not blessed / outside margin"),
        ax.scatter([], [], marker="*", s=120, color="tab:red", label="selected"),
        ax.scatter([], [], marker="s", facecolors="none", edgecolors="tab:blue", label="current stable"),
    ]
    if budget is not None and x_lo <= budget <= x_hi * 3:
        x_hi = max(x_hi, budget * 1.2)
        handles.append(ax.axvline(budget, linestyle="--", color="grey", label=f"size budget {budget:,} B"))
    elif budget is not None:
        handles.append(ax.plot([], [], " ", label=f"size budget {budget:,} B (off the chart)")[0])
    front = sorted((p for p in pts if p.front), key=lambda p: p.wire_bytes)
    if front:
        handles.append(ax.plot([p.wire_bytes for p in front], [p.val_accuracy for p in front], "-", color="tab:orange",
                               lw=1, zorder=1, label="Pareto front (accuracy, wire, latency)")[0])
    ax.set(xscale="log", xlim=(x_lo, x_hi), ylim=(y_lo, y_hi), xlabel="wire bytes (zstd, what a device downloads)",
           ylabel="validation accuracy", title=title)
    ax.grid(alpha=0.3, which="both")
    order = sorted(range(len(pts)), key=lambda i: pts[i].val_accuracy)
    frac = [(pts[i].val_accuracy - y_lo) / (y_hi - y_lo) for i in order]
    label_y = _spread(frac, min(0.07, 0.95 / max(1, len(pts))), 0.0, 1.0)
    for i, ly in zip(order, label_y, strict=True):
        p = pts[i]
        text = p.name + (" (selected)" if p.selected else "") + (" (stable)" if p.stable else "")
        ax.annotate(text, (p.wire_bytes, p.val_accuracy), xytext=(1.03, ly), textcoords="axes fraction",
                    fontsize=7, va="center", arrowprops={"arrowstyle": "-", "color": "0.6", "lw": 0.6})
    ax.legend(handles=handles, fontsize=7, loc="best")
    return _png(fig, path, outside=True)

"""Figures a reviewer looks at: training curves, confusion matrix, accuracy-vs-cost Pareto plot.

Each function returns PNG bytes (and writes them to `path` when given), rendered with the
non-interactive Agg backend so it works on servers and in flows without a display.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
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


def _png(fig, path: Path | str | None) -> bytes:
    buf = io.BytesIO()
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

"""The alpha x rho sweep's pure parts and the PNG figures a reviewer sees."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from components.plots import (
    SizePoint,
    _spread,
    confusion_matrix,
    confusion_matrix_png,
    pareto,
    pareto_png,
    size_vs_accuracy_png,
    training_curves,
    training_curves_png,
)
from components.sweep import SweepPoint, pareto_front, run_sweep, sweep_grid
from edgeops.params import PipelineParams, SweepParams

PNG = b"\x89PNG\r\n\x1a\n"


def pt(alpha: float, rho: int, acc: float, macs: int, params: int) -> SweepPoint:
    return SweepPoint(alpha, rho, acc, acc, params, macs, 1.0)


def test_grid_carries_alpha_rho_and_sweep_overrides() -> None:
    params = PipelineParams(sweep=SweepParams(alphas=[0.5, 1.0], resolutions=[16, 32], epochs=3))
    grid = sweep_grid(params)
    assert [(s.alpha, s.rho) for s in grid] == [(0.5, 16), (1.0, 16), (0.5, 32), (1.0, 32)]
    assert all(s.prepare.image_size == s.rho and s.train.alpha == s.alpha for s in grid)
    assert all(s.train.epochs == 3 and not s.train.distill.enabled for s in grid)
    assert grid[0].name == "alpha=0.5_rho=16"


def test_pareto_front_keeps_only_undominated_points() -> None:
    a = pt(0.25, 16, 0.90, 100, 10)
    b = pt(0.5, 16, 0.95, 200, 20)
    c = pt(0.5, 24, 0.94, 300, 20)  # dominated by b on MACs, tied on params but less accurate
    d = pt(1.0, 32, 0.99, 900, 80)
    e = pt(1.0, 16, 0.95, 250, 80)  # same accuracy as b, costlier
    assert pareto_front([a, b, c, d, e], "macs") == [a, b, d]
    assert pareto_front([a, b, c, d, e], "params") == [a, b, d]
    # chosen on validation: a point best on test but worse on validation stays off the front
    lucky = SweepPoint(0.5, 16, 0.999, 0.93, 20, 200, 1.0)
    assert lucky not in pareto_front([a, b, lucky, d], "macs")


def test_figures_are_png(tmp_path: Path) -> None:
    hist = {"loss": [1.0, 0.5], "val_loss": [1.1, 0.6], "accuracy": [0.5, 0.8], "val_accuracy": [0.4, 0.7],
            "soft_loss": [0.3, 0.2]}
    data = training_curves_png(hist, tmp_path / "curves.png")
    assert data.startswith(PNG) and (tmp_path / "curves.png").read_bytes() == data
    cm = np.array([[5, 1], [0, 4]])
    assert confusion_matrix_png(cm, ["a", "b"]).startswith(PNG)
    points = [pt(0.25, 16, 0.9, 100, 10), pt(1.0, 32, 0.99, 900, 80)]
    assert pareto_png(points, tmp_path / "pareto.png").startswith(PNG)
    for path in (
        training_curves(hist, tmp_path / "a" / "c.png"),
        confusion_matrix(cm, ["a", "b"], tmp_path / "cm.png"),
        pareto(points, tmp_path / "p.png"),
    ):
        assert path.read_bytes().startswith(PNG)


@pytest.mark.slow
def test_run_sweep_trains_each_point(tiny_folder: Path) -> None:
    params = PipelineParams.model_validate(
        {
            "prepare": {"min_per_class": 5},
            "train": {"epochs": 1, "batch_size": 16},
            "sweep": {"alphas": [0.25, 0.5], "resolutions": [8, 12]},
        }
    )
    seen = []
    points = run_sweep(tiny_folder, params, on_result=lambda s, r: seen.append((s.name, r.model.input_shape)))
    assert seen[0] == ("alpha=0.25_rho=8", (None, 8, 8, 1)) and len(points) == 4
    by = {(p.alpha, p.rho): p for p in points}
    assert by[(0.25, 12)].params < by[(0.5, 12)].params
    assert by[(0.5, 8)].macs < by[(0.5, 12)].macs


def test_size_vs_accuracy_labels_never_overlap_and_axes_follow_the_points(tmp_path: Path) -> None:
    ys = [0.5, 0.5, 0.51, 0.52, 0.9, 0.99, 0.99]
    spread = _spread(sorted(ys), 0.07, 0.0, 1.0)
    assert all(b - a >= 0.07 - 1e-9 for a, b in zip(spread, spread[1:], strict=False))
    assert min(spread) >= 0.0 and max(spread) <= 1.0
    pts = [SizePoint(f"v{i}/tflite-int8", 10_000 + 1000 * i, 0.9 + 0.001 * i, i % 2 == 0, i == 3, False, i < 5, i in (0, 3))
           for i in range(12)] + [SizePoint("current stable", 30_000, 0.905, True, False, True)]
    png = size_vs_accuracy_png(pts, tmp_path / "p.png", "cortex-m", budget=10**7)
    assert png[:8] == PNG and (tmp_path / "p.png").read_bytes() == png
    assert size_vs_accuracy_png([], None, "nothing")[:8] == PNG

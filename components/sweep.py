"""The alpha x rho architecture sweep: the grid, the run of each point and the Pareto front.

alpha (width multiplier) scales every layer's channels; rho (input resolution) is the prepared
image size. The flow runs each point as a child run; `run_sweep` is the plain loop with a
callback for whoever records the points.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from edgeops.params import PipelineParams, PrepareParams, TrainParams

if TYPE_CHECKING:
    from components.training import TrainResult


@dataclass(frozen=True)
class SweepSetting:
    """One point of the grid with the stage params that train it."""

    alpha: float
    rho: int
    prepare: PrepareParams
    train: TrainParams

    @property
    def name(self) -> str:
        return f"alpha={self.alpha:g}_rho={self.rho}"


@dataclass(frozen=True)
class SweepPoint:
    """What one point scored and cost."""

    alpha: float
    rho: int
    test_accuracy: float
    val_accuracy: float
    params: int
    macs: int
    train_seconds: float


def sweep_grid(params: PipelineParams) -> list[SweepSetting]:
    """Every (alpha, rho) of `params.sweep`, each with its own prepare/train params."""
    sweep = params.sweep
    train_update: dict[str, object] = {}
    if sweep.epochs is not None:
        train_update["epochs"] = sweep.epochs
    if not sweep.distill:
        train_update["distill"] = params.train.distill.model_copy(update={"enabled": False})
    return [
        SweepSetting(
            alpha=float(alpha),
            rho=int(rho),
            prepare=params.prepare.model_copy(update={"image_size": int(rho)}),
            train=params.train.model_copy(update={**train_update, "alpha": float(alpha)}),
        )
        for rho in sweep.resolutions
        for alpha in sweep.alphas
    ]


def point_from(setting: SweepSetting, result: TrainResult) -> SweepPoint:
    return SweepPoint(
        alpha=setting.alpha,
        rho=setting.rho,
        test_accuracy=result.test_accuracy,
        val_accuracy=result.val_accuracy,
        params=result.params_count,
        macs=result.macs,
        train_seconds=result.train_seconds,
    )


def pareto_front(
    points: Sequence[SweepPoint], cost: Literal["macs", "params"] = "macs"
) -> list[SweepPoint]:
    """Points no other point beats on both validation accuracy (higher) and cost (lower).

    The front is chosen on validation; test accuracy is reported for the front's points only
    (flows/sweep.py), never used to choose them.
    """

    def dominated(p: SweepPoint) -> bool:
        pc = getattr(p, cost)
        return any(
            getattr(q, cost) <= pc
            and q.val_accuracy >= p.val_accuracy
            and (getattr(q, cost) < pc or q.val_accuracy > p.val_accuracy)
            for q in points
        )

    return [p for p in points if not dominated(p)]


def run_sweep(
    data_dir: Path | str,
    params: PipelineParams,
    on_result: Callable[[SweepSetting, TrainResult], None] | None = None,
) -> list[SweepPoint]:
    """Prepare once per resolution, train every alpha on it; `on_result` sees each model."""
    from components.prepare import prepare
    from components.training import train

    prepared_by_rho = {}
    points = []
    for setting in sweep_grid(params):
        if setting.rho not in prepared_by_rho:
            prepared_by_rho[setting.rho] = prepare(data_dir, setting.prepare)
        result = train(prepared_by_rho[setting.rho], setting.train)
        if on_result is not None:
            on_result(setting, result)
        points.append(point_from(setting, result))
    return points

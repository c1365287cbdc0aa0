"""The alpha x rho architecture sweep as a flow: one MLflow parent, a child per point, and the
Pareto plot of accuracy against MACs and parameters on the parent. The grid comes from the
`sweep` key of params.yaml; `dvc exp run -S train.alpha=0.5 -S prepare.image_size=16` runs a
single point through the DVC pipeline instead.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

from prefect import flow

from flows.tracking import child_run, configure_mlflow, log_artifact, log_batch, start_run


@flow(name="architecture-sweep", log_prints=True)
def architecture_sweep(data_dir: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    from components import plots
    from components.sweep import pareto_front, run_sweep
    from edgeops.settings import Settings
    from flows.release import _params
    from flows.release_logging import log_data_version
    from registry.data_versions import dvc_hash

    settings = Settings.from_env()
    params = _params(settings, None, overrides)
    client, experiment_id = configure_mlflow(settings)
    version = dvc_hash(data_dir)
    parent = start_run(client, experiment_id, f"sweep-{Path(data_dir).name}-{version.short}",
                       {"edgeops.kind": "sweep", "edgeops.data_version": version.md5})
    log_data_version(parent, version, Path(data_dir).name, client)
    log_batch(client, parent, params={"alphas": params.sweep.alphas, "resolutions": params.sweep.resolutions})
    status = "FAILED"
    runs: dict[tuple[float, int], str] = {}

    def on_result(setting: Any, result: Any) -> None:
        with child_run(client, experiment_id, parent, setting.name,
                       {"edgeops.alpha": str(setting.alpha), "edgeops.rho": str(setting.rho)}) as rid:
            log_batch(client, rid, params={"alpha": setting.alpha, "rho": setting.rho},
                      metrics={"val_accuracy": result.val_accuracy, "params": result.params_count,
                               "macs": result.macs, "train_seconds": result.train_seconds},
                      history=result.history)
        runs[(setting.alpha, setting.rho)] = rid
        print(f"{setting.name}: validation accuracy {result.val_accuracy:.4f}, {result.macs} MACs")

    try:
        points = run_sweep(data_dir, params, on_result=on_result)
        front = {(p.alpha, p.rho) for p in pareto_front(points, "macs")}
        for p in points:  # the front is chosen on validation; test scores its points, once
            if (p.alpha, p.rho) in front and (p.alpha, p.rho) in runs:
                log_batch(client, runs[(p.alpha, p.rho)], metrics={"test_accuracy": p.test_accuracy},
                          tags={"edgeops.pareto": "true"})
        with tempfile.TemporaryDirectory() as tmp:
            log_artifact(client, parent, plots.pareto(points, Path(tmp) / "pareto.png"), "plots")
        status = "FINISHED"
        return {"run_id": parent, "points": [_point(p, (p.alpha, p.rho) in front) for p in points]}
    finally:
        client.set_terminated(parent, status)


def _point(p: Any, on_front: bool) -> dict[str, Any]:
    """A point for the caller: test accuracy only where the validation front put it."""
    d = dataclasses.asdict(p) | {"pareto": on_front}
    if not on_front:
        d["test_accuracy"] = None
    return d

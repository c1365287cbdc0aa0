"""`edgeops pipeline run` and `edgeops sweep`: the release pipeline and the architecture sweep."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from edgeops.cli.common import console, preload_tensorflow, quiet_expected_tracebacks
from edgeops.progress import ProgressDisplay

pipeline_app = typer.Typer(help="The release pipeline (Prefect flows tracked in MLflow).", no_args_is_help=True)


def register_sweep_command(app: typer.Typer) -> None:
    app.command("sweep")(sweep)


def check_inputs(data: Path, params: Path | None) -> None:
    """The data folder and an explicit params file, checked before any engine starts."""
    from edgeops.errors import ConfigError, DataError
    from edgeops.params import load_params

    if not data.exists():
        raise DataError("data folder does not exist", where=str(data))
    if not data.is_dir():
        raise DataError("--data must be a folder of class subfolders, not a file", where=str(data))
    if not any(p.is_dir() and not p.name.startswith(".") for p in data.iterdir()):
        raise DataError("data folder has no class subfolders", where=str(data))
    if params is not None:
        if not params.is_file():
            raise ConfigError("params file not found", where=str(params))
        load_params(params, required=True)


@pipeline_app.command("run")
def pipeline_run(
    data: Annotated[Path, typer.Option("--data", help="Image folder: one subfolder per class.")],
    params: Annotated[Path | None, typer.Option(help="params.yaml (default: ./params.yaml).")] = None,
    name: Annotated[str | None, typer.Option(help="Model name (default: the folder's name).")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Prepare, validate, train, convert, verify, bless, register and publish, once."""
    check_inputs(data, params)  # before Prefect and MLflow start: nothing is recorded for a typo
    from flows.release import release_pipeline
    from flows.report import print_release

    quiet_expected_tracebacks()
    preload_tensorflow()
    with ProgressDisplay(console):
        result = release_pipeline(str(data), params_path=str(params) if params else None, model_name=name)
    if as_json:
        typer.echo(json.dumps(result, indent=2, default=str))
    else:
        print_release(console, result)


def sweep(
    data: Annotated[Path, typer.Option("--data", help="Image folder: one subfolder per class.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Sweep width multiplier x input resolution (params.yaml `sweep`): a child run per point and a
    Pareto plot of accuracy against MACs and parameters in MLflow."""
    from rich.table import Table

    from flows.sweep import architecture_sweep

    quiet_expected_tracebacks()
    preload_tensorflow()
    with ProgressDisplay(console):
        result = architecture_sweep(str(data))
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    table = Table("alpha", "rho", "val accuracy", "test accuracy (front only)", "params", "MACs", "Pareto",
                  title=f"sweep (run {result['run_id']}; front chosen on validation)")
    for p in result["points"]:
        test = "-" if p["test_accuracy"] is None else f"{100 * p['test_accuracy']:.2f}%"
        table.add_row(f"{p['alpha']:g}", str(p["rho"]), f"{100 * p['val_accuracy']:.2f}%", test, str(p["params"]),
                      str(p["macs"]), "*" if p["pareto"] else "")
    console.print(table)

"""The `edgeops` root command: global options, the entry point and the groups it mounts. Every failure the project expects ends as one readable line and
the exit code of its error class (see edgeops/errors.py); no tracebacks for user errors.

Heavy imports (tensorflow, mlflow, prefect) happen inside commands so `--help` stays fast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import click
import typer
from typer._click import exceptions as typer_click  # typer 0.29 raises its vendored click's errors

from edgeops.cli.common import (
    console,
    err_console,
    preload_tensorflow,
    quiet_expected_tracebacks,
    settings,
)
from edgeops.errors import EdgeOpsError
from edgeops.progress import ProgressDisplay

app = typer.Typer(
    name="edgeops",
    help="Release pipeline for on-device models: train, compress, convert, verify, register, "
    "sign, roll out to device cohorts and watch them for drift.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
stage_app = typer.Typer(
    help="Single pipeline stages over local paths, as `dvc.yaml` calls them.", no_args_is_help=True
)
app.add_typer(stage_app, name="stage")



@app.command("settings")
def settings_cmd(as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False) -> None:
    """Show where state lives (EDGEOPS_HOME, MLflow, the object store, Prefect)."""
    values = settings().as_json_dict()
    if as_json:
        typer.echo(json.dumps(values, indent=2))
        return
    from rich.table import Table

    table = Table("setting", "value", title="edgeops settings")
    for key, value in values.items():
        table.add_row(key, str(value) if value is not None else "[dim]not set (embedded default)[/]")
    console.print(table)


@app.command("demo")
def demo(
    data: Annotated[Path, typer.Option(help="Where to write the example digits.")] = Path("data/digits"),
    quick: Annotated[bool, typer.Option(help="Fewer epochs and devices (for tests).")] = False,
) -> None:
    """The whole loop twice on the bundled digits: once clean, once with injected drift."""
    from flows.demo import run_demo

    quiet_expected_tracebacks()
    preload_tensorflow()
    with ProgressDisplay(console):
        run_demo(data, console=console, quick=quick)


def _register_subcommands() -> None:
    """Sub-apps of the other packages; each keeps its heavy imports inside its commands."""
    from edgeops.cli.dashboard import register_dashboard_command
    from edgeops.cli.data import data_app
    from edgeops.cli.devices import devices_app
    from edgeops.cli.fleet import fleet_app
    from edgeops.cli.keys import keys_app
    from edgeops.cli.monitor import monitor_app
    from edgeops.cli.ops import register_ops_commands
    from edgeops.cli.pipeline import pipeline_app, register_sweep_command
    from edgeops.cli.release import cohorts_app, release_app
    from edgeops.cli.stages import register_stage_commands

    app.add_typer(data_app, name="data")
    app.add_typer(pipeline_app, name="pipeline")
    app.add_typer(release_app, name="release")
    app.add_typer(cohorts_app, name="cohorts")
    app.add_typer(fleet_app, name="fleet")
    app.add_typer(devices_app, name="devices")
    app.add_typer(keys_app, name="keys")
    app.add_typer(monitor_app, name="monitor")
    register_stage_commands(stage_app)
    register_ops_commands(app)
    register_sweep_command(app)
    register_dashboard_command(app)


@app.callback()
def _global_options(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's and libraries' logs.")] = False,
) -> None:
    """Runs before every command, before any of them imports prefect."""
    import os

    if verbose:
        os.environ["EDGEOPS_VERBOSE"] = "1"
        os.environ["PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"] = "INFO"
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"


def _embedded_prefect_home() -> None:
    """Prefect's own state (the ephemeral API's database) under EDGEOPS_HOME like everything else,
    unless the user points Prefect elsewhere. Flow runs log at INFO (to the API, so a server's UI
    shows them); only this console shows warnings and up, unless `--verbose`.
    Set before any command imports prefect."""
    import os

    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no internet; no notice
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # MLflow 3 sends usage events by default
    if "PREFECT_HOME" not in os.environ and "PREFECT_API_URL" not in os.environ:
        home = settings().ensure_home() / "prefect"
        home.mkdir(exist_ok=True)
        os.environ["PREFECT_HOME"] = str(home)


def main() -> None:
    """Console-script entry: one line and an exit code for every expected failure."""
    _embedded_prefect_home()
    _register_subcommands()
    try:
        rv = app(standalone_mode=False)
    except EdgeOpsError as exc:
        _fail(str(exc), exc.exit_code)
    except (click.exceptions.Abort, typer.Abort, KeyboardInterrupt):
        _fail("aborted", 130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (click.exceptions.ClickException, typer_click.ClickException) as exc:
        _usage_error(exc)
    sys.exit(rv if isinstance(rv, int) else 0)


USAGE_EXIT = 2  # a command line that cannot be parsed (click's convention)


def _fail(message: str, code: int) -> None:
    first = message.strip().splitlines()[0] if message.strip() else "failed"
    err_console.print(f"[bold red]error:[/] {first}", highlight=False, soft_wrap=True)
    sys.exit(code)


def _usage_error(exc: Exception) -> None:
    """typer raises its own copy of click's errors: a bare group prints its help, anything else
    one line that names the command and how to get its help."""
    ctx = getattr(exc, "ctx", None)
    if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
        typer.echo(ctx.get_help())
        sys.exit(USAGE_EXIT)
    hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
    _fail(f"{message}{hint}", getattr(exc, "exit_code", USAGE_EXIT) or USAGE_EXIT)

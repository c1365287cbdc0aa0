"""The `edgeops` command line. Every failure the project expects ends as one readable line and
the exit code of its error class (see edgeops/errors.py); no tracebacks for user errors.

Heavy imports (tensorflow, mlflow, prefect) happen inside commands so `--help` stays fast.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import click
import typer
from typer._click import exceptions as typer_click  # typer 0.29 raises its vendored click's errors

from edgeops.console import make_console
from edgeops.errors import EdgeOpsError

app = typer.Typer(
    name="edgeops",
    help="Release pipeline for on-device models: train, compress, convert, verify, register, "
    "sign, roll out to device cohorts and watch them for drift.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Data sets: the bundled example, validation, versions.", no_args_is_help=True)
pipeline_app = typer.Typer(help="The release pipeline (Prefect flows tracked in MLflow).", no_args_is_help=True)
stage_app = typer.Typer(
    help="Single pipeline stages over local paths, as `dvc.yaml` calls them.", no_args_is_help=True
)
app.add_typer(data_app, name="data")
app.add_typer(pipeline_app, name="pipeline")
app.add_typer(stage_app, name="stage")

console = make_console()
err_console = make_console(stderr=True)


class _NoTracebackForExpectedErrors(logging.Filter):
    """Prefect logs a flow's exception with its traceback; for the project's own errors the
    user gets the one line the CLI prints instead (unexpected errors keep their traceback)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], EdgeOpsError):
            record.exc_info = None
            record.exc_text = None
            record.msg = str(record.getMessage()).split("\n", 1)[0]
            record.args = ()
        return True


def quiet_expected_tracebacks() -> None:
    """Attach the filter to every handler configured so far (call after importing flows)."""
    quiet = _NoTracebackForExpectedErrors()
    loggers = [logging.getLogger()] + [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    for logger in loggers:
        for handler in logger.handlers:
            if not any(isinstance(f, _NoTracebackForExpectedErrors) for f in handler.filters):
                handler.addFilter(quiet)


def _settings():
    from edgeops.settings import Settings

    return Settings.from_env()


@app.command("settings")
def settings_cmd(as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False) -> None:
    """Show where state lives (EDGEOPS_HOME, MLflow, the object store, Prefect)."""
    values = _settings().as_json_dict()
    if as_json:
        typer.echo(json.dumps(values, indent=2))
        return
    from rich.table import Table

    table = Table("setting", "value", title="edgeops settings")
    for key, value in values.items():
        table.add_row(key, str(value) if value is not None else "[dim]not set (embedded default)[/]")
    console.print(table)


@data_app.command("example")
def data_example(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write: one subfolder per class, PNG files.")],
) -> None:
    """Write scikit-learn's bundled digits (1,797 real 8x8 images) as an image folder."""
    from components.data import write_example_digits

    n = write_example_digits(out_dir)
    console.print(f"wrote {n} images to {out_dir}")


@data_app.command("version")
def data_version(data_dir: Annotated[Path, typer.Argument(help="Image folder.")]) -> None:
    """Print the DVC hash of a folder (what MLflow runs record as the data version)."""
    from registry.data_versions import dvc_hash

    v = dvc_hash(data_dir)
    typer.echo(json.dumps({"path": v.path, "md5": v.md5, "nfiles": v.nfiles, "size": v.size}))


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
    result = release_pipeline(str(data), params_path=str(params) if params else None, model_name=name)
    if as_json:
        typer.echo(json.dumps(result, indent=2, default=str))
    else:
        print_release(console, result)


@app.command("sweep")
def sweep(
    data: Annotated[Path, typer.Option("--data", help="Image folder: one subfolder per class.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Sweep width multiplier x input resolution (params.yaml `sweep`): a child run per point and a
    Pareto plot of accuracy against MACs and parameters in MLflow."""
    from rich.table import Table

    from flows.sweep import architecture_sweep

    quiet_expected_tracebacks()
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


@app.command("demo")
def demo(
    data: Annotated[Path, typer.Option(help="Where to write the example digits.")] = Path("data/digits"),
    quick: Annotated[bool, typer.Option(help="Fewer epochs and devices (for tests).")] = False,
) -> None:
    """The whole loop twice on the bundled digits: once clean, once with injected drift."""
    from flows.demo import run_demo

    quiet_expected_tracebacks()
    run_demo(data, console=console, quick=quick)


@app.command("dashboard")
def dashboard(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8765,
) -> None:
    """A read-only fleet view in the browser: every cohort, its rollout and monitor windows."""
    import time

    from edgeops.dashboard import load_view, serve

    settings = _settings()
    load_view(settings)  # fail now, with one line, if the channel or devices.yaml cannot be read
    try:
        server = serve(lambda: load_view(settings), port)
    except OSError as exc:
        raise EdgeOpsError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}", where="edgeops dashboard") from exc
    console.print(f"fleet view on http://127.0.0.1:{port}/ (read-only); Ctrl-C stops it", highlight=False)
    try:
        while True:
            time.sleep(3600)
    finally:
        server.shutdown()


def _register_subcommands() -> None:
    """Sub-apps of the other packages; each keeps its heavy imports inside its commands."""
    from edgeops.cli_devices import devices_app
    from edgeops.cli_fleet import fleet_app
    from edgeops.cli_keys import keys_app
    from edgeops.cli_monitor import monitor_app
    from edgeops.cli_ops import register_ops_commands
    from edgeops.cli_release import cohorts_app, release_app
    from edgeops.cli_stages import register_stage_commands

    app.add_typer(release_app, name="release")
    app.add_typer(cohorts_app, name="cohorts")
    app.add_typer(fleet_app, name="fleet")
    app.add_typer(devices_app, name="devices")
    app.add_typer(keys_app, name="keys")
    app.add_typer(monitor_app, name="monitor")
    register_stage_commands(stage_app)
    register_ops_commands(app)


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
    if "PREFECT_HOME" not in os.environ and "PREFECT_API_URL" not in os.environ:
        home = _settings().ensure_home() / "prefect"
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

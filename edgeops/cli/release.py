"""`edgeops release ...` and `edgeops cohorts ...`: the release manager's commands.

Each command builds its clients from `Settings.from_env()`, runs one rollout transition, and
prints a rich table (or `--json`). Expected failures print one line and exit with the error's
code: unknown cohort / not allowed now (RolloutError, 11), stale manifest (ConflictError, 9),
store unreachable (StoreError, 8), bad config (ConfigError, 2).
"""

from __future__ import annotations

import getpass
import json
import os
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from edgeops.console import make_console
from edgeops.errors import ConfigError, EdgeOpsError

if TYPE_CHECKING:
    from registry.rollout_state import RolloutState
    from registry.rollouts import RolloutManager

release_app = typer.Typer(
    help="Staged rollouts of registry versions to device cohorts.", no_args_is_help=True
)
cohorts_app = typer.Typer(help="Device cohorts and what they run.", no_args_is_help=True)


@cohorts_app.callback()
def _cohorts() -> None:
    """Device cohorts and what they run (a group even with one command)."""


console = make_console()
err_console = make_console(stderr=True)

Cohort = Annotated[str, typer.Argument(help="Cohort name from devices.yaml, e.g. pi-fleet-eu.")]
Json = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
Reason = Annotated[str, typer.Option("--reason", "-r", help="Why (recorded in the history).")]
Actor = Annotated[
    str | None, typer.Option("--actor", help="Who (default: $EDGEOPS_ACTOR or the login name).")
]


def _actor(actor: str | None) -> str:
    return actor or os.environ.get("EDGEOPS_ACTOR") or getpass.getuser()


def _manager(registry: bool = True) -> RolloutManager:
    """The channel as this machine's keystore trusts it; keys are never created here, and a
    command that must sign without the key fails with one line. Read-only commands skip the
    MLflow client (opening SQLite runs its migrations)."""
    from edgeops.channel import channel_repository
    from edgeops.settings import Settings
    from registry.rollouts import RolloutManager

    settings = Settings.from_env()
    return RolloutManager(
        channel_repository(settings),
        settings.devices(),
        settings.mlflow_client() if registry else None,
        keys_dir=settings.keys_dir,
    )


def _run(fn: Callable[[], Any]) -> Any:
    """One readable line and the error's exit code instead of a traceback."""
    try:
        return fn()
    except EdgeOpsError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None


def parse_duration(text: str) -> float:
    """'90', '90s', '10m', '2h', '1d' -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not m:
        raise ConfigError(f"bad duration {text!r}; use e.g. 30s, 10m, 2h")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def parse_steps(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise ConfigError(f"bad steps {text!r}; use e.g. 1,5,25,50,100") from None


def _show_state(state: RolloutState, as_json: bool, title: str) -> None:
    summary = state.summary()
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    table = Table("field", "value", title=title)
    for k, v in summary.items():
        table.add_row(k, "-" if v is None else str(v))
    console.print(table)


@release_app.command("plan")
def plan_cmd(
    cohort: Cohort,
    model: Annotated[
        str, typer.Option("--model", "-m", help="Registered model, e.g. digits-tflite-f32.")
    ],
    version: Annotated[
        str, typer.Option("--version", "-v", help="Registry version of the candidate.")
    ],
    steps: Annotated[
        str, typer.Option(help="Percentages, comma-separated, ending at 100.")
    ] = "1,5,25,50,100",
    dwell: Annotated[str, typer.Option(help="Minimum time at each step (30s, 10m, 2h).")] = "10m",
    min_count: Annotated[int, typer.Option(help="Minimum canary telemetry records per step.")] = 50,
    reason: Reason = "",
    actor: Actor = None,
    as_json: Json = False,
) -> None:
    """Plan a rollout: only a blessed, releasable version whose target the cohort can run."""
    state = _run(
        lambda: _manager().plan(
            cohort,
            model,
            version,
            actor=_actor(actor),
            reason=reason,
            steps=parse_steps(steps),
            min_dwell_s=parse_duration(dwell),
            min_count=min_count,
        )
    )
    _show_state(state, as_json, f"planned on {cohort}")
    _show_evidence(model, version, as_json)


def _show_evidence(model: str, version: str, as_json: bool) -> None:
    """The candidate's test accuracy with its interval and each profile's paired verdict, as the
    release recorded them in the registry (flows/publish.py `evidence_tags`)."""
    if as_json:
        return
    from edgeops.settings import Settings

    tags = Settings.from_env().mlflow_client().get_model_version(model, version).tags
    console.print(f"evidence for {model}/{version}: test accuracy {tags.get('accuracy_ci', 'not recorded')}",
                  highlight=False, soft_wrap=True)
    if tags.get("evidence"):
        console.print(f"verdicts: {tags['evidence']}", highlight=False, soft_wrap=True)


def _transition(name: str, doc: str) -> None:
    def command(
        cohort: Cohort, reason: Reason = "", actor: Actor = None, as_json: Json = False
    ) -> None:
        state = _run(lambda: getattr(_manager(), name)(cohort, actor=_actor(actor), reason=reason))
        _show_state(state, as_json, f"{name} on {cohort}: {state.status}")

    command.__doc__ = doc
    release_app.command(name)(command)


_transition("start", "Start a planned rollout at its first step.")
_transition("advance", "Move to the next step (completes after the last).")
_transition("pause", "Hold the rollout at its current percentage.")
_transition("resume", "Resume a paused rollout (the step's dwell restarts).")
_transition("rollback", "Repoint the cohort to the previous stable at once (re-runnable: repairs).")


@release_app.command("status")
def status_cmd(
    cohort: Annotated[str | None, typer.Argument(help="One cohort (default: all).")] = None,
    as_json: Json = False,
) -> None:
    """Where each rollout stands."""

    def states() -> list[dict[str, Any]]:
        mgr = _manager(registry=False)
        names = [cohort] if cohort else sorted(mgr.catalog.cohorts)
        return [mgr.state(n).summary() for n in names]

    rows = _run(states)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    cols = [
        "cohort",
        "status",
        "model",
        "version",
        "step",
        "percentage",
        "stable_version",
        "last_change",
    ]
    table = Table(*cols, title="rollouts")
    for r in rows:
        table.add_row(*("-" if r[c] is None else str(r[c]) for c in cols))
    console.print(table)


@release_app.command("history")
def history_cmd(cohort: Cohort, as_json: Json = False) -> None:
    """Every transition of every rollout on a cohort: who, when, why."""
    rows = _run(lambda: _manager(registry=False).history(cohort))
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    cols = [
        "rollout_id",
        "at",
        "actor",
        "action",
        "from_status",
        "to_status",
        "percentage",
        "version",
        "manifest_revision",
        "reason",
    ]
    table = Table(*cols, title=f"history of {cohort}")
    for r in rows:
        table.add_row(*("-" if r[c] is None else str(r[c]) for c in cols))
    console.print(table)


@cohorts_app.command("list")
def cohorts_list(as_json: Json = False) -> None:
    """Cohorts, their profile, and what their signed channel points at."""
    rows = _run(lambda: _manager(registry=False).cohorts())
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(
        "cohort",
        "profile",
        "targets",
        "encrypt",
        "stable",
        "candidate",
        "%",
        "rev",
        "rollout",
        title="cohorts",
    )
    for r in rows:

        def ref(d: dict[str, str] | None) -> str:
            return f"v{d['model_version']} {d['target']} {d['bundle_id'][:8]}" if d else "-"

        table.add_row(
            r["cohort"],
            r["profile"],
            ",".join(r["targets"]),
            "yes" if r["encrypt"] else "no",
            ref(r["stable"]),
            ref(r["candidate"]),
            f"{r['percentage']:g}",
            str(r["channel_revision"] or "-"),
            r["rollout"],
        )
    console.print(table)

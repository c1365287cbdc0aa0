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
    from edgeops.settings import Settings
    from registry.channel_access import channel_repository
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
        str | None,
        typer.Option("--model", "-m", help="Registered model, e.g. digits-tflite-f32 (default: that "
                     "of the newest candidate, see `release candidates`)."),
    ] = None,
    version: Annotated[
        str | None,
        typer.Option("--version", "-v", help="Registry version of the candidate (default: the newest "
                     "blessed version the cohort can run, of --model when given)."),
    ] = None,
    steps: Annotated[
        str, typer.Option(help="Percentages, comma-separated, ending at 100.")
    ] = "1,5,25,50,100",
    dwell: Annotated[str, typer.Option(help="Minimum time at each step (30s, 10m, 2h).")] = "10m",
    min_count: Annotated[int, typer.Option(help="Minimum canary telemetry records per step.")] = 50,
    reason: Reason = "",
    actor: Actor = None,
    as_json: Json = False,
) -> None:
    """Plan a rollout: only a blessed, releasable version whose target the cohort can run.
    Without --model/--version, the newest such version (the first row of `release candidates`)."""
    def plan() -> tuple[RolloutState, str, str, str | None]:
        mgr = _manager()
        picked = None
        name, ver = model, version
        if ver is None:
            row = newest_candidate(mgr, cohort, name)
            name, ver = row["registered_model"], row["version"]
            picked = (f"no {'--version' if model else '--model/--version'} given: planning {name} "
                      f"version {ver} ({row['target']}, test accuracy {row['accuracy'] or 'not recorded'}), "
                      f"the newest blessed version {cohort} can run (see `edgeops release candidates "
                      f"{cohort}`)")
        elif name is None:
            raise ConfigError("--version needs --model (or give neither: the newest candidate)")
        state = mgr.plan(cohort, name, ver, actor=_actor(actor), reason=reason, steps=parse_steps(steps),
                         min_dwell_s=parse_duration(dwell), min_count=min_count)
        return state, name, ver, picked

    state, name, ver, picked = _run(plan)
    if picked and not as_json:  # --json: the state names the model and version
        console.print(picked, highlight=False, soft_wrap=True)
    _show_state(state, as_json, f"planned on {cohort}")
    _show_evidence(name, ver, as_json)


def newest_candidate(mgr: RolloutManager, cohort: str, model: str | None = None) -> dict[str, Any]:
    """The newest version `release candidates` lists for the cohort (of `model` when given); one
    that already runs there as stable or candidate is refused with the reason, not re-planned."""
    from edgeops.errors import RolloutError

    rows = [r for r in mgr.candidates(cohort) if model is None or r["registered_model"] == model]
    if not rows:
        of = f" of {model}" if model else ""
        raise RolloutError(f"no blessed, releasable version{of} for {cohort}'s profile: nothing to plan")
    row = rows[0]
    if row["on_cohort"]:
        raise RolloutError(f"the newest candidate for {cohort}, {row['registered_model']} version "
                           f"{row['version']}, is already there ({row['on_cohort']}); name another "
                           "with --model/--version")
    return row


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


@release_app.command("advance")
def advance_cmd(
    cohort: Cohort,
    force: Annotated[
        bool, typer.Option("--force", help="Advance although dwell, counts or gates are unmet.")
    ] = False,
    reason: Reason = "",
    actor: Actor = None,
    as_json: Json = False,
) -> None:
    """Move to the next step (completes after the last) once the step's dwell, telemetry count
    and gates are met, as the controller would; --force --reason TEXT overrides, recorded."""
    from flows.rollout import advance_checked

    state, _ = _run(
        lambda: advance_checked(  # with the registry: completion moves the stable alias
            _manager(), cohort, actor=_actor(actor), reason=reason, force=force
        )
    )
    _show_state(state, as_json, f"advance on {cohort}: {state.status}")


_transition("pause", "Hold the rollout at its current percentage.")
_transition("resume", "Resume a paused rollout (the step's dwell restarts).")
_transition("rollback", "Repoint the cohort to the previous stable at once (re-runnable: repairs).")


@release_app.command("status")
def status_cmd(
    cohort: Annotated[str | None, typer.Argument(help="One cohort (default: all).")] = None,
    as_json: Json = False,
) -> None:
    """Where each rollout stands, and for a running or paused one each gate's evidence:
    dwell remaining, canary and stable counts, the gate checks, labelled and estimated accuracy
    with intervals, prediction shift, and what the controller would do now."""
    from flows.rollout import gate_report

    def states() -> list[dict[str, Any]]:
        mgr = _manager(registry=False)
        names = [cohort] if cohort else sorted(mgr.catalog.cohorts)
        out = []
        for n in names:
            state = mgr.state(n)
            report = gate_report(mgr, state)
            out.append({**state.summary(), "gates": report.to_dict() if report else None})
        return out

    rows = _run(states)
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    cols = ["cohort", "status", "model", "version", "step", "percentage", "stable_model",
            "stable_version", "last_change"]
    table = Table(*cols, title="rollouts")
    for col in table.columns:
        col.overflow = "fold"
    for r in rows:
        table.add_row(*("-" if r[c] is None else str(r[c]) for c in cols))
    console.print(table)
    for r in rows:
        g = r["gates"]
        if not g:
            continue
        gates = Table("gate", "value", "limit / interval", "state",
                      title=f"{r['cohort']}: {r['model']} v{r['version']} at {r['percentage']:g}%")
        for row in g["gates"]:
            gates.add_row(row["gate"], row["value"], row["limit"], row["state"])
        console.print(gates)
        d = g["decision"]
        console.print(f"controller now: [bold]{d['action']}[/] - {'; '.join(d['reasons'])}",
                      highlight=False, soft_wrap=True)


@release_app.command("candidates")
def candidates_cmd(cohort: Cohort, as_json: Json = False) -> None:
    """Registry versions the cohort can take (blessed and releasable for its profile, of a
    target it runs), newest first: what `release plan` accepts."""
    rows = _run(lambda: _manager().candidates(cohort))
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    cols = ["registered_model", "version", "target", "blessed_for", "accuracy", "bundle", "on_cohort"]
    table = Table(*cols, title=f"candidates for {cohort}")
    for col in table.columns:
        col.overflow = "fold"
    for r in rows:
        table.add_row(*("-" if r[c] in (None, []) else
                        ", ".join(r[c]) if isinstance(r[c], list) else str(r[c]) for c in cols))
    console.print(table)
    if not rows:
        console.print(f"no blessed, releasable version for {cohort}'s profile yet", highlight=False)


@release_app.command("controller")
def controller_cmd(
    once: Annotated[bool, typer.Option("--once", help="Run one pass and exit.")] = False,
    interval: Annotated[str, typer.Option(help="Time between passes without --once.")] = "1m",
    actor: Actor = None,
    as_json: Json = False,
) -> None:
    """The rollout controller from a terminal: for every running rollout read the gates,
    decide and apply (advance, hold, roll back), as the scheduled flow does."""
    import time

    from flows.controller import control_pass

    pause = parse_duration(interval) if not once else 0.0
    while True:
        out = _run(lambda: control_pass(_manager(), actor=actor or "controller-cli"))
        if as_json:
            typer.echo(json.dumps(out, indent=2))
        else:
            table = Table("cohort", "decision", "applied", "reasons", title="controller pass")
            for col in table.columns:
                col.overflow = "fold"
            for c, d in sorted(out.items()):
                table.add_row(c, d["action"], d["applied"], "; ".join(d["reasons"]))
            console.print(table if out else "no running rollout: nothing to decide")
        if once:
            return
        time.sleep(pause)


@release_app.command("history")
def history_cmd(cohort: Cohort, as_json: Json = False) -> None:
    """Every transition on a cohort since its first publication: who, when, why, which model."""
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
        "model",
        "version",
        "manifest_revision",
        "reason",
    ]
    table = Table(*cols, title=f"history of {cohort}")
    for col in table.columns:
        col.overflow = "fold"
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
            if not d:
                return "-"
            return f"{d.get('registered_model', '?')} v{d['model_version']} ({d['bundle_id'][:8]})"

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

"""`edgeops monitor ...`: telemetry ingestion, drift jobs and the retrain policy's state.

`ingest` and `status` call the components directly (fast, no Prefect server); `drift` runs the
same Prefect flows the `monitor` deployment runs, so its reports land in MLflow.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from edgeops.console import make_console

monitor_app = typer.Typer(
    help="Telemetry ingestion, Evidently drift jobs, retrain policy.", no_args_is_help=True
)
console = make_console()
JSON = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _settings() -> Any:
    from edgeops.settings import Settings

    return Settings.from_env()


def _echo_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))


@monitor_app.command("ingest")
def ingest_cmd(
    cohort: Annotated[
        list[str] | None, typer.Option(help="Known cohort (repeat); default: devices.yaml.")
    ] = None,
    as_json: JSON = False,
) -> None:
    """Validate, quarantine, de-duplicate and compact new telemetry batches."""
    from edgeops.errors import ConfigError
    from monitoring.ingest import ingest, known_versions
    from registry.enrolment import enrolled_devices

    settings = _settings()
    store = settings.store()
    try:
        cohorts = cohort or sorted(settings.devices().cohorts)
    except ConfigError:
        cohorts = None  # no devices.yaml: accept any cohort
    rep = ingest(
        store,
        cohorts,
        known_versions(store),
        devices=enrolled_devices(settings.keys_dir),
        params=settings.params().ingest,
    )
    if as_json:
        _echo_json(rep.as_dict())
        return
    table = Table("count", "value", title=f"telemetry ingestion ({settings.store_url})")
    for key, value in rep.as_dict().items():
        if not isinstance(value, tuple):
            table.add_row(key, str(value))
    console.print(table)
    for key, reason in rep.quarantined:
        console.print(f"[yellow]quarantined[/] {key}: {reason}")
    if not rep.reconciles:
        raise typer.Exit(1)


@monitor_app.command("drift")
def drift_cmd(
    window_hours: Annotated[
        float | None, typer.Option(help="Window length; default params.yaml.")
    ] = None,
    retrain: Annotated[
        bool, typer.Option(help="Ask the retrain policy and launch a retrain if it says so.")
    ] = True,
    embeddings: Annotated[bool, typer.Option(help="Also run embedding drift on probs.")] = True,
    render: Annotated[
        bool | None,
        typer.Option("--render/--no-render",
                     help="Evidently HTML for every judged window / none (default: drifted or harmful ones)."),
    ] = None,
    as_json: JSON = False,
) -> None:
    """Run the Evidently drift jobs on every scope and unjudged window (logged to MLflow)."""
    from flows.monitoring import detect_drift, retrain_trigger, task_runner

    reports = detect_drift.with_options(task_runner=task_runner())(
        window_hours=window_hours, embeddings=embeddings, render=render)
    trigger = retrain_trigger(reports) if retrain else None
    rows = [
        {
            "scope": r.scope,
            "window": r.window_start.isoformat(),
            "n": r.n_current,
            "drifted": r.drifted,
            "kinds": list(r.drifted_kinds),
            "reasons": r.reasons(),
        }
        for r in reports
    ]
    if as_json:
        _echo_json(
            {
                "windows": rows,
                "retrain": trigger.launched if trigger else False,
                "how": trigger.how if trigger else None,
                "reason": trigger.reason if trigger else "",
            }
        )
        return
    table = Table("scope", "window", "n", "drift", "reasons", title="drift windows")
    for r in rows:
        table.add_row(
            r["scope"],
            r["window"][:16],
            str(r["n"]),
            ",".join(r["kinds"]) or "-",
            "; ".join(r["reasons"])[:90],
        )
    console.print(table)
    if trigger is not None:
        verdict = (
            f"[red]retrain launched ({trigger.how})[/]: {trigger.reason}"
            if trigger.launched
            else "no retrain"
        )
        console.print(verdict)


def _parse_now(now: str | None) -> Any:
    from datetime import UTC, datetime

    from edgeops.errors import ConfigError

    if now is None:
        return None
    try:
        t = datetime.fromisoformat(now)
    except ValueError as exc:
        raise ConfigError(f"--now must be an ISO time, got {now!r}", where="monitor run") from exc
    return t if t.tzinfo else t.replace(tzinfo=UTC)


@monitor_app.command("run")
def run_cmd(
    now: Annotated[
        str | None,
        typer.Option(help="The monitor's clock (ISO time; default now): a simulated fleet's time."),
    ] = None,
    retrain: Annotated[
        bool, typer.Option(help="Ask the retrain policy and request a retrain if it says so.")
    ] = True,
    embeddings: Annotated[bool, typer.Option(help="Also run embedding drift on probs.")] = False,
    as_json: JSON = False,
) -> None:
    """Ingest, judge every window that is due (estimated accuracy, harm, drift, segments), decide."""
    from edgeops.errors import EdgeOpsError
    from flows.monitoring import (
        detect_drift,
        ingest_telemetry,
        retrain_trigger,
        task_runner,
        window_summary,
    )

    try:
        clock = _parse_now(now)
        runner = task_runner()
        ingest_telemetry.with_options(task_runner=runner)()
        reports = detect_drift.with_options(task_runner=runner)(embeddings=embeddings, now=clock)
        trigger = (
            retrain_trigger(reports, clock=(lambda: clock) if clock else None) if retrain else None
        )
    except EdgeOpsError as exc:
        Console(stderr=True).print(f"[red]error:[/] {exc}")
        raise typer.Exit(exc.exit_code) from None
    rows = window_summary(reports, trigger)
    started = None  # the run the retrain started: its MLflow run id in-process, the event id on a server
    if trigger is not None and trigger.launched:
        res = trigger.result
        started = str(res.get("run_id")) if isinstance(res, dict) else (
            f"event:{res}" if trigger.how == "event" else str(res))
    if as_json:
        _echo_json({"windows": rows, "retrain": started})
        return
    table = Table("cohort", "model", "window", "rows", "late", "est. accuracy (95% CI)",
                  "labelled", "drifted features", "segments", "decision", "reason",
                  title="monitoring windows")
    for r in rows:
        ci = r["estimated_accuracy_ci"]
        est = "-" if r["estimated_accuracy"] is None else (
            f"{r['estimated_accuracy']:.1%} ({ci[0]:.1%}-{ci[1]:.1%})")
        lab = "-" if r["labelled_accuracy"] is None else f"{r['labelled_accuracy']:.1%}"
        table.add_row(r["cohort"], r["model_version"], r["window_start"][:16], str(r["rows"]),
                      str(r["late_rows"]), est, lab, ", ".join(r["drifted_features"][:4]) or "-",
                      "; ".join(r["segments_flagged"])[:40] or "-", r["decision"], r["reason"][:90])
    console.print(table)
    for alert in trigger.alerts if trigger else ():
        console.print(f"[red]{alert}[/]")
    console.print(
        f"[red]retrain requested ({trigger.how}, {started})[/]: {trigger.reason}"
        if started and trigger is not None
        else "no retrain"
    )


@monitor_app.command("report")
def report_cmd(
    cohort: Annotated[str, typer.Argument(help="Cohort.")],
    window: Annotated[str, typer.Argument(help="Window start, ISO time (UTC), e.g. 2026-11-20T10:00.")],
    model_version: Annotated[
        str | None, typer.Option(help="Model version (default: every version in the window).")
    ] = None,
    window_hours: Annotated[float | None, typer.Option(help="Window length; default params.yaml.")] = None,
    out: Annotated[str | None, typer.Option(help="Folder (default <home>/reports/...).")] = None,
) -> None:
    """Render the Evidently HTML reports of one window on demand (titled with cohort, model
    version, window and verdict); reads only that window's partitions."""
    from pathlib import Path

    import pandas as pd

    from edgeops.errors import EdgeOpsError, MonitoringError
    from flows.monitoring import render_reports
    from monitoring.cohort_windows import sample_windows
    from monitoring.jobs import run_window
    from monitoring.reference import load_reference, load_temperature
    from monitoring.stats import read_stats

    settings = _settings()
    store, params = settings.store(), settings.params().monitor
    hours = window_hours or params.window_hours
    try:
        start = pd.Timestamp(_parse_now(window)).floor(pd.Timedelta(hours=hours))
        m = read_stats(store, "moments", cohort, [start.strftime("%Y-%m-%d")]).to_pandas()
        if m.empty:
            raise MonitoringError("no telemetry statistics for this day", where=f"{cohort} {start}")
        scopes = sorted({(str(v), str(b)) for v, b in zip(m["model_version"], m["bundle_id"], strict=True)
                         if model_version is None or str(v) == model_version})
        samples = sample_windows(store, cohort, {s: {start} for s in scopes}, hours, 20_000)
        if not samples:
            raise MonitoringError("no inference rows in this window", where=f"{cohort} {start}")
        from flows.monitoring import _cohort_keys

        for (version, bundle, _), rows in sorted(samples.items(), key=lambda kv: kv[0][:2]):
            meta = {"cohort": cohort, "model_version": version, "bundle_id": bundle,
                    "window_start": start.to_pydatetime(), "embeddings": False,
                    "temperature": load_temperature(store, bundle)}
            reference = load_reference(store, bundle, _cohort_keys(settings))
            rep = run_window(reference, rows, params, **meta)
            folder = Path(out) if out else settings.home / "reports" / cohort / version / f"{start:%Y%m%dT%H%M}"
            rep = render_reports(reference, rows, params, rep, folder, meta)
            for res in rep.results.values():
                if res.report_html is not None:
                    console.print(f"{res.kind}: {res.report_html}")
    except EdgeOpsError as exc:
        Console(stderr=True).print(f"[red]error:[/] {exc}")
        raise typer.Exit(exc.exit_code) from None


@monitor_app.command("status")
def status_cmd(as_json: JSON = False) -> None:
    """Table partitions, quarantined batches and the retrain policy's state per scope."""
    from monitoring.ingest import QUARANTINE_PREFIX
    from monitoring.policy import load_states
    from monitoring.table import list_partitions

    store = _settings().store()
    states, _ = load_states(store)
    quarantined = [k for k in store.list(QUARANTINE_PREFIX) if not k.endswith(".reason.txt")]
    from monitoring.guard import load_guard

    value = {
        "partitions": list_partitions(store),
        "quarantined": quarantined,
        "policy": {k: v.to_dict() for k, v in states.items()},
        "guard": load_guard(store)[0].to_dict(),  # open incident, global retrains, alerts
    }
    if as_json:
        _echo_json(value)
        return
    parts = Table("date", "cohort", "model_version", title="telemetry table partitions")
    for p in value["partitions"]:
        parts.add_row(p.get("date", "?"), p.get("cohort", "?"), p.get("model_version", "?"))
    console.print(parts)
    pol = Table(
        "scope",
        "streak",
        "last window",
        "last retrain",
        "retrains (24h history)",
        title="retrain policy",
    )
    for scope, s in value["policy"].items():
        pol.add_row(
            scope,
            str(s["streak"]),
            str(s["last_window"]),
            str(s["last_trigger"]),
            str(len(s["triggers"])),
        )
    console.print(pol)
    guard = value["guard"]
    if guard["incident"]:
        inc = guard["incident"]
        console.print(f"[yellow]incident {inc['status']}[/] since {inc['opened']}: {inc['reason']}")
    for note in guard["notes"][-5:]:
        console.print(note)
    console.print(
        f"{len(quarantined)} quarantined batch(es)"
        + (f": {', '.join(quarantined[:5])}" if quarantined else "")
    )

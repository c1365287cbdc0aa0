"""`edgeops fleet ...`: run the fleet simulator from the command line, with a progress bar.

The simulator itself is device.fleet.simulate (real agents, the real store, the real LiteRT
interpreter); this module only resolves settings, devices.yaml, keys and the held-out images.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from edgeops.console import make_console
from edgeops.errors import ConfigError, DataError, EdgeOpsError

fleet_app = typer.Typer(
    help="The fleet simulator: many real device agents in simulated time.", no_args_is_help=True
)
console = make_console()


def _latest_prepared(home: Path) -> Path:
    """The newest `runs/<run>/prepared` under EDGEOPS_HOME: the split the last pipeline run held out."""
    found = sorted((home / "runs").glob("*/prepared/preprocessing.json"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise DataError(
            "no prepared data found; run `edgeops pipeline run` first or pass --prepared DIR",
            where=str(home / "runs"),
        )
    return found[-1].parent


def _model_keys(settings: Any, catalog: Any, cohorts: list[str]) -> dict[str, bytes]:
    """AES keys of the simulated cohorts that ask for encryption (a real device gets only its own)."""
    from device.protocol import encryption_key_id
    from registry.keys import load_or_create_cohort_key

    keys = [
        load_or_create_cohort_key(settings.keys_dir, c)
        for c in cohorts
        if catalog.cohorts[c].encrypt
    ]
    return {encryption_key_id(k): k for k in keys}


def _summary_table(s: Any) -> Table:
    t = Table(
        title=f"fleet: {s.devices} devices, {s.hours:g} h simulated in {s.wall_s:.1f} s, scenario {s.scenario}"
    )
    for col in (
        "cohort",
        "devices",
        "inferences",
        "accuracy",
        "before onset",
        "after onset",
        "models",
        "refusals",
    ):
        t.add_column(col, justify="right" if col not in ("cohort", "models") else "left")

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{v:.1%}"

    for c in s.cohorts:
        models = ", ".join(f"v{k}: {n}" for k, n in sorted(c.models.items()))
        t.add_row(
            c.cohort,
            str(c.devices),
            str(c.inferences),
            pct(c.accuracy),
            pct(c.accuracy_before_onset),
            pct(c.accuracy_after_onset),
            models,
            str(c.refusals),
        )
    return t


def _telemetry_table(s: Any) -> Table:
    t = Table(title="telemetry")
    for col in (
        "sampled",
        "evicted (bounded buffer)",
        "spooled",
        "in store",
        "pending",
        "lost",
        "store errors",
        "bytes/device/day",
        "device-hours/s",
    ):
        t.add_column(col, justify="right")
    t.add_row(
        str(s.records_sampled),
        str(s.records_evicted),
        str(s.records_spooled),
        str(s.records_in_store),
        str(s.records_pending),
        str(s.records_lost),
        str(s.store_errors),
        f"{s.bytes_per_device_per_day:,.0f}",
        f"{s.device_hours_per_s:.1f}",
    )
    return t


def _folder_pool(field: Path, prepared: Path) -> Any:
    """Frames of a user's image folder at the release's input size and classes."""
    from components.field_folder import load_field_folder
    from device.preprocessing import PreprocessingSpec

    spec_path = Path(prepared) / "preprocessing.json"
    if not spec_path.exists():
        raise ConfigError("no preprocessing.json in the prepared data dir", where=str(prepared))
    return load_field_folder(field, PreprocessingSpec.from_json(spec_path.read_text()))


@fleet_app.command("simulate")
def simulate_cmd(
    devices: Annotated[
        int, typer.Option("--devices", "-n", help="Devices in all, split evenly across cohorts.")
    ] = 0,
    cohorts: Annotated[
        str, typer.Option(help="Comma-separated cohorts from devices.yaml (default: all).")
    ] = "",
    scenario: Annotated[
        str,
        typer.Option(
            help="none, rotation, brightness, contrast, blur, noise, prior_shift, "
            "concept_shift, rotate_darken."
        ),
    ] = "none",
    onset_hours: Annotated[
        float, typer.Option(help="Simulated hour at which the drift starts.")
    ] = 0.0,
    hours: Annotated[
        float, typer.Option(help="Simulated hours (default: params.yaml fleet.hours).")
    ] = 0.0,
    prepared: Annotated[
        Path | None, typer.Option(help="Prepared data dir (default: the latest run's).")
    ] = None,
    state_dir: Annotated[
        Path | None, typer.Option(help="Keep device state here across runs.")
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Random seed (default: params.yaml fleet.seed).")
    ] = None,
    field: Annotated[
        Path | None,
        typer.Option(
            "--field",
            help="Draw frames from this image folder (class subfolders; labels from folder names) "
            "instead of the release's field split.",
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print {cohorts: {name: {devices, inferences, accuracy}}}.")
    ] = False,
) -> None:
    """Run agents on the held-out images against the configured store; print a summary."""
    try:
        _simulate(devices, cohorts, scenario, onset_hours, hours, prepared, state_dir, seed,
                  field=field, as_json=as_json)
    except EdgeOpsError as exc:
        Console(stderr=True).print(f"[red]error:[/] {exc}")
        raise typer.Exit(exc.exit_code) from None


def _simulate(
    devices: int,
    cohorts: str,
    scenario: str,
    onset_hours: float,
    hours: float,
    prepared: Path | None,
    state_dir: Path | None,
    seed: int | None,
    field: Path | None = None,
    as_json: bool = False,
) -> None:
    from device.fleet import field_pool, simulate
    from device.scenarios import make_scenario
    from edgeops.settings import Settings
    from registry.channel_access import channel_repository
    from registry.enrolment import simulator_enroller

    settings = Settings.from_env()
    catalog = settings.devices()
    names = [c.strip() for c in cohorts.split(",") if c.strip()] or list(catalog.cohorts)
    unknown = [c for c in names if c not in catalog.cohorts]
    if unknown:
        raise ConfigError(
            f"unknown cohort(s) {unknown}; devices.yaml has {sorted(catalog.cohorts)}"
        )
    from flows.fleet import not_simulated

    for c in [c for c in names if not_simulated(catalog.profile_for(c))]:
        typer.echo(f"cohort {c}: {not_simulated(catalog.profile_for(c))}", err=True)
        names.remove(c)
    if not names:
        raise ConfigError("none of these cohorts runs the device agent: nothing to simulate")
    params = settings.params().fleet
    update: dict[str, Any] = {}
    if devices:
        update["devices_per_cohort"] = max(1, math.ceil(devices / len(names)))
    if hours:
        update["hours"] = hours
    if seed is not None:
        update["seed"] = seed
    params = params.model_copy(update=update)
    store = settings.store()
    if field is not None:  # the user's own field conditions instead of the release's field split
        data = _folder_pool(field, prepared or _latest_prepared(settings.home))
    else:  # the release's field split: never a train, validation or test image
        data = field_pool(prepared or _latest_prepared(settings.home))
    trusted = channel_repository(settings).export_root()  # what devices are provisioned with
    drift = make_scenario(scenario, onset_hours, n_classes=len(data.classes))
    console = Console(stderr=as_json)  # with --json, stdout carries only the JSON
    with Progress(
        TextColumn("[bold]simulating"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("steps"),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task = bar.add_task("fleet", total=None)
        summary = simulate(
            store,
            names,
            data.x01,
            data.labels,
            drift,
            params,
            trusted,
            {c: catalog.profile_for(c).model_dump() for c in names},
            model_keys=_model_keys(settings, catalog, names),
            state_dir=state_dir,
            enrol=simulator_enroller(settings.keys_dir),
            thumbnails={c: catalog.cohorts[c].thumbnails for c in names},
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    if as_json:
        import json

        cohorts_out = {c.cohort: {"devices": c.devices, "inferences": c.inferences,
                                  "accuracy": c.accuracy} for c in summary.cohorts}
        typer.echo(json.dumps({"cohorts": cohorts_out}, indent=2))
    else:
        console.print(_summary_table(summary))
        console.print(_telemetry_table(summary))
    if summary.records_lost:
        raise EdgeOpsError(f"{summary.records_lost} telemetry records were lost")


@fleet_app.command("serve")
def serve_cmd(
    cohort: Annotated[str, typer.Argument(help="A server cohort from devices.yaml (runs_on: server).")],
    poll: Annotated[float, typer.Option(help="Seconds between re-reads of the registry's aliases.")] = 10.0,
) -> None:
    """Serve a server cohort on 127.0.0.1: its stable and canary versions in MLflow's scoring server
    behind the share router, every request logged to the store for the rollout controller; the
    router follows the registry (a step, completion or rollback) every --poll seconds. Ctrl-C stops."""
    import time

    from edgeops.settings import Settings
    from registry.serving import RequestLog, cohort_model, serve_cohort

    try:
        settings = Settings.from_env()
        catalog = settings.devices()
        if cohort not in catalog.cohorts:
            raise ConfigError(f"unknown cohort {cohort!r}; known: {', '.join(sorted(catalog.cohorts))}")
        if catalog.profile_for(cohort).runs_on != "server":
            raise ConfigError(f"cohort {cohort} is not served over HTTP (its profile runs on "
                              f"{catalog.profile_for(cohort).runs_on})")
        client = settings.mlflow_client()
        name = cohort_model(client, cohort)
        if name is None:
            raise ConfigError(f"cohort {cohort}: nothing released to it yet (no {cohort}-stable alias)")
        service = serve_cohort(client, settings.mlflow_tracking_uri, name, cohort,
                               log=RequestLog(settings.store(), cohort, flush_every=100))
    except EdgeOpsError as exc:
        Console(stderr=True).print(f"[red]error:[/] {exc}")
        raise typer.Exit(exc.exit_code) from None
    with service:
        service.poll(poll)
        r = service.router
        canary = f", canary v{r.canary.version} at {r.share:g}%" if r.canary else ""
        console.print(f"{cohort}: POST {service.url}/invocations (stable v{r.stable.version}{canary}); Ctrl-C stops")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            console.print(f"{cohort}: stopped; {sum(r.counts.values())} requests served")

"""The fleet simulator as a Prefect flow: real agents against the real store, in simulated time."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from pathlib import Path
from typing import Any

from prefect import flow


@flow(name="fleet-simulation", log_prints=True)
def simulate_fleet(
    prepared_dir: str,
    cohorts: list[str] | None = None,
    scenario: str = "none",
    onset_hours: float = 0.0,
    hours: float | None = None,
    devices_per_cohort: int | None = None,
    start: datetime | None = None,
    state_dir: str | None = None,
) -> dict[str, Any]:
    """Drive `devices_per_cohort` agents per cohort on the field split of a release's prepared data
    (never its train, validation or test images)."""
    from device.fleet import field_pool, simulate
    from device.scenarios import make_scenario
    from edgeops.settings import Settings
    from flows.serving import run_host_cohort, run_server_cohort
    from flows.web_cohort import run_browser_cohort
    from registry.channel_access import channel_repository
    from registry.enrolment import simulator_enroller

    settings = Settings.from_env()
    params = settings.params().fleet
    changes = {k: v for k, v in {"hours": hours, "devices_per_cohort": devices_per_cohort}.items() if v is not None}
    params = params.model_copy(update=changes)
    catalog = settings.devices()
    cohorts = cohorts or list(catalog.cohorts)
    skipped = {c: why for c in cohorts if (why := not_simulated(catalog.profile_for(c)))}
    for c, why in skipped.items():
        print(f"fleet: cohort {c} not simulated: {why}")
    cohorts = [c for c in cohorts if c not in skipped]
    store = settings.store()
    pool = field_pool(Path(prepared_dir))
    model_keys = _cohort_keys(settings, catalog, cohorts)
    field = make_scenario(scenario, onset_hours, n_classes=len(pool.classes))
    summary = simulate(
        store, cohorts, pool.x01, pool.labels,
        field, params,
        channel_repository(settings).export_root(), {c: catalog.profile_for(c).model_dump() for c in cohorts},
        model_keys=model_keys, start=start, state_dir=Path(state_dir) if state_dir else None,
        enrol=simulator_enroller(settings.keys_dir),
        thumbnails={c: catalog.cohorts[c].thumbnails for c in cohorts},
    )
    for c in [c for c in skipped if catalog.profile_for(c).runs_on == "browser"]:
        skipped[c] = run_browser_cohort(settings, c, pool.x01, pool.labels, scenario=field, params=params,
                                        start=start, state_dir=Path(state_dir) if state_dir else None)
        print(f"fleet: cohort {c}: {skipped[c]}")
    for c in [c for c in skipped if catalog.profile_for(c).runs_on == "agent"]:  # hosts (OpenVINO)
        line = run_host_cohort(settings, c, pool.x01, pool.labels, scenario=field, params=params)
        if line is not None:
            skipped[c] = line
            print(f"fleet: cohort {c}: {line}")
    for c in [c for c in skipped if catalog.profile_for(c).runs_on == "server"]:
        skipped[c] = run_server_cohort(settings, c, pool.x01, pool.labels, scenario=field, params=params,
                                       start=start)  # HTTP requests to the model server
        print(f"fleet: cohort {c}: {skipped[c]}")
    print(f"fleet: {summary.devices} devices, {summary.inferences} inferences, "
          f"{summary.records_in_store} records in the store, {summary.records_lost} lost, "
          f"{summary.refusals} refusals")
    return {**dataclasses.asdict(summary), "skipped": skipped}


def not_simulated(profile: Any) -> str | None:
    """Why the Python device agent does not stand in for this profile's devices (None: it does)."""
    from device.runtime import runnable_targets

    if profile.runs_on == "browser":
        return "not simulated by the agent: runs in the browser (onnxruntime-web)"
    if profile.runs_on == "server":
        return "not simulated: served over HTTP by the model server (share-of-requests split)"
    if not set(profile.targets) & set(runnable_targets()):
        return f"not simulated: the device agent has no runtime for {', '.join(profile.targets)}"
    return None


def _cohort_keys(settings: Any, catalog: Any, cohorts: list[str]) -> dict[str, bytes]:
    """AES keys provisioned to the devices of cohorts that ask for encryption, by key id.

    The simulator hands every device the keys of all simulated cohorts; a real device is
    provisioned with its own cohort's key only (docs/protocol.md).
    """
    from device.protocol import encryption_key_id
    from registry.keys import load_or_create_cohort_key

    keys = [load_or_create_cohort_key(settings.keys_dir, c) for c in cohorts if catalog.cohorts[c].encrypt]
    return {encryption_key_id(k): k for k in keys}

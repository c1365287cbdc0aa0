"""Monitoring flows: ingest telemetry, run the drift jobs per scope and window, decide on retraining.

Thin wiring over `monitoring/`: the components decide, these flows read the store, log every
window's metrics and Evidently HTML reports to MLflow (one parent run per flow run, one child
per window), publish Prefect artifacts (markdown tables, links to the reports), and launch the
retraining deployment (or the flow in-process when no Prefect API is configured).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from edgeops.errors import MonitoringError
from edgeops.settings import Settings
from monitoring.ingest import IngestReport, ingest, known_versions
from monitoring.jobs import WindowReport, run_window

RETRAIN_TARGET = "flows.retrain:retrain"
RETRAIN_DEPLOYMENT = "retrain/retrain"


@dataclass(frozen=True)
class TriggerReport:
    decisions: tuple[tuple[str, str, bool, tuple[str, ...]], ...]  # scope, window, retrain, reasons
    launched: bool
    how: str | None = None  # "deployment" | "in-process"
    reason: str = ""
    result: Any = field(default=None, compare=False)


def _cohorts(settings: Settings) -> list[str] | None:
    """Cohort names from devices.yaml; None (accept any) when the project has none."""
    from edgeops.errors import ConfigError

    try:
        return sorted(settings.devices().cohorts)
    except ConfigError:
        return None


def _md_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


@flow(name="ingest-telemetry", log_prints=True)
def ingest_telemetry(known_cohorts: list[str] | None = None) -> IngestReport:
    """Validate, quarantine, de-duplicate and compact every new raw telemetry batch."""
    settings = Settings.from_env()
    store = settings.store()
    rep = ingest(store, known_cohorts or _cohorts(settings), known_versions(store))
    rows = [[k, v] for k, v in rep.as_dict().items() if not isinstance(v, tuple)]
    rows += [[f"quarantined {k}", r[:120]] for k, r in rep.quarantined]
    create_markdown_artifact(
        f"# Telemetry ingestion\n\n{_md_table(['count', 'value'], rows)}",
        key="telemetry-ingest",
        description="received = stored + quarantined + duplicates",
    )
    print(
        f"ingested {rep.stored_rows} rows, {rep.quarantined_batches} batches quarantined, "
        f"{rep.duplicate_rows} duplicates; reconciles: {rep.reconciles}"
    )
    return rep


@task(name="drift-window", cache_policy=NO_CACHE, task_run_name="drift-{scope}-{start}")
def drift_window_task(
    reference: Any,
    current: Any,
    params: Any,
    scope: str,
    start: str,
    meta: dict[str, Any],
    report_dir: Path,
) -> WindowReport:
    return run_window(reference, current, params, report_dir=report_dir, **meta)


def _log_window(client: Any, experiment_id: str, parent: str, rep: WindowReport) -> str:
    from flows.tracking import child_run, log_artifact, log_batch

    tags = {
        "cohort": rep.cohort,
        "model_version": rep.model_version,
        "bundle_id": rep.bundle_id,
        "window_start": rep.window_start.isoformat(),
        "drifted": str(rep.drifted),
        "drifted_kinds": ",".join(rep.drifted_kinds),
        "reasons": " | ".join(rep.reasons())[:4000],
    }
    name = f"drift {rep.scope} {rep.window_start:%Y-%m-%d %H:%M}"
    with child_run(client, experiment_id, parent, name, tags={"edgeops.stage": "drift"}) as run_id:
        log_batch(client, run_id, metrics=rep.metrics(), tags=tags)
        for res in rep.results.values():
            if res.report_html is not None:
                log_artifact(client, run_id, res.report_html, "drift")
    return run_id


@flow(name="detect-drift", log_prints=True)
def detect_drift(window_hours: float | None = None, embeddings: bool = True) -> list[WindowReport]:
    """Every scope (cohort, model version, bundle) and every window not yet judged by the policy."""
    from flows.tracking import configure_mlflow, log_batch, start_run
    from monitoring.policy import load_states
    from monitoring.reference import load_reference
    from monitoring.table import inferences, list_partitions, read_table, windows

    settings = Settings.from_env()
    store, params = settings.store(), settings.params().monitor
    hours = window_hours or params.window_hours
    states, _ = load_states(store)
    client, experiment_id = configure_mlflow(settings)
    parent = start_run(client, experiment_id, "detect-drift", {"edgeops.stage": "monitor"})
    reports: list[WindowReport] = []
    links: list[tuple[str, str]] = []
    try:
        scopes = sorted({(p["cohort"], p["model_version"]) for p in list_partitions(store)})
        for cohort, version in scopes:
            rows = inferences(read_table(store, cohort=cohort, model_version=version))
            for bundle_id, part in rows.groupby("bundle_id") if not rows.empty else []:
                try:
                    reference = load_reference(store, str(bundle_id))
                except MonitoringError as exc:  # a bundle published before references existed
                    print(f"skipping {cohort}/{version}/{bundle_id}: {exc}")
                    continue
                scope = WindowReport(cohort, version, str(bundle_id), datetime.now(UTC), 0).scope
                judged = states.get(scope)
                for start, w in windows(part, hours):
                    if (
                        judged is not None
                        and judged.last_window is not None
                        and start <= judged.last_window
                    ):
                        continue
                    meta = {
                        "cohort": cohort,
                        "model_version": version,
                        "bundle_id": str(bundle_id),
                        "window_start": start.to_pydatetime(),
                        "embeddings": embeddings,
                    }
                    if len(w) < max(params.min_samples, 2):
                        reports.append(
                            WindowReport(
                                cohort, version, str(bundle_id), start.to_pydatetime(), len(w)
                            )
                        )
                        continue
                    out = settings.home / "reports" / cohort / version / f"{start:%Y%m%dT%H%M}"
                    rep = drift_window_task(
                        reference, w, params, scope, f"{start:%Y%m%dT%H%M}", meta, out
                    )
                    run_id = _log_window(client, experiment_id, parent, rep)
                    links.append((f"{rep.scope} {start:%H:%M}", f"{out.as_uri()}/data_drift.html"))
                    reports.append(rep)
                    print(
                        f"{rep.scope} {start}: n={rep.n_current} drifted={rep.drifted_kinds} run {run_id}"
                    )
        log_batch(
            client,
            parent,
            metrics={"windows": len(reports), "drifted_windows": sum(r.drifted for r in reports)},
        )
        client.set_terminated(parent, "FINISHED")
    except BaseException:
        client.set_terminated(parent, "FAILED")
        raise
    rows_md = [
        [
            r.scope,
            f"{r.window_start:%Y-%m-%d %H:%M}",
            r.n_current,
            ",".join(r.drifted_kinds) or "-",
            "; ".join(r.reasons())[:160],
        ]
        for r in reports
    ]
    create_markdown_artifact(
        "# Drift\n\n" + _md_table(["scope", "window", "n", "drift", "reasons"], rows_md),
        key="drift-summary",
        description=f"MLflow run {parent}",
    )
    for name, link in links[-20:]:
        create_link_artifact(link, link_text=f"Evidently data drift {name}", key="drift-report")
    return reports


def _launch(
    settings: Settings,
    reason: str,
    retrain_fn: Callable[..., Any] | None,
    retrain_kwargs: dict[str, Any],
) -> tuple[str, Any]:
    if retrain_fn is None and settings.prefect_api_url:
        from prefect.deployments import run_deployment

        run = run_deployment(
            RETRAIN_DEPLOYMENT, parameters={"reason": reason, **retrain_kwargs}, timeout=0
        )
        return "deployment", str(run.id)
    if retrain_fn is None:
        module, _, name = RETRAIN_TARGET.partition(":")
        retrain_fn = getattr(importlib.import_module(module), name)
    return "in-process", retrain_fn(reason=reason, **retrain_kwargs)


@flow(name="retrain-trigger", log_prints=True)
def retrain_trigger(
    reports: list[WindowReport],
    retrain_fn: Callable[..., Any] | None = None,
    retrain_kwargs: dict[str, Any] | None = None,
    clock: Callable[[], datetime] | None = None,
) -> TriggerReport:
    """Ask the policy about each judged window in time order; launch at most one retrain."""
    from monitoring.policy import WindowEvidence, evaluate

    settings = Settings.from_env()
    store, params = settings.store(), settings.params().monitor
    now = clock or (lambda: datetime.now(UTC))
    decisions, fire = [], []
    for rep in sorted(reports, key=lambda r: (r.scope, r.window_start)):
        ev = WindowEvidence(rep.window_start, rep.n_current, rep.drifted, rep.drifted_kinds)
        d = evaluate(store, rep.scope, ev, params, now)
        decisions.append((rep.scope, rep.window_start.isoformat(), d.retrain, d.reasons))
        if d.retrain:
            fire.append(f"{rep.scope} @ {rep.window_start:%Y-%m-%d %H:%M}: {'; '.join(d.reasons)}")
    rows = [[s, w, "retrain" if r else "-", "; ".join(why)[:160]] for s, w, r, why in decisions]
    create_markdown_artifact(
        "# Retrain policy\n\n" + _md_table(["scope", "window", "decision", "reasons"], rows),
        key="retrain-policy",
    )
    if not fire:
        return TriggerReport(tuple(decisions), False)
    reason = "drift: " + " | ".join(fire)
    print(f"retraining: {reason}")
    how, result = _launch(settings, reason[:500], retrain_fn, retrain_kwargs or {})
    return TriggerReport(tuple(decisions), True, how, reason, result)


@flow(name="monitor", log_prints=True)
def monitor(
    retrain_kwargs: dict[str, Any] | None = None, embeddings: bool = True
) -> dict[str, Any]:
    """The scheduled loop: ingest, detect drift, maybe retrain."""
    ingested = ingest_telemetry()
    reports = detect_drift(embeddings=embeddings)
    trigger = retrain_trigger(reports, retrain_kwargs=retrain_kwargs)
    return {
        "ingest": ingested.as_dict(),
        "windows": len(reports),
        "drifted": sum(r.drifted for r in reports),
        "retrain": trigger.launched,
        "how": trigger.how,
        "reason": trigger.reason,
    }

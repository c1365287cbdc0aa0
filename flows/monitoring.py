"""Monitoring flows: ingest telemetry, judge each complete window per scope, decide on retraining.

Thin wiring over `monitoring/`: the components decide, these flows read the store, log every
window's metrics and Evidently HTML reports to MLflow (one parent run per flow run, one child
per window), publish Prefect artifacts (markdown tables, links to the reports) and emit Prefect
events. A retrain request is the event `edgeops.retrain.requested`: on a Prefect server the
retrain deployment's trigger in prefect.yaml starts the run (the loop is the engine's, visible
in the UI); under the embedded default (no server) the same decision calls the retrain flow
in-process. Windows are judged once complete (monitoring.windows), harm decides by default
(monitoring.jobs) and the deployment-wide guard keeps one retrain per incident (monitoring.guard).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from edgeops.errors import MonitoringError
from edgeops.progress import report
from edgeops.settings import Settings
from monitoring.ingest import IngestReport, known_versions
from monitoring.jobs import WindowReport, run_window

RETRAIN_TARGET = "flows.retrain:retrain"
RETRAIN_DEPLOYMENT = "retrain/retrain"
RETRAIN_EVENT = "edgeops.retrain.requested"
HARM_EVENT = "edgeops.window.harm"
MONITOR_RESOURCE = "edgeops.monitor"
SUITE_SAMPLE_ROWS = 1000  # rows of each ingestion run the Great Expectations suite reads
MAX_WINDOW_ROWS = 20_000  # rows per window the row-based tests read (a uniform sample)


@dataclass(frozen=True)
class TriggerReport:
    # scope, window, retrain, reasons, decision (retrain | hold | none)
    decisions: tuple[tuple[str, str, bool, tuple[str, ...], str], ...]
    launched: bool
    how: str | None = None  # "event" (a server's deployment trigger) | "in-process"
    reason: str = ""
    result: Any = field(default=None, compare=False)
    alerts: tuple[str, ...] = ()


def _emit(event: str, cohort: str | None, payload: dict[str, Any]) -> str | None:
    """One Prefect event about the monitor (and the cohort it concerns); its id, or None when
    events are off (no API to send to)."""
    from prefect.events import emit_event

    related = (
        [{"prefect.resource.id": f"edgeops.cohort.{cohort}", "prefect.resource.role": "cohort"}]
        if cohort
        else None
    )
    ev = emit_event(
        event,
        resource={"prefect.resource.id": MONITOR_RESOURCE, "prefect.resource.name": "edgeops monitor"},
        related=related,
        payload=payload,
    )
    return str(ev.id) if ev is not None else None


def _cohort_keys(settings: Settings) -> dict[str, bytes]:
    """The cohort keys in the keystore (read, never made), for sealed drift references."""
    from device.encryption import kek_id

    files = sorted((settings.keys_dir / "aes").glob("*.key"))
    return {kek_id(k): k for k in (p.read_bytes() for p in files) if len(k) == 32}


def lateness(settings: Settings) -> timedelta:
    """The watermark lag: monitor.allowed_lateness_minutes, else the fleet's upload interval."""
    p = settings.params()
    minutes = p.monitor.allowed_lateness_minutes
    return timedelta(minutes=p.fleet.upload_interval_minutes if minutes is None else minutes)


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


def task_runner() -> Any:
    """The task runner the monitoring flows use, from EDGEOPS_TASK_RUNNER: unset or `thread`
    (Prefect's default, in-process threads), `dask` (a Dask LocalCluster started for the flow
    run) or `dask:<scheduler address>` (an existing cluster, e.g. `dask:tcp://10.0.0.5:8786`).
    Built when a flow is called, never at import time; docs/scale.md."""
    import os

    spec = os.environ.get("EDGEOPS_TASK_RUNNER", "").strip()
    if spec in ("", "thread", "threads"):
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner()
    kind, _, address = spec.partition(":")
    if kind != "dask":
        raise MonitoringError(f"unknown task runner {spec!r} (thread, dask or dask:<address>)",
                              where="EDGEOPS_TASK_RUNNER")
    from prefect_dask import DaskTaskRunner

    if address:
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(cluster_kwargs={"n_workers": 1, "processes": False,
                                          "dashboard_address": None})


@task(name="ingest-partition", cache_policy=NO_CACHE, task_run_name="ingest-{cohort}")
def ingest_partition_task(
    cohort: str, keys: list[str], known_cohorts: list[str] | None,
    versions: list[str] | None, sample_rows: int,
) -> tuple[IngestReport, Any]:
    """One cohort's raw prefix: its own ledger partition, so cohorts run in parallel."""
    from monitoring.ingest import ingest_partition
    from registry.enrolment import DeviceRegistry, enrolment_dir

    settings = Settings.from_env()
    devices = DeviceRegistry(enrolment_dir(settings.keys_dir)).load()
    return ingest_partition(settings.store(), cohort, keys, known_cohorts, versions,
                            devices=devices, params=settings.params().ingest,
                            sample_rows=sample_rows)


@flow(name="ingest-telemetry", log_prints=True)
def ingest_telemetry(known_cohorts: list[str] | None = None) -> IngestReport:
    """Validate, quarantine, de-duplicate and store every new raw telemetry batch: one task
    per cohort prefix (on Dask when EDGEOPS_TASK_RUNNER says so), the reviewer's Great
    Expectations suite once on a sample of what they stored."""
    from monitoring.ingest import combine, raw_partitions
    from monitoring.telemetry_suite import TelemetrySuite

    settings = Settings.from_env()
    store = settings.store()
    cohorts = known_cohorts or _cohorts(settings)
    versions = known_versions(store)
    sample = SUITE_SAMPLE_ROWS
    futures = [ingest_partition_task.submit(c, keys, cohorts, versions, sample)
               for c, keys in sorted(raw_partitions(store).items())]
    parts = [f.result() for f in futures]
    rep = combine([r for r, _ in parts], [t for _, t in parts],
                  lambda: TelemetrySuite(cohorts, versions), sample)
    rows = [[k, v] for k, v in rep.as_dict().items() if not isinstance(v, tuple)]
    rows += [[f"quarantined {k}", r[:120]] for k, r in rep.quarantined]
    rows += [["suite (sample) refused", f][:2] for f in rep.suite_failures]
    create_markdown_artifact(
        f"# Telemetry ingestion\n\n{_md_table(['count', 'value'], rows)}",
        key="telemetry-ingest",
        description="received = stored + quarantined + duplicates",
    )
    print(
        f"ingested {rep.stored_rows} rows, {rep.quarantined_batches} batches quarantined, "
        f"{rep.duplicate_rows} duplicates; reconciles: {rep.reconciles}"
        + (f"; the suite refused {len(rep.suite_failures)} expectation(s) on its sample"
           if rep.suite_failures else "")
    )
    return rep


@task(name="drift-window", cache_policy=NO_CACHE, task_run_name="judge-{scope}-{start}")
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
    """One child run per judged window, named by cohort, model version and window."""
    from flows.tracking import child_run, log_artifact, log_batch

    tags = {
        "cohort": rep.cohort,
        "model_version": rep.model_version,
        "bundle_id": rep.bundle_id,
        "window_start": rep.window_start.isoformat(),
        "drifted": str(rep.drifted),
        "harmful": str(rep.harmful),
        "drifted_kinds": ",".join(rep.drifted_kinds),
        "segments_flagged": "; ".join(str(f) for f in rep.segments)[:4000],
        "reasons": " | ".join(rep.reasons())[:4000],
    }
    name = f"{rep.cohort} v{rep.model_version} window {rep.window_start:%Y-%m-%d %H:%M}"
    with child_run(client, experiment_id, parent, name, tags={"edgeops.stage": "drift"}) as run_id:
        log_batch(client, run_id, metrics=rep.metrics(), tags=tags)
        for res in rep.results.values():
            if res.report_html is not None:
                log_artifact(client, run_id, res.report_html, "drift")
    return run_id


def verdict(rep: WindowReport) -> str:
    if rep.harmful:
        return "harmful"
    return f"drifted ({', '.join(rep.drifted_kinds)})" if rep.drifted else "no harm, no drift"


def render_reports(
    reference: Any, current: Any, params: Any, rep: WindowReport, out_dir: Path, meta: dict[str, Any]
) -> WindowReport:
    """The Evidently HTML reports of one window, on demand (a drifted or harmful window, or
    `edgeops monitor report`), titled with cohort, model version, window and verdict."""
    from monitoring.drift import entitle

    full = run_window(reference, current, params, report_dir=out_dir, **meta)
    title = (f"{rep.cohort} · model {rep.model_version} · window "
             f"{rep.window_start:%Y-%m-%d %H:%M} UTC · {verdict(rep)}")
    for res in full.results.values():
        if res.report_html is not None:
            entitle(res.report_html, title)
    return replace(rep, results={k: replace(v, report_html=full.results[k].report_html)
                                 if k in full.results else v for k, v in rep.results.items()})


def _references(store: Any, settings: Settings, scopes: list[Any]) -> dict[str, tuple[Any, float]]:
    from monitoring.reference import load_reference, load_temperature

    out = {}
    for sp in scopes:
        if sp.bundle_id in out:
            continue
        try:
            out[sp.bundle_id] = (load_reference(store, sp.bundle_id, _cohort_keys(settings)),
                                 load_temperature(store, sp.bundle_id))
        except MonitoringError as exc:  # a bundle published before references existed
            print(f"skipping {sp.scope}: {exc}")
    return out


def _judge_cohort(cohort: str, ctx: dict[str, Any]) -> tuple[list[WindowReport], int]:
    """Plan one cohort's windows from statistics, sample the ones to judge, judge them as
    tasks (in parallel on Dask), log and record them; the reports and the open rows."""
    from monitoring.cohort_windows import (
        plan_cohort,
        sample_windows,
        save_settled,
        settle,
        stats_dates,
        window_moments,
    )
    from monitoring.segments import flag_segments_from_stats
    from monitoring.windows import record

    settings, store, params = ctx["settings"], ctx["store"], ctx["params"]
    sigs = stats_dates(store, cohort)
    before = ctx["settled"].get(cohort, {})
    read = {d: sig for d, sig in sigs.items() if before.get(d) != sig}
    if not read:
        return [], 0
    scopes, moments, _ = plan_cohort(store, cohort, ctx["hours"], ctx["clock"], lateness(settings),
                                     ctx["ledger"], params.late_reopen_share, sorted(read))
    refs = _references(store, settings, scopes)
    least = max(params.min_samples, 2)
    wanted: dict[tuple[str, str], set[Any]] = {}
    for sp in scopes:
        for p in sp.plans:
            if sp.bundle_id in refs and p.status in ("judge", "rejudge") and p.total_rows >= least:
                wanted.setdefault((sp.model_version, sp.bundle_id), set()).add(p.start)
    samples = sample_windows(store, cohort, wanted, ctx["hours"], ctx["max_rows"], label_dates=sigs)
    out: list[WindowReport] = []
    jobs, pending, unsettled = [], 0, set()
    for sp in scopes:
        if sp.bundle_id not in refs:
            unsettled |= {p.start.strftime("%Y-%m-%d") for p in sp.plans}
            continue
        reference, temperature = refs[sp.bundle_id]
        pending += sum(p.total_rows for p in sp.plans if p.status == "open")
        for plan in sp.plans:
            start = plan.start.to_pydatetime()
            head = (cohort, sp.model_version, sp.bundle_id, start)
            if plan.status == "late":
                out.append(WindowReport(*head, plan.judged_rows, trigger=params.trigger,
                                        late_rows=plan.late_rows, status="late"))
            elif plan.status in ("judge", "rejudge"):
                rows = samples.get((sp.model_version, sp.bundle_id, plan.start))
                if rows is None or plan.total_rows < least:
                    out.append(WindowReport(*head, plan.total_rows, trigger=params.trigger))
                    continue
                meta = {"cohort": cohort, "model_version": sp.model_version,
                        "bundle_id": sp.bundle_id, "window_start": start,
                        "embeddings": ctx["embeddings"], "temperature": temperature,
                        "late_rows": plan.late_rows, "row_segments": False}
                fut = drift_window_task.submit(reference, rows, params, sp.scope,
                                               f"{plan.start:%Y%m%dT%H%M}", meta, None)
                jobs.append((sp, plan, reference, rows, meta, fut))
    for done, (sp, plan, reference, rows, meta, fut) in enumerate(jobs, start=1):
        report("monitor", f"window {sp.scope} {plan.start:%Y-%m-%d %H:%M}", done=done, total=len(jobs))
        rep = fut.result()
        flags = flag_segments_from_stats(
            window_moments(moments, sp.model_version, sp.bundle_id, plan.start), params.segment_fdr)
        rep = replace(rep, n_current=plan.total_rows, segments=tuple(flags))
        out_dir = settings.home / "reports" / cohort / sp.model_version / f"{plan.start:%Y%m%dT%H%M}"
        if ctx["render"] or (ctx["render"] is None and (rep.drifted or rep.harmful)):
            rep = render_reports(reference, rows, params, rep, out_dir, meta)
            ctx["links"].append((f"{rep.scope} {plan.start:%H:%M}", f"{out_dir.as_uri()}/data_drift.html"))
        run_id = _log_window(ctx["client"], ctx["experiment_id"], ctx["parent"], rep)
        rep = replace(rep, run_id=run_id)
        out.append(rep)
        est = f"{rep.estimate.accuracy:.3f}" if rep.estimate else "-"
        print(f"{rep.scope} {plan.start}: n={rep.n_current} (judged on {len(rows)}) est.acc={est} "
              f"harmful={rep.harmful} drifted={rep.drifted_kinds} segments={len(rep.segments)} "
              f"run {run_id}")
        if rep.harmful:
            _emit(HARM_EVENT, cohort, {"scope": rep.scope, "window_start": rep.window_start.isoformat(),
                                       "reason": rep.harm.reason if rep.harm else ""})
    for sp in scopes:
        if sp.bundle_id in refs:
            record(store, sp.scope, list(sp.plans))
    save_settled(store, cohort, settle(scopes, {d: s for d, s in read.items() if d not in unsettled},
                                       before))
    return sorted(out, key=lambda r: (r.window_start, r.scope)), pending


@flow(name="detect-drift", log_prints=True)
def detect_drift(
    window_hours: float | None = None, embeddings: bool = True, now: datetime | None = None,
    render: bool | None = None,
) -> list[WindowReport]:
    """Every scope (cohort, model version, bundle): judge each window that the watermark has
    completed, once; count rows arriving after their window was judged (re-open above a share).
    Reads only days whose statistics changed since they were settled, and of those only the
    windows to judge (a bounded sample of rows each; counts and device segments from every row).
    Evidently HTML (`render`): None, for drifted or harmful windows; True, for every judged
    window; False, for none (the verdicts are the same either way).

    `now`: the monitor's clock (default: the wall clock; a simulation passes its own time).
    """
    from flows.tracking import configure_mlflow, log_batch, start_run
    from monitoring.cohort_windows import load_settled, stats_cohorts
    from monitoring.windows import load_ledger

    settings = Settings.from_env()
    store, params = settings.store(), settings.params().monitor
    ledger, _ = load_ledger(store)
    client, experiment_id = configure_mlflow(settings)
    parent = start_run(client, experiment_id, "detect-drift", {"edgeops.stage": "monitor"})
    reports: list[WindowReport] = []
    ctx: dict[str, Any] = {"settings": settings, "store": store, "params": params,
                           "hours": window_hours or params.window_hours, "ledger": ledger,
                           "clock": now or datetime.now(UTC), "embeddings": embeddings,
                           "client": client, "experiment_id": experiment_id, "parent": parent,
                           "links": [], "render": render, "max_rows": MAX_WINDOW_ROWS,
                           "settled": load_settled(store)}
    pending = 0
    try:
        for cohort in stats_cohorts(store):
            got, waiting = _judge_cohort(cohort, ctx)
            reports += got
            pending += waiting
        judged = [r for r in reports if r.status == "judged"]
        log_batch(client, parent, metrics={
            "windows": len(judged), "drifted_windows": sum(r.drifted for r in judged),
            "harmful_windows": sum(r.harmful for r in judged),
            "late_rows": sum(r.late_rows for r in reports), "pending_rows": pending})
        if judged:
            span = f"{judged[0].window_start:%Y-%m-%d %H:%M}..{judged[-1].window_start:%H:%M}"
            client.set_tag(parent, "mlflow.runName",
                           f"monitor {','.join(sorted({r.cohort for r in judged}))} {span}")
        client.set_terminated(parent, "FINISHED")
    except BaseException:
        client.set_terminated(parent, "FAILED")
        raise
    print(f"{pending} rows wait for their window to complete (watermark)")
    rows_md = [
        [r.scope, f"{r.window_start:%Y-%m-%d %H:%M}", r.n_current, r.late_rows,
         f"{r.estimate.accuracy:.3f}" if r.estimate else "-", ",".join(r.drifted_kinds) or "-",
         "; ".join(r.reasons())[:160]]
        for r in reports
    ]
    create_markdown_artifact(
        "# Monitoring windows\n\n"
        + _md_table(["scope", "window", "n", "late", "est. acc", "drift", "reasons"], rows_md),
        key="drift-summary",
        description=f"MLflow run {parent}",
    )
    for name, link in ctx["links"][-20:]:
        create_link_artifact(link, link_text=f"Evidently data drift {name}", key="drift-report")
    return reports


def _new_labels(store: Any, since: datetime | None) -> int:
    """Labelled field rows with the thumbnail a retrain learns from, in hours starting at or
    after the last retrain (window statistics: only the days since are read)."""
    import polars as pl

    from monitoring.stats import read_stats

    dates = None
    if since is not None:
        first = since.date()
        dates = [str(first + timedelta(days=d)) for d in range((datetime.now(UTC).date() - first).days + 2)]
    m = read_stats(store, "moments", None, dates, columns=["slot", "cohort", "model_version",
                                                           "bundle_id", "device_id", "labelled_frames"])
    if m.is_empty():
        return 0
    if since is not None:
        m = m.filter(pl.col("slot") >= int(since.timestamp() * 1000))
    return int(m["labelled_frames"].sum())


def request_retrain(
    settings: Settings,
    reason: str,
    cohorts: list[str],
    retrain_fn: Callable[..., Any] | None,
    retrain_kwargs: dict[str, Any],
) -> tuple[str, Any]:
    """The one code path after a retrain decision: the event always; then on a Prefect server
    the retrain deployment's trigger (prefect.yaml) starts the run, and without one (the
    embedded default) the retrain flow runs here, in-process."""
    event_id = _emit(RETRAIN_EVENT, cohorts[0] if cohorts else None,
                     {"reason": reason, "cohorts": cohorts, **retrain_kwargs})
    if retrain_fn is None and settings.prefect_api_url:
        return "event", event_id
    if retrain_fn is None:
        module, _, name = RETRAIN_TARGET.partition(":")
        retrain_fn = getattr(importlib.import_module(module), name)
    return "in-process", retrain_fn(reason=reason, **retrain_kwargs)


def cause_runs(judged: list[WindowReport]) -> list[str]:
    """The MLflow runs (one per window, `edgeops.stage=drift`) of the windows whose signal the
    policy acted on in this pass (harmful, or drifted under `monitor.trigger: drift`), in time
    order: what the release run of the retrain links back to. The windows of the firing streak
    judged in earlier passes come from the policy state (`PolicyDecision.cause_runs`)."""
    return list(dict.fromkeys(r.run_id for r in judged if r.deciding and r.run_id))


def _decision(rep: WindowReport, fired: bool) -> str:
    return "retrain" if fired else "hold" if rep.deciding else "none"


@flow(name="retrain-trigger", log_prints=True)
def retrain_trigger(
    reports: list[WindowReport],
    retrain_fn: Callable[..., Any] | None = None,
    retrain_kwargs: dict[str, Any] | None = None,
    clock: Callable[[], datetime] | None = None,
) -> TriggerReport:
    """Ask the policy about each judged window in time order; start at most one retrain, and
    none while an incident is open, past the global cap, or without new labelled rows."""
    from monitoring.guard import blocked_reason, follow_up, load_guard, open_incident, save_guard
    from monitoring.policy import WindowEvidence, evaluate

    settings = Settings.from_env()
    store, params = settings.store(), settings.params().monitor
    now = clock or (lambda: datetime.now(UTC))
    judged = sorted((r for r in reports if r.status == "judged"),
                    key=lambda r: (r.window_start, r.scope))
    guard, etag = load_guard(store)
    guard, alerts = follow_up(
        guard, [(r.cohort, r.model_version, r.deciding, r.window_start) for r in judged
                if r.n_current >= params.min_samples], params, now())
    for note in alerts:
        print(note)
        if note.startswith("ALERT"):
            _emit("edgeops.retrain.alert", None, {"alert": note})
    since = guard.triggers[-1] if guard.triggers else None
    labels = _new_labels(store, since) if any(r.deciding for r in judged) else 0
    decisions, fire, harmed, streak_runs = [], [], {}, []
    for rep in judged:
        ev = WindowEvidence(rep.window_start, rep.n_current, rep.deciding, rep.drifted_kinds,
                            "harm" if rep.trigger == "harm" else "drift", rep.run_id or "")
        blocked = blocked_reason(guard, params, now(), labels) if not fire else (
            "one retrain per monitor run: already requested for " + fire[0].split(" @")[0])
        d = evaluate(store, rep.scope, ev, params, now, blocked)
        decisions.append((rep.scope, rep.window_start.isoformat(), d.retrain, d.reasons,
                          _decision(rep, d.retrain)))
        if rep.deciding:
            harmed.setdefault(rep.cohort, rep.model_version)
        if d.retrain:
            streak_runs.extend(d.cause_runs)
            fire.append(f"{rep.scope} @ {rep.window_start:%Y-%m-%d %H:%M}: {'; '.join(d.reasons)}")
    rows = [[s, w, dec, "; ".join(why)[:160]] for s, w, _, why, dec in decisions]
    create_markdown_artifact(
        "# Retrain policy\n\n" + _md_table(["scope", "window", "decision", "reasons"], rows)
        + ("\n\n" + "\n".join(f"- {a}" for a in alerts) if alerts else ""),
        key="retrain-policy",
    )
    if not fire:
        save_guard(store, guard, etag)
        return TriggerReport(tuple(decisions), False, alerts=tuple(alerts))
    signal = "harm" if params.trigger == "harm" else "drift"
    reason = f"{signal}: " + " | ".join(fire)
    guard = open_incident(guard, now(), reason[:300], harmed)
    save_guard(store, guard, etag)  # before the run: a concurrent monitor cannot start a second
    causes = list(dict.fromkeys([*streak_runs, *cause_runs(judged)]))
    print(f"retraining: {reason}" + (f" (drift runs {', '.join(causes)})" if causes else ""))
    how, result = request_retrain(settings, reason[:500], sorted(harmed), retrain_fn,
                                  {**(retrain_kwargs or {}), "cause_runs": causes})
    return TriggerReport(tuple(decisions), True, how, reason, result, tuple(alerts))


def window_summary(reports: list[WindowReport], trigger: TriggerReport | None) -> list[dict[str, Any]]:
    """One plain dict per window: what `edgeops monitor run --json` prints."""
    decided = {(s, w): (dec, why) for s, w, _, why, dec in (trigger.decisions if trigger else ())}
    out = []
    for r in reports:
        dec, why = decided.get((r.scope, r.window_start.isoformat()), (None, ()))
        if dec is None:
            dec = "hold" if r.status == "judged" and r.deciding else "none"
            why = ((f"{r.late_rows} late row(s) counted, window judged before",) if r.status == "late"
                   else (f"{r.n_current} rows < monitor.min_samples",) if r.estimate is None
                   else tuple(r.reasons()[:1]))
        out.append({
            "cohort": r.cohort,
            "model_version": r.model_version,
            "window_start": r.window_start.isoformat(),
            "rows": r.n_current if r.status == "judged" else 0,
            "late_rows": r.late_rows,
            "estimated_accuracy": r.estimate.accuracy if r.estimate else None,
            "estimated_accuracy_ci": list(r.estimate.interval()) if r.estimate else None,
            "labelled_accuracy": r.labelled.accuracy if r.labelled else None,
            "drifted_features": [c.removeprefix("f_") for c in r.drifted_features],
            "segments_flagged": [str(f) for f in r.segments],
            "decision": dec,
            "reason": "; ".join(why),
        })
    return out


@flow(name="monitor", log_prints=True)
def monitor(
    retrain_kwargs: dict[str, Any] | None = None,
    embeddings: bool = True,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The scheduled loop: ingest, judge complete windows, maybe request a retrain."""
    runner = task_runner()
    ingested = ingest_telemetry.with_options(task_runner=runner)()
    reports = detect_drift.with_options(task_runner=runner)(embeddings=embeddings, now=now)
    trigger = retrain_trigger(
        reports, retrain_kwargs=retrain_kwargs, clock=(lambda: now) if now else None
    )
    judged = [r for r in reports if r.status == "judged"]
    return {
        "ingest": ingested.as_dict(),
        "windows": len(judged),
        "drifted": sum(r.drifted for r in judged),
        "harmful": sum(r.harmful for r in judged),
        "late_rows": sum(r.late_rows for r in reports),
        "retrain": trigger.launched,
        "how": trigger.how,
        "reason": trigger.reason,
        "alerts": list(trigger.alerts),
        "window_reports": window_summary(reports, trigger),
    }

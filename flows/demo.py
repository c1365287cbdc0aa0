"""`make demo`: the whole loop twice on the bundled digits, once clean and once with drift.

release -> fleet (no drift) -> monitor (nothing happens) -> fleet (rotated, darkened frames)
-> monitor (estimated accuracy drops: harm, with the drift as its explanation; the retrain
policy fires, retraining registers new versions and starts canary rollouts). Ends with a summary table and a table of every cohort in devices.yaml (its variant and why, or the
reason for none; the MLflow aliases that say which version serves it; what its devices, pages or
model server did in the field), written to EDGEOPS_HOME/demo-summary.json.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

# A short run for tests and impatient users; the default run uses params.yaml as it is.
QUICK_OVERRIDES: dict[str, dict[str, Any]] = {
    "prepare": {"max_images": 700},
    "train": {"epochs": 10},
    "fleet": {"devices_per_cohort": 3, "hours": 2.0},
    # ~140 test images cannot show non-inferiority within the shipped 1-2 point margins
    # (components.evidence); the quick run says so by using 10-point margins
    "evaluate": {"max_accuracy_drop": 0.1, "max_regression_vs_stable": 0.1},
}
DRIFT_SCENARIO = "rotate_darken"


def reset_example(data: Path) -> str:
    """The pristine example in `data` (a previous demo's feedback removed); returns its version."""
    from components.data import write_example_digits
    from registry.data_versions import dvc_hash, find_dvc_root, track_new_version

    with tempfile.TemporaryDirectory() as tmp:
        write_example_digits(Path(tmp) / "digits")
        pristine = dvc_hash(Path(tmp) / "digits").md5
        if not data.exists() or dvc_hash(data).md5 != pristine:
            shutil.rmtree(data, ignore_errors=True)
            data.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(Path(tmp) / "digits", data)
    if find_dvc_root(data) is not None and data.with_name(f"{data.name}.dvc").exists():
        return track_new_version(data, "example digits").md5
    return pristine


def _monitor(data: Path, overrides: dict[str, Any] | None, now: datetime | None = None) -> dict[str, Any]:
    """One monitor pass. `now`: the simulated clock after the fleet's last upload plus the allowed
    lateness, so every window the fleet produced is complete (a real monitor uses the wall clock)."""
    from edgeops.settings import Settings
    from flows.monitoring import (
        detect_drift,
        ingest_telemetry,
        lateness,
        retrain_trigger,
        window_summary,
    )

    clock = now + lateness(Settings.from_env()) if now is not None else None
    ingested = ingest_telemetry()
    reports = detect_drift(now=clock)
    trigger = retrain_trigger(reports, retrain_kwargs={"data_dir": str(data), "overrides": overrides},
                              clock=(lambda: clock) if clock else None)
    judged = [r for r in reports if r.status == "judged" and r.estimate is not None]
    return {
        "ingest": ingested.as_dict(),
        "windows": len(judged),
        "drifted_windows": sum(r.drifted for r in judged),
        "harmful_windows": sum(r.harmful for r in judged),
        "drift_kinds": sorted({k for r in judged for k in r.drifted_kinds}),
        "late_rows": sum(r.late_rows for r in reports),
        "segments_flagged": sorted({str(f) for r in judged for f in r.segments}),
        "estimated_accuracy": {f"{r.scope} {r.window_start:%H:%M}": round(r.estimate.accuracy, 4)
                               for r in judged},
        "decisions": [w["decision"] for w in window_summary(reports, trigger)],
        "retrain": trigger.launched,
        "reason": trigger.reason,
        "alerts": list(trigger.alerts),
        "retrain_result": trigger.result if isinstance(trigger.result, dict) else None,
    }


def run_demo(data: Path, console: Console | None = None, quick: bool = False) -> dict[str, Any]:
    from edgeops.settings import Settings
    from flows.fleet import simulate_fleet
    from flows.release import release_pipeline
    from flows.report import print_release

    console = console or Console()
    settings = Settings.from_env()
    settings.ensure_home()
    overrides = QUICK_OVERRIDES if quick else None
    fleet = (overrides or {}).get("fleet", {})
    hours = fleet.get("hours") or settings.params().fleet.hours
    timings: dict[str, float] = {}
    t_all = time.perf_counter()

    def timed(name: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        console.rule(f"[bold]{name}")
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        timings[name] = time.perf_counter() - t0
        return out

    version = timed("example data", reset_example, data)
    console.print(f"example digits in {data}, data version {version}")
    release = timed("release", release_pipeline, str(data), trigger="demo",
                    overrides={k: v for k, v in (overrides or {}).items() if k != "fleet"} or None)
    print_release(console, release)
    prepared = str(Path(release["work_dir"]) / "prepared")
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    state = str(settings.home / "fleet")
    clean = timed("fleet, no drift", simulate_fleet, prepared, scenario="none", hours=hours,
                  devices_per_cohort=fleet.get("devices_per_cohort"), start=start, state_dir=state)
    quiet = timed("monitor, no drift", _monitor, data, overrides, start + timedelta(hours=hours))
    drifted = timed(f"fleet, drift ({DRIFT_SCENARIO})", simulate_fleet, prepared, scenario=DRIFT_SCENARIO,
                    onset_hours=0.0, hours=hours, devices_per_cohort=fleet.get("devices_per_cohort"),
                    start=start + timedelta(hours=hours), state_dir=state)
    caught = timed("monitor, drift", _monitor, data, overrides, start + timedelta(hours=2 * hours))
    timings["total"] = time.perf_counter() - t_all
    summary = {"release": _release_brief(release), "fleet_clean": _fleet_brief(clean), "monitor_clean": quiet,
               "fleet_drift": _fleet_brief(drifted), "monitor_drift": _without_result(caught),
               "retrain": _release_brief(caught["retrain_result"]) if caught["retrain_result"] else None,
               "timings": timings}
    summary["cohorts"] = cohort_rows(summary, release, settings.devices(), settings.mlflow_client())
    (settings.home / "demo-summary.json").write_text(json.dumps(summary, indent=2, default=str))
    console.print(summary_table(summary))
    console.print(cohort_table(summary["cohorts"]))
    console.print(f"summary written to {settings.home / 'demo-summary.json'}; open the MLflow UI with\n"
                  f"  .venv/bin/mlflow ui --backend-store-uri {settings.mlflow_tracking_uri}")
    return summary


def registry_aliases(client: Any) -> dict[str, list[str]]:
    """{cohort: ["<model> v<version> (@<cohort>-<role>)", ...]} as the MLflow registry holds them:
    what the MLflow UI shows on each registered model's page."""
    out: dict[str, list[str]] = {}
    for m in client.search_registered_models():
        for alias, version in sorted((m.aliases or {}).items()):
            cohort, _, role = alias.rpartition("-")
            if role in ("stable", "canary") and cohort:
                out.setdefault(cohort, []).append(f"{m.name} v{version} (@{alias})")
    return out


def cohort_rows(s: dict[str, Any], release: dict[str, Any], catalog: Any, client: Any) -> dict[str, dict[str, Any]]:
    """Per cohort of devices.yaml: its profile and runtime, the variant it got and why (or the reason
    none), what the MLflow registry says serves it, Core ML converted-not-run entries its profile
    takes, and what its devices did in the fleet runs."""
    aliases = registry_aliases(client)
    unverified = release.get("unverified") or {}
    rows: dict[str, dict[str, Any]] = {}
    for cohort, c in catalog.cohorts.items():
        profile = catalog.profiles[c.profile]
        p = (s["retrain"] or {}).get("published", {}).get(cohort) or s["release"]["published"].get(cohort, "")
        p0 = release["published"].get(cohort, {})
        notes = [f"{t}: {u['name']} v{u['version']} {u['status']}" if "name" in u else f"{t}: {u.get('failed')}"
                 for t, u in unverified.items() if c.profile in u.get("profiles", [])]
        field = {k: (s[k]["accuracy"].get(cohort) if cohort in s[k]["accuracy"]
                     else s[k]["not_simulated"].get(cohort)) for k in ("fleet_clean", "fleet_drift")}
        rows[cohort] = {"profile": c.profile, "runs_on": profile.runs_on,
                        "variant": p0.get("variant", p0.get("target")) if p0.get("published") else None,
                        "release": p, "why": p0.get("why") or p0.get("reason", ""),
                        "mlflow": aliases.get(cohort, []), "unverified": notes, "field": field}
    return rows


def cohort_table(rows: dict[str, dict[str, Any]]) -> Table:
    t = Table(title="every cohort: its variant, why, and what the MLflow registry says serves it")
    for col in ("cohort", "profile / runs on", "variant", "why (or why none)", "MLflow aliases", "in the field"):
        t.add_column(col, overflow="fold")
    for cohort, r in rows.items():
        field = "; ".join(f"{'clean' if k == 'fleet_clean' else 'drift'}: "
                          + (_pct(v) + " (agents)" if isinstance(v, float) else str(v or "-"))
                          for k, v in r["field"].items())
        t.add_row(cohort, f"{r['profile']} / {r['runs_on']}", r["variant"] or "none",
                  "; ".join([r["why"], *r["unverified"]]), "\n".join(r["mlflow"]) or "-", field)
    return t


def _release_brief(r: dict[str, Any]) -> dict[str, Any]:
    return {"run_id": r["run_id"], "data_version": r["data_version"], "float_accuracy": r["float"]["test_accuracy"],
            "variants": {t: {"accuracy": v["accuracy"], "bytes": v["bytes"], "gzip_bytes": v["gzip_bytes"]}
                         for t, v in r["variants"].items()},
            "registered": {t: f"{x['name']} v{x['version']}" for t, x in r["registered"].items()},
            "published": {c: (f"{p['role']} {p.get('variant', p.get('target'))} ({p.get('profile', '')}: "
                              f"{p.get('why', '')})" if p.get("published") else f"not published: {p.get('reason', '')}")
                          for c, p in r["published"].items()},
            "timings": r["timings"], "feedback": r.get("feedback")}


def _fleet_brief(f: dict[str, Any]) -> dict[str, Any]:
    keys = ("devices", "inferences", "records_in_store", "records_lost", "refusals", "bytes_per_device_per_day")
    out = {k: f[k] for k in keys}
    out["accuracy"] = {c["cohort"]: c["accuracy"] for c in f["cohorts"]}
    out["not_simulated"] = f.get("skipped", {})
    return out


def _without_result(m: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in m.items() if k != "retrain_result"}


def _pct(x: Any) -> str:
    return f"{100 * x:.1f}%" if isinstance(x, int | float) else "-"


def summary_table(s: dict[str, Any]) -> Table:
    t = Table(title="edgeops demo")
    for col in ("stage", "seconds", "result"):
        t.add_column(col)
    r, tm = s["release"], s["timings"]
    sizes = ", ".join(f"{k} {_pct(v['accuracy'])} {v['bytes'] / 1024:.0f} KiB" for k, v in r["variants"].items())
    t.add_row("release", f"{tm['release']:.0f}", f"float {_pct(r['float_accuracy'])}; {sizes}")
    for c, p in r["published"].items():  # which variant each cohort gets, and why
        t.add_row("", "", f"{c}: {p}")
    for key, name in (("fleet_clean", "fleet, no drift"), ("fleet_drift", f"fleet, drift ({DRIFT_SCENARIO})")):
        f = s[key]
        acc = ", ".join(f"{c} {_pct(a)}" for c, a in f["accuracy"].items())
        t.add_row(name, f"{tm[name]:.0f}", f"{f['devices']} devices, {f['inferences']} inferences, "
                  f"{f['records_in_store']} records, {f['records_lost']} lost; accuracy {acc}")
        for c, why in f.get("not_simulated", {}).items():  # browser, server, hosts: their own runtimes
            t.add_row("", "", f"{c}: {why}")
    for key, name in (("monitor_clean", "monitor, no drift"), ("monitor_drift", "monitor, drift")):
        m = s[key]
        est = m.get("estimated_accuracy") or {}
        low = f"; lowest estimated accuracy {_pct(min(est.values()))}" if est else ""
        verdict = (f"harm in {m['harmful_windows']}/{m['windows']} windows{low}; drift in "
                   f"{m['drifted_windows']} ({', '.join(m['drift_kinds']) or 'none'}); "
                   f"{len(m['segments_flagged'])} segment flag(s), {m['late_rows']} late rows")
        t.add_row(name, f"{tm[name]:.0f}", f"{verdict}; retrain: {'yes' if m['retrain'] else 'no'}")
    if s["retrain"]:
        rt = s["retrain"]
        fb = rt.get("feedback") or {}
        t.add_row("retrain", "", f"{fb.get('written', 0)} feedback images merged; float {_pct(rt['float_accuracy'])}; "
                  + ", ".join(f"{c} {p}" for c, p in rt["published"].items()))
    t.add_row("total", f"{tm['total']:.0f}", "")
    return t

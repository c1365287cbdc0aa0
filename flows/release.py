"""The release pipeline: prepare -> validate -> train -> convert+verify (per target, concurrently)
-> bless per profile -> register per target -> publish per cohort.

Thin wiring: every step is a component or registry function; this module adds the Prefect
tasks (states, retries, concurrency), one MLflow parent run with a child per stage or variant,
and the rule that nothing is registered as releasable or published from a failed or unblessed
run (every step before `register` runs first; publishing only takes blessed variants).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from edgeops.progress import report as report_progress
from flows import publish, release_logging, stages
from flows.links import link_in_prefect, mlflow_model_version_url, mlflow_run_url, mlflow_ui_base
from flows.report import cause_run_entries, release_headline, release_markdown, release_report
from flows.selection import bless_and_select
from flows.tracking import child_run, configure_mlflow, flatten, log_artifact, log_batch, start_run
from flows.unverified import register_unverified_targets


@task(name="prepare", cache_policy=NO_CACHE)
def prepare_task(data_dir: str, params: Any, work: Path) -> Any:
    home = work.parent.parent  # EDGEOPS_HOME/runs/<run id>: the split ledger lives in EDGEOPS_HOME
    return stages.prepare(data_dir, params, work / "prepared", stages.split_ledger(home, data_dir))


@task(name="validate", cache_policy=NO_CACHE)
def validate_task(prepared: Any, params: Any, work: Path) -> Any:
    return stages.validate(prepared, params, work / "validation")


@task(name="train", cache_policy=NO_CACHE)
def train_task(prepared: Any, params: Any, work: Path) -> Any:
    return stages.train(prepared, params, work / "model")


@task(name="compress", cache_policy=NO_CACHE)
def compress_task(model: Any, prepared: Any, params: Any, teacher: Any = None, augment: Any = None) -> Any:
    """Every compression fine-tune distils from `teacher` (the float parent when None or when the
    teacher is no better on validation) on the training augmentation `augment`."""
    from components.compression import compress

    return compress(model, prepared, params, teacher=teacher, augment=augment)


@task(name="convert", cache_policy=NO_CACHE, task_run_name="convert-{variant}")
def convert_task(model: Any, variant: str, prepared: Any, params: Any, work: Path) -> Any:
    return stages.convert(model, stages.variant_target(variant), prepared, params,
                          work / "variants" / stages.variant_method(variant))


@task(name="bless", cache_policy=NO_CACHE)
def bless_task(client: Any, run_id: str, variants: dict[str, Any], float_accuracy: float, catalog: Any,
               params: Any, settings: Any, prepared: Any, out: Path) -> dict[str, Any]:
    return bless_and_select(client, run_id, variants, float_accuracy, catalog, params, settings, prepared, out)


# Registration is idempotent per release run (registry.mlflow_models.register_variant returns the
# version this release already made), so a retry after a lost server reply is safe.
@task(name="register", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def register_task(*args: Any) -> dict[str, dict[str, Any]]:
    return publish.register(*args)


# Publishing writes content-addressed bundles and compare-and-swap manifest/rollout updates that
# are idempotent transitions, so a retry after a store error repeats nothing twice.
@task(name="publish", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def publish_task(*args: Any) -> dict[str, Any]:
    return publish.publish(*args)


def _git_commit() -> str:
    import subprocess

    proc = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else "unknown"


@flow(name="release-pipeline", task_runner=ThreadPoolTaskRunner(max_workers=2), log_prints=True)
def release_pipeline(
    data_dir: str,
    params_path: str | None = None,
    model_name: str | None = None,
    trigger: str = "manual",
    rollout: bool = True,
    overrides: dict[str, Any] | None = None,
    cause_runs: list[str] | None = None,
) -> dict[str, Any]:
    """Run the whole release once and return a JSON-able summary.

    `cause_runs`: the MLflow runs of the monitoring windows that started it (a retrain), tagged
    `edgeops.cause_runs` on the release run and linked from its report.

    The first release of a model makes each cohort's chosen variant its stable bundle; later
    releases start a staged rollout (canary) instead, never going straight to 100%.
    """
    from edgeops.settings import Settings
    from registry.data_versions import dvc_hash

    settings = Settings.from_env()
    params = _params(settings, params_path, overrides)
    git_commit = _git_commit()
    catalog = settings.devices()
    name = model_name or Path(data_dir).resolve().name
    data_version = dvc_hash(data_dir)
    client, experiment_id = configure_mlflow(settings)
    timings: dict[str, float] = {}
    run_id = start_run(
        client, experiment_id, f"release-{name}-{data_version.short}",
        {"edgeops.kind": "release", "edgeops.trigger": trigger, "edgeops.model_name": name,
         "edgeops.data_version": data_version.md5, "edgeops.git_commit": git_commit,
         **({"edgeops.cause_runs": ",".join(cause_runs)[:5000]} if cause_runs else {})},
    )
    mlflow_ui = mlflow_ui_base(settings.mlflow_tracking_uri, settings.mlflow_ui_url)
    link_in_prefect(f"mlflow-run-{name}", mlflow_run_url(mlflow_ui, experiment_id, run_id),
                    f"MLflow run release-{name}-{data_version.short}", "the release's MLflow run")
    work = settings.home / "runs" / run_id
    status = "FAILED"
    try:
        log_batch(client, run_id, params=flatten("", params.model_dump()))
        release_logging.log_data_version(run_id, data_version, name)

        t0 = time.perf_counter()
        with child_run(client, experiment_id, run_id, "prepare") as rid:
            prepared = prepare_task(data_dir, params.prepare, work)
            validation = validate_task(prepared, params.prepare, work)
            release_logging.log_prepare(client, rid, prepared, validation, data_version, name)
            stages.raise_if_invalid(validation, params.prepare)
        timings["prepare"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        with child_run(client, experiment_id, run_id, "train") as rid:
            trained = train_task(prepared, params.train, work)
            float_model_uri = release_logging.log_training(client, rid, trained, prepared, work / "model")
        timings["train"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        parents = {"float": trained.model}
        if params.compress.methods:
            with child_run(client, experiment_id, run_id, "compress") as rid:
                compressed = compress_task(trained.model, prepared, params.compress, trained.teacher_model,
                                           params.train.augment)
                release_logging.log_compression(client, rid, compressed)
            parents.update({m: c.model for m, c in compressed.items()})
        timings["compress"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        targets = stages.targets_for(params.convert, catalog)
        futures = {v: convert_task.submit(parents[stages.variant_method(v)], v, prepared, params.convert, work)
                   for v in stages.variant_names(targets, list(parents))}
        variants, failures = {}, {}
        for done, (target, fut) in enumerate(futures.items(), start=1):
            report_progress("convert", target, done=done, total=len(futures))
            with child_run(client, experiment_id, run_id, f"convert-{target}",
                           {"edgeops.target": stages.variant_target(target)}) as rid:
                fut.wait()
                outcome = fut.result(raise_on_failure=False)
                if isinstance(outcome, BaseException):
                    failures[target] = str(outcome)
                    log_batch(client, rid, tags={"edgeops.conversion_error": failures[target]})
                else:
                    variants[target] = outcome
                    release_logging.log_variant(client, rid, outcome)
        timings["convert"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        with child_run(client, experiment_id, run_id, "bless") as rid:
            selection = bless_task(
                client, rid, variants, trained.test_accuracy, catalog, params.evaluate, settings, prepared,
                work / "blessing",
            )
        timings["bless"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        with child_run(client, experiment_id, run_id, "register") as rid:
            registered = register_task(
                client, rid, run_id, name, variants, selection, prepared, data_version, float_model_uri,
                git_commit,
            )
            unverified = register_unverified_targets(  # Core ML: converted, not run (no runtime here)
                client, rid, run_id, name, trained.model, catalog, data_version, float_model_uri, git_commit,
                work / "variants" / "unverified")
        for entry in registered.values():
            link_in_prefect(f"mlflow-model-{entry['name']}", mlflow_model_version_url(
                mlflow_ui, entry["name"], entry["version"]), f"{entry['name']} version {entry['version']}",
                "registered model version")
        timings["register"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        with child_run(client, experiment_id, run_id, "publish") as rid:
            published = publish_task(
                client, rid, settings, catalog, name, registered, selection, prepared, variants, params, rollout
            )
        timings["publish"] = time.perf_counter() - t0

        log_batch(client, run_id, metrics={f"time_{k}_s": v for k, v in timings.items()})
        status = "FINISHED"
        result = {
            "model_name": name,
            "run_id": run_id,
            "experiment_id": experiment_id,
            "data_version": data_version.md5,
            "work_dir": str(work),
            "float": {"test_accuracy": trained.test_accuracy, "params": trained.params_count,
                      "macs": trained.macs, "train_seconds": trained.train_seconds},
            "validation": {"success": validation.success, "failures": list(validation.failures)},
            "variants": {t: v.to_dict() for t, v in variants.items()},
            "conversion_failures": failures,
            "selection": selection,
            "registered": registered,
            "unverified": unverified,
            "published": published,
            "timings": timings,
            "mlflow_ui": mlflow_ui,
            "cause_runs": cause_run_entries(client, cause_runs or [], experiment_id),
        }
        report = release_report(result, trigger)
        (work / "release_report.md").write_text(report)
        log_artifact(client, run_id, work / "release_report.md")
        # The run's description in the MLflow UI (a tag value holds at most 8,000 characters; the
        # whole report is the artifact beside it).
        note = f"{release_headline(result)}\n\n{report}"
        client.set_tag(run_id, "mlflow.note.content",
                       note if len(note) <= 8000 else note[:7900] + "\n\n(cut: see release_report.md)")
        create_markdown_artifact(release_markdown(result), key="release-summary",
                                 description=f"release {name}")
        return result
    except Exception as exc:
        # The reviewer sees why in the MLflow UI: one line on the run, not only in a console.
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        failure = f"{type(exc).__name__}: {reason}"[:4000]
        log_batch(client, run_id, tags={"edgeops.failure": failure, "mlflow.note.content": f"Failed: {failure}"})
        raise
    finally:
        client.set_terminated(run_id, status=status)


def _params(settings: Any, params_path: str | None, overrides: dict[str, Any] | None) -> Any:
    """params.yaml (or the given file) with optional nested overrides, validated again."""
    from edgeops.params import PipelineParams, load_params

    base = load_params(Path(params_path), required=True) if params_path else load_params(settings.params_path)
    if not overrides:
        return base
    merged = base.model_dump()
    for stage, values in overrides.items():
        merged[stage] = {**merged.get(stage, {}), **values}
    return PipelineParams.model_validate(merged)

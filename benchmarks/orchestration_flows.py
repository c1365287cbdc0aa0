"""The flows that benchmarks/orchestration.py measures (a module of its own so that a worker can
load them by entrypoint: `benchmarks/orchestration_flows.py:bench_pipeline`).

The same tiny pipeline (prepare, validate, train, convert per target: the functions in
flows/stages.py) runs
1. as plain function calls: the work;
2. as a Prefect flow on the ephemeral API (tasks one at a time), without and with MLflow
   tracking (a parent run, a child per stage, batched logging): overhead = wall - work, where
   work is the time spent inside the task bodies of that same run;
3. as a deployment on `prefect server` + a process worker: the flow's own overhead, and the
   end-to-end latency from `run_deployment` to completion (polling, process start, imports).
It also reports the per-task overhead (a flow of no-op tasks; anchor ~0.1 s/task on Prefect
2.14), MLflow requests per run (batched vs one request per value, on the real release pipeline),
and the speed-up of converting targets concurrently through ThreadPoolTaskRunner.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")  # loaded 2-core CI
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from prefect import flow, task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402
from prefect.task_runners import ThreadPoolTaskRunner  # noqa: E402

from flows import stages  # noqa: E402

CONVERT_TARGETS = ["tflite-f32", "tflite-f16", "tflite-dynamic", "tflite-int8"]


def tiny_overrides(quick: bool) -> dict[str, Any]:
    return {"prepare": {"max_images": 300 if quick else 600},
            "train": {"epochs": 2 if quick else 4, "distill": {"enabled": False}},
            "compress": {"methods": []},  # the same work as when these figures were first taken
            "convert": {"targets": ["tflite-f32", "tflite-int8"], "representative_samples": 50,
                        "latency_runs": 5, "min_agreement": 0.9}}  # measure the engine, not the gate


def load_params(overrides: dict[str, Any]) -> Any:
    from edgeops.params import PipelineParams, load_params

    merged = load_params(REPO / "params.yaml").model_dump()
    for stage, values in overrides.items():
        merged[stage] = {**merged.get(stage, {}), **values}
    return PipelineParams.model_validate(merged)


def plain(data_dir: str, overrides: dict[str, Any], work: Path) -> dict[str, float]:
    """The work alone: the stage functions called one after the other."""
    params, times = load_params(overrides), {}
    t = time.perf_counter()
    prepared = stages.prepare(data_dir, params.prepare, work / "prepared")
    times["prepare"] = time.perf_counter() - t
    t = time.perf_counter()
    stages.validate(prepared, params.prepare, work / "validation")
    times["validate"] = time.perf_counter() - t
    t = time.perf_counter()
    trained = stages.train(prepared, params.train, work / "model")
    times["train"] = time.perf_counter() - t
    for target in params.convert.targets:
        t = time.perf_counter()
        stages.convert(trained.model, target, prepared, params.convert, work / "variants")
        times[f"convert-{target}"] = time.perf_counter() - t
    return times


def _timed(fn: Any, *args: Any) -> tuple[Any, float]:
    t = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t


@task(cache_policy=NO_CACHE)
def timed_task(name: str, fn: Any, *args: Any) -> tuple[Any, float]:
    return _timed(fn, *args)


@flow(name="bench-pipeline", task_runner=ThreadPoolTaskRunner(max_workers=1))
def bench_pipeline(data_dir: str, overrides: dict[str, Any], work_dir: str, track: bool = True,
                   report_path: str | None = None) -> dict[str, Any]:
    """The plain calls as Prefect tasks, tracked in MLflow the way flows/release.py tracks."""
    from edgeops.settings import Settings
    from flows.tracking import LOG_CALLS, child_run, configure_mlflow, flatten, log_batch

    t_flow, work, params = time.perf_counter(), Path(work_dir), load_params(overrides)
    LOG_CALLS.reset()
    client, exp = configure_mlflow(Settings.from_env()) if track else (None, "")
    parent = client.create_run(exp, run_name="bench").info.run_id if client else None
    if client:
        log_batch(client, parent, params=flatten("", params.model_dump()))
    busy: dict[str, float] = {}

    def stage(name: str, fn: Any, *args: Any) -> Any:
        if client is None:
            out, busy[name] = timed_task(name, fn, *args)
            return out
        with child_run(client, exp, parent, name) as rid:
            out, busy[name] = timed_task(name, fn, *args)
            log_batch(client, rid, metrics={"seconds": busy[name]})
            return out

    prepared = stage("prepare", stages.prepare, data_dir, params.prepare, work / "prepared")
    stage("validate", stages.validate, prepared, params.prepare, work / "validation")
    trained = stage("train", stages.train, prepared, params.train, work / "model")
    if client:
        log_batch(client, parent, history={k: list(v) for k, v in trained.history.items()})
    for target in params.convert.targets:
        stage(f"convert-{target}", stages.convert, trained.model, target, prepared, params.convert,
              work / "variants")
    if client:
        client.set_terminated(parent)
    wall = time.perf_counter() - t_flow
    report = {"wall": wall, "work": sum(busy.values()), "stages": busy, "log_batches": LOG_CALLS.batches,
              "log_values": LOG_CALLS.values}
    if report_path:
        Path(report_path).write_text(json.dumps(report))
    return report


@task(cache_policy=NO_CACHE)
def noop(i: int) -> int:
    return i


@flow(name="bench-noop", task_runner=ThreadPoolTaskRunner(max_workers=1))
def noop_flow(n: int = 50, report_path: str | None = None) -> dict[str, float]:
    """n no-op tasks one after the other: the orchestration cost per task."""
    t = time.perf_counter()
    for i in range(n):
        noop(i)
    report = {"n": n, "seconds": time.perf_counter() - t}
    if report_path:
        Path(report_path).write_text(json.dumps(report))
    return report


@flow(name="bench-convert")
def convert_flow(model_dir: str, prepared_dir: str, overrides: dict[str, Any], out_dir: str,
                 targets: list[str]) -> float:
    """Every target submitted at once; the flow's task runner sets how many run together."""
    from components.prepare import PreparedData

    params, prepared = load_params(overrides), PreparedData.load(Path(prepared_dir))
    model = stages.load_model(Path(model_dir))
    t = time.perf_counter()
    futures = [timed_task.submit(f"convert-{x}", stages.convert, model, x, prepared, params.convert,
                                 Path(out_dir) / str(i)) for i, x in enumerate(targets)]
    for f in futures:
        f.result()
    return time.perf_counter() - t


"""Orchestration and tracking overhead as a share of the work (issue 8; goal <= 15%).

    .venv/bin/python benchmarks/orchestration.py [--quick] [--no-server] [--workers 1,2,4]

Runs the tiny pipeline of benchmarks/orchestration_flows.py as plain calls, as a Prefect flow on
the ephemeral API (without, then with MLflow tracking), and as a deployment on `prefect server`
with a process worker; then the per-task overhead, MLflow requests per release run (batched vs
one per value), and concurrent conversion per target with ThreadPoolTaskRunner(max_workers=k).
Everything lives in a temporary EDGEOPS_HOME / PREFECT_HOME; results go to --json as well.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TMP = Path(tempfile.mkdtemp(prefix="edgeops-bench-orch-"))
os.environ["PREFECT_HOME"] = str(TMP / "prefect")  # before prefect is imported
os.environ["EDGEOPS_HOME"] = str(TMP / "home")
for key in ("MLFLOW_TRACKING_URI", "EDGEOPS_STORE_URL", "PREFECT_API_URL"):
    os.environ.pop(key, None)
sys.path.insert(0, str(Path(__file__).resolve().parent))

import orchestration_flows as bf  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

console = Console()


def ephemeral(data: str, overrides: dict[str, Any], quick: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    console.print("warm-up (TensorFlow and Prefect first-call costs, not counted) ...")
    bf.plain(data, overrides, TMP / "warm")
    bf.noop_flow(5)
    t = time.perf_counter()
    out["plain"] = {"stages": bf.plain(data, overrides, TMP / "plain")}
    out["plain"]["wall"] = out["plain"]["work"] = time.perf_counter() - t
    console.print(f"plain calls: {out['plain']['wall']:.1f} s")
    # tracked twice: the first run also creates the MLflow database (migrations, once per home)
    for name, track in (("flow", False), ("flow+mlflow (new db)", True), ("flow+mlflow", True)):
        rep = bf.bench_pipeline(data, overrides, str(TMP / name.replace(" ", "_")), track=track)
        out[name] = rep
        console.print(f"{name}: {rep['wall']:.1f} s, work {rep['work']:.1f} s")
    n = 30 if quick else 100
    out["noop"] = bf.noop_flow(n)
    return out


def concurrency(overrides: dict[str, Any], workers: list[int]) -> dict[str, float]:
    from prefect.task_runners import ThreadPoolTaskRunner

    params = bf.load_params(overrides)
    prepared, model = TMP / "plain" / "prepared", TMP / "plain" / "model"
    from components.prepare import PreparedData

    prep = PreparedData.load(prepared)
    keras_model = bf.stages.load_model(model)
    t = time.perf_counter()
    for i, target in enumerate(bf.CONVERT_TARGETS):
        bf.stages.convert(keras_model, target, prep, params.convert, TMP / "seq" / str(i))
    out = {"sequential": time.perf_counter() - t}
    for k in workers:
        runner = bf.convert_flow.with_options(task_runner=ThreadPoolTaskRunner(max_workers=k))
        out[f"threads={k}"] = runner(str(model), str(prepared), overrides, str(TMP / f"conv{k}"),
                                     bf.CONVERT_TARGETS)
        console.print(f"convert {len(bf.CONVERT_TARGETS)} targets, {k} thread(s): {out[f'threads={k}']:.1f} s")
    return out


def logging_calls(data: str, overrides: dict[str, Any]) -> dict[str, int]:
    """The real release pipeline once: MLflow requests made vs one request per logged value."""
    from flows.release import release_pipeline
    from flows.tracking import LOG_CALLS

    LOG_CALLS.reset()
    t = time.perf_counter()
    release_pipeline(data, model_name="bench", overrides=overrides, rollout=False)
    return {"batched_requests": LOG_CALLS.batches, "values": LOG_CALLS.values, "artifact_uploads": LOG_CALLS.artifacts,
            "seconds": round(time.perf_counter() - t, 1)}


def on_server(data: str, overrides: dict[str, Any], n_noop: int) -> dict[str, Any]:
    """Deploy both bench flows to a process pool on a loopback server and run them on a worker."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from edgeops import services
    from edgeops.cli.ops import create_pool, flow_env, prefect_cli

    home, repo = TMP / "services", bf.REPO
    server = services.start(services.prefect_server_spec(home, services.free_port(), scheduler=False, ui=False),
                            home)
    started, out = [server], {}
    try:
        api = f"{server.url}/api"
        env = {**services.prefect_env(home, api), **flow_env(TMP / "home", repo, None)}
        create_pool(env, repo)
        started.append(services.start(services.worker_spec(home, api, "edgeops-process", env, services.free_port()),
                                      home))
        for fn in ("bench_pipeline", "noop_flow"):
            prefect_cli(["deploy", f"benchmarks/orchestration_flows.py:{fn}", "--name", "bench", "--pool",
                         "edgeops-process"], {**env, "EDGEOPS_REPO": str(repo)}, repo)
        runs = {"bench-pipeline/bench": {"data_dir": data, "overrides": overrides, "work_dir": str(TMP / "srv"),
                                         "report_path": str(TMP / "srv-pipeline.json")},
                "bench-noop/bench": {"n": n_noop, "report_path": str(TMP / "srv-noop.json")}}
        with temporary_settings(updates={PREFECT_API_URL: api}), get_client(sync_client=True) as client:
            for name, parameters in runs.items():
                t = time.perf_counter()
                run = run_deployment(name, parameters=parameters, timeout=0)
                while (state := client.read_flow_run(run.id).state) is None or not state.is_final():
                    time.sleep(0.5)
                out[name] = {"end_to_end": time.perf_counter() - t, "state": state.type.value}
        out["pipeline"] = json.loads((TMP / "srv-pipeline.json").read_text())
        out["noop"] = json.loads((TMP / "srv-noop.json").read_text())
    finally:
        for service in reversed(started):
            services.stop(service)
    return out


def report(res: dict[str, Any]) -> None:
    eph, work = res["ephemeral"], res["ephemeral"]["plain"]["work"]
    table = Table("mode", "wall s", "work s", "overhead s", "share of work", title="Orchestration + tracking overhead")
    rows = [("plain calls", eph["plain"]), ("Prefect ephemeral", eph["flow"]),
            ("Prefect ephemeral + MLflow, new db", eph["flow+mlflow (new db)"]),
            ("Prefect ephemeral + MLflow", eph["flow+mlflow"])]
    if "server" in res:
        rows.append(("server + worker (in the run)", res["server"]["pipeline"]))
    for name, rep in rows:
        over = rep["wall"] - rep["work"]
        table.add_row(name, f"{rep['wall']:.2f}", f"{rep['work']:.2f}", f"{over:.2f}", f"{over / rep['work']:.1%}")
    if "server" in res:
        e2e = res["server"]["bench-pipeline/bench"]["end_to_end"]
        table.add_row("server + worker (end to end)", f"{e2e:.2f}", f"{work:.2f}", f"{e2e - work:.2f}",
                      f"{(e2e - work) / work:.1%}")
    console.print(table)
    t2 = Table("engine", "tasks", "s per task", title="Per-task overhead (anchor: ~0.1 s on Prefect 2.14)")
    t2.add_row("ephemeral", str(eph["noop"]["n"]), f"{eph['noop']['seconds'] / eph['noop']['n']:.4f}")
    if "server" in res:
        sn = res["server"]["noop"]
        t2.add_row("server + worker", str(sn["n"]), f"{sn['seconds'] / sn['n']:.4f}")
    console.print(t2)
    lc = res["logging"]
    console.print(f"MLflow requests per release run: {lc['batched_requests']} log_batch calls for {lc['values']} "
                  f"values (one request per value: {lc['values']}; {lc['values'] / max(lc['batched_requests'], 1):.0f}x "
                  f"fewer), plus {lc['artifact_uploads']} artifact uploads either way")
    conv = res["convert"]
    t3 = Table("conversion", "wall s", "speed-up", title=f"{len(bf.CONVERT_TARGETS)} targets, 2 cores")
    for name, sec in conv.items():
        t3.add_row(name, f"{sec:.2f}", f"{conv['sequential'] / sec:.2f}x")
    console.print(t3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="Fewer images and epochs.")
    ap.add_argument("--no-server", action="store_true", help="Skip the prefect server + worker mode.")
    ap.add_argument("--workers", default="1,2,4", help="Thread counts for concurrent conversion.")
    ap.add_argument("--images", type=int, help="prepare.max_images (default: 300 quick, 600).")
    ap.add_argument("--epochs", type=int, help="train.epochs (default: 2 quick, 4).")
    ap.add_argument("--json", type=Path, default=bf.REPO / "build" / "bench" / "orchestration.json")
    args = ap.parse_args()
    from components.data import write_example_digits

    data = str(TMP / "digits")
    write_example_digits(Path(data))
    overrides = bf.tiny_overrides(args.quick)
    if args.images:
        overrides["prepare"]["max_images"] = args.images
    if args.epochs:
        overrides["train"]["epochs"] = args.epochs
    res: dict[str, Any] = {"overrides": overrides, "ephemeral": ephemeral(data, overrides, args.quick)}
    res["convert"] = concurrency(overrides, [int(k) for k in args.workers.split(",")])
    res["logging"] = logging_calls(data, overrides)
    if not args.no_server:
        res["server"] = on_server(data, overrides, res["ephemeral"]["noop"]["n"])
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(res, indent=2, default=str))
    report(res)
    console.print(f"raw numbers: {args.json}; scratch: {TMP}")


if __name__ == "__main__":
    main()

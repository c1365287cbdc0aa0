"""`edgeops up` / `edgeops down`: the scale path on one machine, on loopback.

`up` starts a `prefect server`, an `mlflow server` (SQLite by default; PostgreSQL and S3 when
asked), creates the process work pool, starts a worker for it and runs `prefect deploy --all`
from `prefect.yaml`; `down` stops, by the process ids recorded under `<EDGEOPS_HOME>/run/`,
whatever `up` started. The helpers below are the ones the integration tests use too.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from edgeops import services
from edgeops.console import make_console
from edgeops.services import Service, ServiceError

console = make_console()
POOL = "edgeops-process"
STOP_ORDER = ["prefect-worker", "mlflow-server", "prefect-server", "postgres", "s3-server"]


def register_ops_commands(app: typer.Typer) -> None:
    app.command("up")(up)
    app.command("down")(down)


def repo_root(start: Path | None = None) -> Path:
    """The checkout whose prefect.yaml the worker runs flows from (the cwd or a parent)."""
    here = (start or Path.cwd()).resolve()
    for path in [here, *here.parents]:
        if (path / "prefect.yaml").exists():
            return path
    raise ServiceError("prefect.yaml not found in this folder or its parents; run from the checkout",
                       where=str(here))


def prefect_cli(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 300.0) -> str:
    """Run a `prefect` command against the stack's API; one readable line if it fails."""
    proc = subprocess.run([services.bin_path("prefect"), "--no-prompt", *args], cwd=cwd, capture_output=True,
                          text=True, env={**os.environ, **env}, timeout=timeout)
    if proc.returncode != 0:
        tail = " | ".join(line.strip() for line in (proc.stdout + proc.stderr).strip().splitlines()[-4:])
        raise ServiceError(f"prefect {' '.join(args[:2])} failed: {tail}", where=str(cwd))
    return proc.stdout


def create_pool(env: dict[str, str], cwd: Path, pool: str = POOL) -> None:
    """Create the process work pool; an existing pool of that name is kept as it is."""
    try:
        prefect_cli(["work-pool", "inspect", pool], env, cwd)
    except ServiceError:
        prefect_cli(["work-pool", "create", pool, "--type", "process"], env, cwd)


def deploy(env: dict[str, str], repo: Path, names: list[str] | None = None) -> str:
    """`prefect deploy --all` (or `--name` each) from the checkout's prefect.yaml.

    EDGEOPS_REPO is set at deploy time so the pull step's `{{ $EDGEOPS_REPO }}` is stored as the
    checkout's absolute path: flow runs start there whatever the worker's own directory is.
    """
    selection = ["--all"] if not names else [a for n in names for a in ("--name", n)]
    return prefect_cli(["deploy", *selection, "--prefect-file", str(repo / "prefect.yaml")],
                       {**env, "EDGEOPS_REPO": str(repo)}, repo)


def flow_env(home: Path, repo: Path, mlflow_url: str | None) -> dict[str, str]:
    """What a flow run on the worker needs beyond the inherited environment."""
    env = {"EDGEOPS_HOME": str(home), "EDGEOPS_REPO": str(repo), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    if mlflow_url:
        env["MLFLOW_TRACKING_URI"] = mlflow_url
    return env


def s3_server_env() -> dict[str, str]:
    """The MLflow server writes artifacts to S3 itself: hand it the endpoint (MinIO, moto)."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("MLFLOW_S3_ENDPOINT_URL")
    return {"MLFLOW_S3_ENDPOINT_URL": endpoint} if endpoint else {}


def up(
    prefect_port: Annotated[int, typer.Option(help="Prefect server port on 127.0.0.1.")] = 4200,
    mlflow_port: Annotated[int, typer.Option(help="MLflow server port on 127.0.0.1.")] = 5000,
    backend_store_uri: Annotated[str | None, typer.Option(
        help="MLflow backend store (postgresql://...); default: the embedded SQLite file.")] = None,
    artifacts_destination: Annotated[str | None, typer.Option(
        help="Where the MLflow server puts artifacts (s3://bucket/prefix); default: <home>/mlartifacts.")] = None,
    postgres: Annotated[bool, typer.Option(
        help="Start a local PostgreSQL cluster under <home>/postgres for the MLflow backend.")] = False,
    prefect_postgres: Annotated[bool, typer.Option(
        help="With --postgres: Prefect's own database on that PostgreSQL too (default: SQLite).")] = False,
    s3: Annotated[bool, typer.Option(
        help="Start a local S3 server (moto) on loopback for MLflow artifacts and the object store.")] = False,
    s3_port: Annotated[int, typer.Option(help="Port for --s3.")] = 5055,
    postgres_port: Annotated[int, typer.Option(help="Port for --postgres.")] = 5433,
    pool: Annotated[str, typer.Option(help="Work pool the deployments target.")] = POOL,
    do_deploy: Annotated[bool, typer.Option("--deploy/--no-deploy", help="Run `prefect deploy --all`.")] = True,
    schedule_timeout: Annotated[float, typer.Option(
        help="Seconds to wait for every scheduled deployment to show upcoming runs.")] = 60.0,
) -> None:
    """Start Prefect server, a process worker and MLflow server on loopback; deploy prefect.yaml.

    `--postgres --s3` is the full stack: PostgreSQL for MLflow (and, with --prefect-postgres, for
    Prefect), S3 artifacts and the object store on a local S3 server. Fails, after stopping what it
    started, if a scheduled deployment has no upcoming run or the scheduler logs errors.
    """
    from edgeops.settings import Settings

    settings = Settings.from_env()
    home, repo = settings.ensure_home(), repo_root()
    started: list[Service] = []
    try:
        store_env: dict[str, str] = {}
        if s3:
            store_env = _start_s3(home, s3_port, started)
            os.environ.update(store_env)  # this command's own clients (the store check) use it too
            artifacts_destination = artifacts_destination or f"s3://{S3_BUCKET}/mlartifacts"
        prefect_db: str | None = None
        if postgres:
            backend_store_uri = _start_postgres(home, postgres_port, started)
            if prefect_postgres:
                prefect_db = _prefect_database(postgres_port)
        backend = backend_store_uri or f"sqlite:///{home / 'mlflow.db'}"
        artifacts = artifacts_destination or str(home / "mlartifacts")
        console.print(f"starting prefect server ({'postgresql' if prefect_db else 'sqlite'}) ...")
        started.append(services.start(services.prefect_server_spec(home, prefect_port, database_url=prefect_db),
                                      home))
        prefect_url = started[-1].url
        api_url = f"{prefect_url}/api"
        penv = services.prefect_env(home, api_url)
        create_pool(penv, repo, pool)
        console.print(f"starting mlflow server ({backend.split(':')[0]}, artifacts in {artifacts}) ...")
        started.append(services.start(services.mlflow_server_spec(mlflow_port, backend, artifacts,
                                                                  {**s3_server_env(), **store_env}), home))
        mlflow_url = started[-1].url
        refuse_store_without_registry(Settings.from_env(), mlflow_url or "")
        env = {**flow_env(home, repo, mlflow_url), **store_env}
        ensure_example_data(repo)
        console.print(f"starting a process worker for pool {pool} ...")
        started.append(services.start(services.worker_spec(home, api_url, pool, env, services.free_port()), home))
        if do_deploy:
            console.print("deploying prefect.yaml ...")
            deploy({**penv, **env}, repo)
            console.print("checking that the scheduler plans the scheduled deployments ...")
            upcoming = verify_schedules(api_url, started[_index(started, "prefect-server")].log,
                                        schedule_timeout)
            for name, when in sorted(upcoming.items()):
                console.print(f"  {name}: next run {when}", highlight=False)
    except BaseException:
        for service in reversed(started):
            services.stop(service)
        raise
    console.print(f"\n[bold]Prefect UI[/]  {prefect_url}")
    console.print(f"[bold]MLflow UI[/]   {mlflow_url}")
    console.print(f"logs in {home / 'logs'}; stop with `edgeops down`. To run flows against this stack:")
    exports = {"PREFECT_API_URL": api_url, "MLFLOW_TRACKING_URI": mlflow_url or "", **store_env}
    # print(), not rich: an export line must never be wrapped (copy-paste would lose a variable)
    print("  export " + " ".join(f"{k}={v}" for k, v in exports.items()), flush=True)


S3_BUCKET = "edgeops"


def _index(started: list[Service], name: str) -> int:
    return next(i for i, s in enumerate(started) if s.name == name)


def _start_s3(home: Path, port: int, started: list[Service]) -> dict[str, str]:
    """moto's S3 server on loopback (the same wire protocol as S3 or MinIO) with the bucket made;
    returns what clients need: endpoint, credentials and the store URL."""
    import boto3

    console.print(f"starting a local S3 server (moto) on 127.0.0.1:{port} ...")
    started.append(services.start(services.s3_server_spec(port), home))
    endpoint = f"http://127.0.0.1:{port}"
    env = {"AWS_ENDPOINT_URL": endpoint, "MLFLOW_S3_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "edgeops",
           "AWS_SECRET_ACCESS_KEY": "edgeops-local", "AWS_DEFAULT_REGION": "us-east-1",
           "EDGEOPS_STORE_URL": f"s3://{S3_BUCKET}/store"}
    s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"], region_name="us-east-1")
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if S3_BUCKET not in existing:
        s3.create_bucket(Bucket=S3_BUCKET)
    return env


def _prefect_database(port: int) -> str:
    from edgeops import postgres

    postgres.create_database(port, "prefect")
    return postgres.database_uri(port, "prefect", "asyncpg")


def refuse_store_without_registry(settings: Any, mlflow_url: str) -> None:
    """An object store that already holds releases next to an empty MLflow registry means the
    registry was switched (e.g. SQLite to PostgreSQL) and would disagree with what devices run."""
    from mlflow import MlflowClient

    store = settings.store()
    if not store.list("tuf/targets/bundles/"):  # bundle files are TUF targets (docs/protocol.md)
        return
    if MlflowClient(tracking_uri=mlflow_url, registry_uri=mlflow_url).search_registered_models(max_results=1):
        return
    raise ServiceError(
        f"the object store {settings.store_url} already holds published bundles but the MLflow registry "
        "is empty; start with the registry that published them, or use a new EDGEOPS_HOME/EDGEOPS_STORE_URL",
        where=mlflow_url)


def ensure_example_data(repo: Path) -> None:
    """The release and retrain deployments default to data/digits in the checkout: make it if missing."""
    data = repo / "data" / "digits"
    if data.exists():
        return
    from components.data import write_example_digits

    console.print(f"writing the example data set to {data} (the deployments' default data_dir) ...")
    write_example_digits(data)


def verify_schedules(api_url: str, server_log: Path, timeout: float = 60.0) -> dict[str, str]:
    """Wait until every deployment with an active schedule has an upcoming scheduled run.

    Fails with one line naming the deployments without one, or the scheduler's error from the
    server log (a scheduler that raises on every pass plans nothing, and the UI would not say so).
    Returns {deployment: next scheduled start}.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.settings import PREFECT_API_URL, temporary_settings

    offset = server_log.stat().st_size if server_log.exists() else 0
    deadline = time.monotonic() + timeout
    with temporary_settings(updates={PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        scheduled = {d.id: d.name for d in client.read_deployments()
                     if any(s.active for s in (d.schedules or []))}
        upcoming: dict[str, str] = {}
        while True:
            for dep_id, name in scheduled.items():
                if name in upcoming:
                    continue
                runs = client.read_flow_runs(
                    deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[dep_id])),
                    flow_run_filter=FlowRunFilter(state=FlowRunFilterState(
                        type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))),
                    sort=FlowRunSort.EXPECTED_START_TIME_ASC, limit=1)
                if runs:
                    upcoming[name] = f"{runs[0].expected_start_time:%Y-%m-%d %H:%M:%S %Z}"
            error = scheduler_error(server_log, offset)
            if error:
                raise ServiceError(f"the Prefect scheduler fails: {error}", where=str(server_log))
            missing = sorted(set(scheduled.values()) - set(upcoming))
            if not missing:
                return upcoming
            if time.monotonic() > deadline:
                raise ServiceError(f"no upcoming scheduled run after {timeout:.0f}s for: {', '.join(missing)}",
                                   where=api_url)
            time.sleep(2)


SCHEDULER_ERRORS = ("InvalidRequestError", "_insert_scheduled_flow_runs", "Unexpected error in: SchedulerService")


def scheduler_error(server_log: Path, offset: int = 0) -> str | None:
    """The first scheduler error the server logged after `offset` bytes, as one line."""
    try:
        with open(server_log, "rb") as fh:
            fh.seek(offset)
            text = fh.read().decode(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if any(marker in line for marker in SCHEDULER_ERRORS):
            return line.strip()[:300]
    return None


def _start_postgres(home: Path, port: int, started: list[Service]) -> str:
    from edgeops import postgres

    root = home / "postgres"
    if not (root / "data" / "PG_VERSION").exists():
        postgres.init_cluster(root)
    console.print(f"starting postgresql on 127.0.0.1:{port} ...")
    started.append(services.start(postgres.postgres_spec(root, port), home))
    return postgres.create_database(port, "mlflow")


def down() -> None:
    """Stop, by recorded process id, everything `edgeops up` started."""
    from edgeops.settings import Settings

    home = Settings.from_env().home
    stopped = services.stop_recorded(home, STOP_ORDER)
    console.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")

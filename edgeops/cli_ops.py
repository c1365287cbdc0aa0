"""`edgeops up` / `edgeops down`: the scale path on one machine, on loopback.

`up` starts a `prefect server`, an `mlflow server` (SQLite by default; PostgreSQL and S3 when
asked), creates the process work pool, starts a worker for it and runs `prefect deploy --all`
from `prefect.yaml`; `down` stops, by the process ids recorded under `<EDGEOPS_HOME>/run/`,
whatever `up` started. The helpers below are the ones the integration tests use too.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from edgeops import services
from edgeops.services import Service, ServiceError

console = Console()
POOL = "edgeops-process"
STOP_ORDER = ["prefect-worker", "mlflow-server", "prefect-server", "postgres"]


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
    postgres_port: Annotated[int, typer.Option(help="Port for --postgres.")] = 5433,
    pool: Annotated[str, typer.Option(help="Work pool the deployments target.")] = POOL,
    do_deploy: Annotated[bool, typer.Option("--deploy/--no-deploy", help="Run `prefect deploy --all`.")] = True,
) -> None:
    """Start Prefect server, a process worker and MLflow server on loopback; deploy prefect.yaml."""
    from edgeops.settings import Settings

    settings = Settings.from_env()
    home, repo = settings.ensure_home(), repo_root()
    started: list[Service] = []
    try:
        if postgres:
            backend_store_uri = _start_postgres(home, postgres_port, started)
        backend = backend_store_uri or f"sqlite:///{home / 'mlflow.db'}"
        artifacts = artifacts_destination or str(home / "mlartifacts")
        console.print("starting prefect server ...")
        started.append(services.start(services.prefect_server_spec(home, prefect_port), home))
        prefect_url = started[-1].url
        api_url = f"{prefect_url}/api"
        penv = services.prefect_env(home, api_url)
        create_pool(penv, repo, pool)
        console.print(f"starting mlflow server ({backend.split(':')[0]}, artifacts in {artifacts}) ...")
        started.append(services.start(services.mlflow_server_spec(mlflow_port, backend, artifacts,
                                                                  s3_server_env()), home))
        mlflow_url = started[-1].url
        env = flow_env(home, repo, mlflow_url)
        console.print(f"starting a process worker for pool {pool} ...")
        started.append(services.start(services.worker_spec(home, api_url, pool, env, services.free_port()), home))
        if do_deploy:
            console.print("deploying prefect.yaml ...")
            deploy({**penv, **env}, repo)
    except BaseException:
        for service in reversed(started):
            services.stop(service)
        raise
    console.print(f"\n[bold]Prefect UI[/]  {prefect_url}")
    console.print(f"[bold]MLflow UI[/]   {mlflow_url}")
    console.print(f"logs in {home / 'logs'}; stop with `edgeops down`. To run flows against this stack:")
    console.print(f"  export PREFECT_API_URL={api_url} MLFLOW_TRACKING_URI={mlflow_url}", highlight=False)


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

"""Real servers on loopback for the scale path: PostgreSQL, `mlflow server` on PostgreSQL + S3
(moto), `prefect server` with a process worker. Every fixture stops what it started and asserts,
at teardown, that no process of it is left.
"""

from __future__ import annotations

import importlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from scale_stack import REPO, MlflowServer, PrefectStack

from edgeops import postgres, services
from edgeops.cli.ops import create_pool, flow_env


@pytest.fixture(autouse=True)
def isolated_prefect_home(tmp_path: Path) -> Iterator[Path]:
    """The test process's own Prefect state (ephemeral API database) in a temp dir, not ~/.prefect."""
    importlib.import_module("flows")  # sets Prefect's defaults before prefect is first imported
    from prefect.settings import PREFECT_HOME, temporary_settings

    home = tmp_path / "prefect-home"
    home.mkdir()
    with temporary_settings(updates={PREFECT_HOME: home}):
        yield home


@pytest.fixture(autouse=True)
def restore_mlflow_uris(monkeypatch: pytest.MonkeyPatch) -> None:
    """Flows set MLflow's process-wide tracking/registry URIs; put them back after each test so a
    later test does not talk to a server this one stopped."""
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    monkeypatch.setattr(tracking_utils, "_tracking_uri", tracking_utils._tracking_uri)
    monkeypatch.setattr(registry_utils, "_registry_uri", registry_utils._registry_uri)


def _stop_and_check(service: services.Service) -> None:
    services.stop(service)
    assert not service.alive(), f"{service.name} (pid group {service.pid}) still has processes"
    assert not service.pidfile.exists()


@pytest.fixture
def services_home(tmp_path: Path) -> Path:
    """Where fixtures keep logs and pid files (kept after the test for reading)."""
    home = tmp_path / "services"
    home.mkdir()
    return home


@pytest.fixture
def postgres_uri(services_home: Path) -> Iterator[str]:
    """A fresh PostgreSQL cluster in a world-searchable temp dir (the server runs as `nobody` when
    we are root); yields the URI of an empty `mlflow` database."""
    root = Path(tempfile.mkdtemp(prefix="edgeops-pg-", dir="/tmp"))
    try:
        postgres.init_cluster(root)
        port = services.free_port()
        server = services.start(postgres.postgres_spec(root, port, fast=True), services_home, timeout=60)
        try:
            yield postgres.create_database(port, "mlflow")
        finally:
            _stop_and_check(server)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def mlflow_server(postgres_uri: str, s3_env: dict[str, str], services_home: Path) -> Iterator[MlflowServer]:
    """`mlflow server` with the PostgreSQL backend store and proxied artifacts on moto's S3."""
    bucket = s3_env["EDGEOPS_STORE_URL"].removeprefix("s3://").split("/")[0]
    destination = f"s3://{bucket}/mlartifacts"
    env = {k: v for k, v in s3_env.items() if k.startswith("AWS_")}
    env["MLFLOW_S3_ENDPOINT_URL"] = s3_env["AWS_ENDPOINT_URL"]
    spec = services.mlflow_server_spec(services.free_port(), postgres_uri, destination, env)
    server = services.start(spec, services_home, timeout=180)
    try:
        yield MlflowServer(server.url or "", bucket, destination, postgres_uri)
    finally:
        _stop_and_check(server)


@pytest.fixture
def prefect_stack(services_home: Path, tmp_path: Path) -> Iterator[PrefectStack]:
    """`prefect server` (no scheduler: only the runs a test creates) and a process worker for the
    `edgeops-process` pool, whose flow runs keep all state under `tmp_path/edgeops`."""
    yield from _prefect_stack(services_home, tmp_path, scheduler=False)


@pytest.fixture
def scheduled_prefect_stack(services_home: Path, tmp_path: Path) -> Iterator[PrefectStack]:
    """The same with the server's scheduler on (a short loop, so a test does not wait a minute)."""
    yield from _prefect_stack(services_home, tmp_path, scheduler=True)


def _prefect_stack(services_home: Path, tmp_path: Path, scheduler: bool) -> Iterator[PrefectStack]:
    edgeops_home = tmp_path / "edgeops"
    spec = services.prefect_server_spec(services_home, services.free_port(), scheduler=scheduler, ui=False,
                                        scheduler_loop_seconds=5 if scheduler else None)
    server = services.start(spec, services_home, timeout=240)
    worker = None
    try:
        api_url = f"{server.url}/api"
        env = {**services.prefect_env(services_home, api_url), **flow_env(edgeops_home, REPO, None),
               "PREFECT_LOGGING_LEVEL": "INFO",
               # blank = the embedded defaults under EDGEOPS_HOME, whatever the test process has
               "MLFLOW_TRACKING_URI": "", "EDGEOPS_STORE_URL": ""}
        create_pool(env, REPO)
        worker = services.start(services.worker_spec(services_home, api_url, "edgeops-process", env,
                                                     services.free_port()), services_home, timeout=180)
        yield PrefectStack(api_url, services_home, env, worker, server)
    finally:
        if worker is not None:
            _stop_and_check(worker)
        _stop_and_check(server)

"""`edgeops up`'s own checks: scheduler errors in the server log, a store without its registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeops.cli.ops import refuse_store_without_registry, scheduler_error
from edgeops.services import ServiceError, mlflow_server_spec, prefect_server_spec, worker_spec

SCHEDULER_TRACE = (
    "10:01:02.003 | ERROR   | prefect.server.services.scheduler - Unexpected error in: SchedulerService\n"
    "sqlalchemy.exc.InvalidRequestError: Can't evaluate bulk DML statement\n"
)


def test_scheduler_error_found_after_offset(tmp_path: Path) -> None:
    log = tmp_path / "prefect-server.log"
    log.write_text("INFO startup\n" + SCHEDULER_TRACE)
    assert "SchedulerService" in (scheduler_error(log) or "")
    assert scheduler_error(log, offset=log.stat().st_size) is None  # only what came after
    assert scheduler_error(tmp_path / "missing.log") is None


def test_clean_log_has_no_scheduler_error(tmp_path: Path) -> None:
    log = tmp_path / "prefect-server.log"
    log.write_text("INFO | Uvicorn running\nINFO | scheduled 3 runs\n")
    assert scheduler_error(log) is None


def test_store_with_bundles_and_an_empty_registry_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeops.settings import Settings

    monkeypatch.setenv("EDGEOPS_HOME", str(tmp_path / "home"))
    settings = Settings.from_env()
    uri = settings.mlflow_tracking_uri
    refuse_store_without_registry(settings, uri)  # empty store: nothing to disagree with
    settings.store().put("tuf/targets/bundles/abc/" + "0" * 64 + ".model.tflite", b"x")
    with pytest.raises(ServiceError, match="already holds published bundles"):
        refuse_store_without_registry(settings, uri)
    from mlflow import MlflowClient

    MlflowClient(tracking_uri=uri, registry_uri=uri).create_registered_model("digits-tflite-int8")
    refuse_store_without_registry(settings, uri)  # the registry that published them


def test_stack_processes_log_at_info_and_mlflow_runs_no_job_runner(tmp_path: Path) -> None:
    server = prefect_server_spec(tmp_path, 4999, database_url="postgresql+asyncpg://u@127.0.0.1:5/prefect")
    assert server.env["PREFECT_LOGGING_LEVEL"] == "INFO"
    assert server.env["PREFECT_API_DATABASE_CONNECTION_URL"].startswith("postgresql+asyncpg://")
    worker = worker_spec(tmp_path, "http://127.0.0.1:4999/api", "pool", {"PREFECT_LOGGING_LEVEL": "WARNING"}, 5)
    assert worker.env["PREFECT_LOGGING_LEVEL"] == "INFO"  # a quiet shell does not silence flow runs
    assert mlflow_server_spec(5000, "sqlite:///x.db", "/tmp/a").env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"

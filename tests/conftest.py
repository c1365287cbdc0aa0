"""Shared fixtures. Tests mirror the packages: tests/<package>/test_<module>.py."""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's standalone S3 server in its own process on loopback (the real wire protocol)."""
    port = free_port()
    moto_bin = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen(
        [str(moto_bin), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def s3_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Credentials and endpoint for boto3 against moto; a fresh bucket name per test."""
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": s3_endpoint,
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    import boto3

    bucket = f"edgeops-test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket)
    env["EDGEOPS_STORE_URL"] = f"s3://{bucket}/edgeops"
    return env


def pytest_configure(config: pytest.Config) -> None:
    """Prefect's state for the whole test session in a temporary directory, set before any
    test module imports prefect (it reads its settings on import)."""
    import tempfile

    # Each pytest-xdist worker gets its own (they inherit the controller's environment, and two
    # ephemeral Prefect servers on one SQLite file would lock each other out); a PREFECT_HOME the
    # user set is kept.
    if os.environ.get("PREFECT_HOME") in (None, os.environ.get("EDGEOPS_TEST_PREFECT_HOME")):
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        home = Path(tempfile.mkdtemp(prefix=f"edgeops-test-prefect-{worker}-"))
        os.environ["PREFECT_HOME"] = os.environ["EDGEOPS_TEST_PREFECT_HOME"] = str(home)
    if "PYTEST_XDIST_WORKER" in os.environ:
        # Two workers on two cores: one TensorFlow/OpenMP thread each (the servers and workers
        # the tests start inherit it), instead of each spinning a pool as wide as the machine.
        for var in ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS"):
            os.environ.setdefault(var, "1")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")


@pytest.fixture(autouse=True)
def _mlflow_uris_per_test() -> Iterator[None]:
    """`mlflow.set_tracking_uri` writes MLFLOW_TRACKING_URI into os.environ (MLflow 3, for
    subprocesses): without this, the next test's Settings.from_env would read the previous
    test's tracking store and its searches would find that test's runs."""
    saved = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    mlflow = sys.modules.get("mlflow")
    if mlflow is not None:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    if saved is not None:
        os.environ["MLFLOW_TRACKING_URI"] = saved


# Scheduling only (never correctness): `make test` runs two pytest-xdist workers that take tests
# one at a time from the head of the list, so the longest go first and the short ones fill in
# around them. Measured on 2 cores; a stale entry only costs time.
LONGEST_FIRST = (
    "tests/flows/test_release_loop.py",
    "tests/integration/test_prefect_server.py",
    "tests/flows/test_server_cohort.py",
    "tests/integration/test_prefect_schedules.py",
    "tests/integration/test_mlflow_server.py",
    "tests/components/test_structured_pruning.py",
    "tests/registry/test_serving.py",
    "tests/components/test_training.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::")[0]
        if path in LONGEST_FIRST:
            return LONGEST_FIRST.index(path)
        return len(LONGEST_FIRST) + (0 if item.get_closest_marker("slow") else 1)

    items.sort(key=rank)  # stable: within a rank, the collection order (fixture reuse) is kept

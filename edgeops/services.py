"""Local services on loopback for the scale path: start, wait until ready, stop by process id.

`edgeops up` and the integration tests start a `prefect server`, a process worker, an
`mlflow server` (and PostgreSQL, see edgeops/postgres.py) the same way: each in its own session
(process group) so that stopping it also stops the children it forks (uvicorn workers, flow-run
processes), with its log under `<home>/logs/<name>.log` and a pid file under
`<home>/run/<name>.json` so that a later `edgeops down`, in another process, can stop it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from edgeops.errors import EdgeOpsError


class ServiceError(EdgeOpsError):
    """A local service did not start, did not become ready, or would not stop."""

    exit_code = 14


@dataclass(frozen=True)
class ServiceSpec:
    """What to run: argv, extra environment, and how to tell it is ready (HTTP 200 or a TCP port)."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    health_url: str | None = None
    port: int | None = None
    cwd: Path | None = None
    stop_signal: int = signal.SIGTERM
    url: str | None = None  # what to show a user (the UI address)


@dataclass
class Service:
    """A started service. `proc` is set in the process that started it (so it can reap it)."""

    name: str
    pid: int
    log: Path
    pidfile: Path
    url: str | None = None
    stop_signal: int = signal.SIGTERM
    proc: subprocess.Popen[bytes] | None = None

    def alive(self) -> bool:
        """True while any process of its group is left (a zombie child counts until reaped)."""
        if self.proc is not None:
            self.proc.poll()
        else:  # started by this process without the Popen at hand (stop_recorded): reap if ours
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.pid, os.WNOHANG)
        return group_alive(self.pid)


def bin_path(name: str) -> str:
    """A console script of this environment (prefect, mlflow) next to the running interpreter."""
    candidate = Path(sys.executable).with_name(name)
    return str(candidate) if candidate.exists() else name


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (loopback only)
            return 200 <= resp.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def start(spec: ServiceSpec, home: Path, timeout: float = 180.0) -> Service:
    """Start `spec` in a new session, record its pid, and wait until it answers.

    If it exits or does not answer in `timeout` seconds it is stopped and a ServiceError names
    the service and the last lines of its log.
    """
    logs, run = home / "logs", home / "run"
    logs.mkdir(parents=True, exist_ok=True)
    run.mkdir(parents=True, exist_ok=True)
    log = logs / f"{spec.name}.log"
    pidfile = run / f"{spec.name}.json"
    previous = int(_read_pidfile(pidfile).get("pid") or 0) if pidfile.exists() else 0
    if previous > 0 and group_alive(previous):
        raise ServiceError(f"{spec.name} is already running; stop it first (edgeops down)", where=str(pidfile))
    if spec.port is not None and port_open(spec.port):
        raise ServiceError(f"port {spec.port} for {spec.name} is already in use", where="127.0.0.1")
    env = {**os.environ, **spec.env}
    with open(log, "ab") as out:
        try:
            proc = subprocess.Popen(
                spec.argv, cwd=spec.cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        except OSError as exc:
            raise ServiceError(f"cannot start {spec.name}: {exc}", where=spec.argv[0]) from exc
    service = Service(spec.name, proc.pid, log, pidfile, spec.url, spec.stop_signal, proc)
    pidfile.write_text(json.dumps({"name": spec.name, "pid": proc.pid, "argv": spec.argv, "url": spec.url,
                                   "log": str(log), "stop_signal": int(spec.stop_signal)}))
    try:
        wait_ready(service, spec, timeout)
    except ServiceError:
        stop(service)
        raise
    return service


def wait_ready(service: Service, spec: ServiceSpec, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.proc is not None and service.proc.poll() is not None:
            raise ServiceError(f"{spec.name} exited with {service.proc.returncode}: {log_tail(service.log)}",
                               where=str(service.log))
        if spec.health_url and http_ok(spec.health_url):
            return
        if spec.health_url is None and spec.port is not None and port_open(spec.port):
            return
        if spec.health_url is None and spec.port is None:
            return
        time.sleep(0.25)
    raise ServiceError(f"{spec.name} not ready after {timeout:.0f}s: {log_tail(service.log)}", where=str(service.log))


def log_tail(log: Path, lines: int = 5) -> str:
    try:
        text = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(line.strip() for line in text[-lines:])


def stop(service: Service, timeout: float = 20.0) -> None:
    """Signal the whole process group, wait, then SIGKILL what is left; remove the pid file."""
    _signal_group(service.pid, service.stop_signal)
    deadline = time.monotonic() + timeout
    while service.alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    if service.alive():
        _signal_group(service.pid, signal.SIGKILL)
        deadline = time.monotonic() + 5.0
        while service.alive() and time.monotonic() < deadline:
            time.sleep(0.1)
    if service.alive():
        raise ServiceError(f"{service.name} (pid {service.pid}) would not stop", where=str(service.pidfile))
    service.pidfile.unlink(missing_ok=True)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _read_pidfile(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def recorded(home: Path) -> list[Service]:
    """Services whose pid files are under `<home>/run/` (started by an earlier `edgeops up`)."""
    services = []
    for path in sorted((home / "run").glob("*.json")):
        data = _read_pidfile(path)
        if "pid" in data:
            services.append(Service(data["name"], int(data["pid"]), Path(data.get("log", "")), path,
                                    data.get("url"), int(data.get("stop_signal", signal.SIGTERM))))
    return services


def stop_recorded(home: Path, order: list[str] | None = None, timeout: float = 20.0) -> list[str]:
    """Stop every recorded service (those named in `order` first, in that order); stale pid files go."""
    services = recorded(home)
    rank = {name: i for i, name in enumerate(order or [])}
    services.sort(key=lambda s: rank.get(s.name, len(rank)))
    stopped = []
    for service in services:
        if not _is_ours(service):
            service.pidfile.unlink(missing_ok=True)
            continue
        stop(service, timeout)
        stopped.append(service.name)
    return stopped


def _is_ours(service: Service) -> bool:
    """The pid is alive and still runs what we recorded (pids get reused after a reboot)."""
    if not group_alive(service.pid):
        return False
    argv = _read_pidfile(service.pidfile).get("argv") or []
    try:
        cmdline = Path(f"/proc/{service.pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no /proc (macOS): trust the pid file
    names = {Path(a).name.encode() for a in argv if a and not a.startswith("-")}
    return any(Path(part.decode(errors="replace")).name.encode() in names for part in cmdline[:3])


# --- the services edgeops runs -------------------------------------------------------------
def prefect_server_spec(home: Path, port: int, *, scheduler: bool = True, ui: bool = True,
                        database_url: str | None = None, scheduler_loop_seconds: float | None = None) -> ServiceSpec:
    """`prefect server start` on loopback; its database is SQLite under `<home>/prefect` unless
    `database_url` (postgresql+asyncpg://...) is given."""
    argv = [bin_path("prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port),
            "--analytics-off", "--scheduler" if scheduler else "--no-scheduler", "--ui" if ui else "--no-ui"]
    url = f"http://127.0.0.1:{port}"
    env = prefect_env(home, f"{url}/api")
    if database_url:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url
    if scheduler_loop_seconds is not None:
        env["PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS"] = str(scheduler_loop_seconds)
    return ServiceSpec("prefect-server", argv, env, f"{url}/api/health", port, url=url)


def s3_server_spec(port: int) -> ServiceSpec:
    """moto's standalone S3 server on loopback: the S3 wire protocol, conditional writes included."""
    argv = [bin_path("moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    url = f"http://127.0.0.1:{port}"
    return ServiceSpec("s3-server", argv, {}, f"{url}/moto-api/", port, url=url)


def prefect_env(home: Path, api_url: str) -> dict[str, str]:
    """What every Prefect process of this stack shares: its own PREFECT_HOME, the server's API."""
    return {"PREFECT_HOME": str(home / "prefect"), "PREFECT_API_URL": api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false", **SERVER_LOGGING}


# Processes of the stack log at INFO, whatever quiet default the shell that ran `edgeops up` had:
# flow-run logs (log_prints included) must reach the Prefect UI, and the worker's log must say
# what it submitted and how it ended. Third-party noise is filtered at its source instead
# (TF_CPP_MIN_LOG_LEVEL, and flows.logs for absl and TensorFlow's Python loggers).
SERVER_LOGGING = {"PREFECT_LOGGING_LEVEL": "INFO", "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "INFO",
                  "TF_CPP_MIN_LOG_LEVEL": "3"}


def worker_spec(home: Path, api_url: str, pool: str, env: dict[str, str], health_port: int,
                name: str = "edgeops-worker") -> ServiceSpec:
    """A process worker for `pool`; `env` reaches every flow run it starts (MLflow, store, repo)."""
    argv = [bin_path("prefect"), "worker", "start", "--pool", pool, "--type", "process", "--name", name,
            "--with-healthcheck", "--install-policy", "never"]
    worker_env = {**env, **prefect_env(home, api_url),
                  "PREFECT_WORKER_WEBSERVER_HOST": "127.0.0.1", "PREFECT_WORKER_WEBSERVER_PORT": str(health_port)}
    return ServiceSpec("prefect-worker", argv, worker_env, f"http://127.0.0.1:{health_port}/health", None)


def mlflow_server_spec(port: int, backend_store_uri: str, artifacts_destination: str,
                       env: dict[str, str] | None = None, workers: int = 1) -> ServiceSpec:
    """`mlflow server` on loopback; artifacts are proxied (`mlflow-artifacts:/`) to the destination,
    so clients need only the HTTP address, never the database or S3 credentials."""
    argv = [bin_path("mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
            "--backend-store-uri", backend_store_uri, "--serve-artifacts",
            "--artifacts-destination", artifacts_destination, "--workers", str(workers)]
    url = f"http://127.0.0.1:{port}"
    # MLflow 3.17 also starts a job runner (7 huey worker processes, ~1.5 GB here) for GenAI
    # jobs that edgeops never submits: off.
    server_env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **(env or {})}
    return ServiceSpec("mlflow-server", argv, server_env, f"{url}/health", port, url=url)

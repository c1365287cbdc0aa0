"""Server cohorts: registered versions served by MLflow's scoring server on loopback, and a small
router that sends each request to the cohort's stable or canary version by share of requests.

What serves where is the registry's state, visible in the MLflow UI: the aliases
`<cohort>-stable` / `<cohort>-canary` on `<model>-<target>` and, on the canary version, the tag
`share.<cohort>` (percent of requests). `mlflow models serve --env-manager local` runs the
version in this environment (the pyfunc of registry.mlflow_models, i.e. the SavedModel's
serving signature). The router answers `POST /invocations` like the scoring server itself and
says who answered in `X-Edgeops-Version` / `X-Edgeops-Role`.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeops.errors import EdgeOpsError
from registry.mlflow_models import cohort_alias

if TYPE_CHECKING:
    from mlflow import MlflowClient


class ServingError(EdgeOpsError):
    """A model server cannot start or a cohort has nothing to serve."""

    exit_code = 16


def share_tag(cohort: str) -> str:
    return f"share.{cohort}"


@dataclass
class ModelServer:
    """One `mlflow models serve` process on 127.0.0.1."""

    model_uri: str
    url: str
    proc: subprocess.Popen
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _mlflow_cli() -> list[str]:
    script = Path(sys.executable).with_name("mlflow")
    return [str(script)] if script.exists() else [sys.executable, "-m", "mlflow"]


def start_model_servers(model_uris: list[str], tracking_uri: str, timeout_s: float = 180.0) -> list[ModelServer]:
    """Start one scoring server per URI (concurrently) and wait until each answers /ping."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "MLFLOW_REGISTRY_URI": tracking_uri,
           # the scoring server execs `uvicorn` from this environment's bin directory
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    servers = []
    for uri in model_uris:
        port = _free_port()
        log = Path(tempfile.mkstemp(prefix="edgeops-serve-", suffix=".log")[1])
        cmd = [*_mlflow_cli(), "models", "serve", "-m", uri, "--env-manager", "local",
               "-h", "127.0.0.1", "-p", str(port), "-w", "1"]
        with log.open("wb") as out:
            try:
                proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
            except OSError as exc:
                for s in servers:
                    s.stop()
                raise ServingError(f"the model server cannot start: {exc}", where=uri) from exc
        servers.append(ModelServer(uri, f"http://127.0.0.1:{port}", proc, log))
    try:
        for s in servers:
            _wait_ready(s, timeout_s)
    except ServingError:
        for s in servers:
            s.stop()
        raise
    return servers


def _wait_ready(server: ModelServer, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            lines = server.log.read_text(errors="replace").strip().splitlines() or ["no output"]
            last = next((ln for ln in reversed(lines) if "Error" in ln or "error" in ln), lines[-1])
            raise ServingError(f"the model server exited with {server.proc.returncode}: {last[:300]}",
                               where=server.model_uri)
        try:
            with urllib.request.urlopen(f"{server.url}/ping", timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise ServingError(f"the model server did not answer within {timeout_s:.0f} s", where=server.model_uri)


@dataclass
class Backend:
    role: str  # stable | canary
    version: str
    url: str


@dataclass
class ShareRouter:
    """Routes each request to the canary with probability share/100 (by a hash of a request id
    when the client sends `X-Request-Id`, so retries land on the same version), else the stable."""

    stable: Backend
    canary: Backend | None = None
    share: float = 0.0  # percent of requests for the canary
    counts: dict[str, int] = field(default_factory=dict)
    _server: ThreadingHTTPServer | None = None

    def pick(self, request_id: str) -> Backend:
        if self.canary is None or self.share <= 0:
            return self.stable
        bucket = int.from_bytes(hashlib.sha256(request_id.encode()).digest()[:4], "big") % 10_000
        return self.canary if bucket < self.share * 100 else self.stable

    def start(self) -> str:
        router = self
        lock = threading.Lock()
        seq = iter(range(10**12))

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with lock:
                    rid = self.headers.get("X-Request-Id") or f"req-{next(seq)}"
                backend = router.pick(rid)
                req = urllib.request.Request(f"{backend.url}{self.path}", data=body, method="POST",
                                             headers={"Content-Type": self.headers.get("Content-Type",
                                                                                       "application/json")})
                try:
                    with urllib.request.urlopen(req, timeout=60) as r:
                        status, data = r.status, r.read()
                except urllib.error.HTTPError as exc:
                    status, data = exc.code, exc.read()
                except (urllib.error.URLError, OSError) as exc:
                    status, data = 502, f'{{"error": "{backend.role} unreachable: {exc}"}}'.encode()
                with lock:
                    router.counts[backend.role] = router.counts.get(backend.role, 0) + 1
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("X-Edgeops-Version", backend.version)
                self.send_header("X-Edgeops-Role", backend.role)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self._server.server_port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


@dataclass
class CohortService:
    """A server cohort on loopback: its model servers and the router in front of them."""

    cohort: str
    url: str  # the router: POST {url}/invocations
    router: ShareRouter
    servers: list[ModelServer]

    def stop(self) -> None:
        self.router.stop()
        for s in self.servers:
            s.stop()

    def __enter__(self) -> CohortService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def cohort_versions(client: MlflowClient, name: str, cohort: str) -> tuple[str, str | None, float]:
    """(stable version, canary version or None, canary share %) from the registry's aliases."""
    from mlflow.exceptions import MlflowException

    try:
        aliases = {k: str(v) for k, v in client.get_registered_model(name).aliases.items()}
    except MlflowException as exc:
        raise ServingError(f"cohort {cohort}: no registered model {name}: {exc.message}") from exc
    stable = aliases.get(cohort_alias(cohort, "stable"))
    if stable is None:
        raise ServingError(f"cohort {cohort}: {name} has no {cohort_alias(cohort, 'stable')} version to serve")
    canary = aliases.get(cohort_alias(cohort, "canary"))
    share = 0.0
    if canary is not None:
        share = float(client.get_model_version(name, canary).tags.get(share_tag(cohort), "0"))
    return stable, canary, share


def serve_cohort(client: MlflowClient, tracking_uri: str, name: str, cohort: str) -> CohortService:
    """Start the cohort's stable (and canary) version and the share router in front of them."""
    stable, canary, share = cohort_versions(client, name, cohort)
    uris = [f"models:/{name}/{stable}"] + ([f"models:/{name}/{canary}"] if canary else [])
    servers = start_model_servers(uris, tracking_uri)
    router = ShareRouter(Backend("stable", stable, servers[0].url),
                         Backend("canary", canary, servers[1].url) if canary else None, share)
    return CohortService(cohort, router.start(), router, servers)

"""Server cohorts: registered versions served by MLflow's scoring server on loopback, and a small
router that sends each request to the cohort's stable or canary version by share of requests.

What serves where is the registry's state, visible in the MLflow UI: the aliases
`<cohort>-stable` / `<cohort>-canary` on `<model>-<target>` and, on the canary version, the tag
`share.<cohort>` (percent of requests; registry.share_rollout steps it). `mlflow models serve
--env-manager local` runs the version in this environment (the pyfunc of registry.mlflow_models,
i.e. the SavedModel's serving signature). The router answers `POST /invocations` like the scoring
server itself and says who answered in `X-Edgeops-Version` / `X-Edgeops-Role`.

The router's request log (registry.request_log) is the server cohort's telemetry: one row per
answered input, the label included when the client scores the request with `X-Edgeops-Labels`;
the rollout controller reads its gate and accuracy evidence from it.
"""

from __future__ import annotations

import hashlib
import json
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

from device.protocol import format_time
from edgeops.errors import EdgeOpsError
from registry.mlflow_models import cohort_alias
from registry.request_log import RequestLog, read_requests
from registry.share_rollout import share_tag

if TYPE_CHECKING:
    from mlflow import MlflowClient




class ServingError(EdgeOpsError):
    """A model server cannot start or a cohort has nothing to serve."""

    exit_code = 16


__all__ = ["share_tag", "ServingError", "ShareRouter", "RequestLog", "read_requests", "serve_cohort", "cohort_model"]


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


def start_model_servers(model_uris: list[str], tracking_uri: str, timeout_s: float = 300.0) -> list[ModelServer]:
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


def _rows(backend: Backend, status: int, data: bytes, latency_ms: float, client: str, labels: str | None,
          at: str) -> list[dict[str, Any]]:
    """One row per input of a request: the version's probabilities, or one error row."""
    base = {"at": at, "device_id": client, "version": backend.version, "role": backend.role,
            "status": status, "latency_ms": latency_ms}
    try:
        preds = json.loads(data)["predictions"] if status == 200 else None
    except (ValueError, KeyError, TypeError):
        preds = None
    if not isinstance(preds, list) or not preds:
        return [{**base, "event": "error"}]
    wanted = (labels or "").split(",")
    out = []
    for i, p in enumerate(preds):
        probs = [float(v) for v in (p if isinstance(p, list) else [p])]
        top1 = max(range(len(probs)), key=probs.__getitem__)
        label = wanted[i].strip() if i < len(wanted) else ""
        out.append({**base, "event": "inference", "probs": probs, "top1": top1, "confidence": probs[top1],
                    "label": int(label) if label.lstrip("-").isdigit() else None})
    return out


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
    log: RequestLog | None = None
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
                t0 = time.perf_counter()
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
                latency_ms = (time.perf_counter() - t0) * 1000
                with lock:
                    router.counts[backend.role] = router.counts.get(backend.role, 0) + 1
                if router.log is not None:
                    router.log.add(_rows(backend, status, data, latency_ms, self.headers.get("X-Client-Id") or rid,
                                         self.headers.get("X-Edgeops-Labels"), format_time(router.log.clock())))
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
    """A server cohort on loopback: its model servers and the router in front of them.
    `refresh` re-reads the registry (a step, a completion or a rollback by the controller) and
    points the router at the versions and share it finds, starting a server for a new version."""

    cohort: str
    name: str  # the registered model
    url: str  # the router: POST {url}/invocations
    router: ShareRouter
    servers: dict[str, ModelServer]  # version -> its scoring server
    client: MlflowClient
    tracking_uri: str
    _poller: threading.Event | None = None

    def refresh(self) -> tuple[str, str | None, float]:
        stable, canary, share = cohort_versions(self.client, self.name, self.cohort)
        missing = [v for v in (stable, canary) if v is not None and v not in self.servers]
        if missing:
            try:
                started = start_model_servers([f"models:/{self.name}/{v}" for v in missing], self.tracking_uri)
            except ServingError as exc:
                raise ServingError(f"cohort {self.cohort}: {exc}") from exc
            self.servers.update(zip(missing, started, strict=True))
        r = self.router
        r.stable = Backend("stable", stable, self.servers[stable].url)
        r.canary = Backend("canary", canary, self.servers[canary].url) if canary else None
        r.share = share
        if r.log is not None:
            r.log.flush()
        return stable, canary, share

    def poll(self, every_s: float) -> None:
        """Refresh (and flush the request log) every `every_s` seconds in a daemon thread; a
        failed refresh keeps the current routing (the next one tries again)."""
        stop = self._poller = threading.Event()

        def loop() -> None:
            while not stop.wait(every_s):
                try:
                    self.refresh()
                except (EdgeOpsError, OSError) as exc:
                    print(f"cohort {self.cohort}: routing unchanged, refresh failed: {exc}", file=sys.stderr)

        threading.Thread(target=loop, daemon=True).start()

    def stop(self) -> None:
        if self._poller is not None:
            self._poller.set()
        self.router.stop()
        if self.router.log is not None:
            self.router.log.flush()
        for s in self.servers.values():
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


def cohort_model(client: MlflowClient, cohort: str, role: str = "stable") -> str | None:
    """The registered model whose `<cohort>-<role>` alias is set (None: the cohort has none)."""
    alias = cohort_alias(cohort, role)
    found = [m.name for m in client.search_registered_models(max_results=1000) if alias in (m.aliases or {})]
    if len(found) > 1:
        raise ServingError(f"cohort {cohort}: {alias} is set on several models: {', '.join(sorted(found))}")
    return found[0] if found else None


def serve_cohort(client: MlflowClient, tracking_uri: str, name: str, cohort: str,
                 log: RequestLog | None = None, timeout_s: float = 300.0) -> CohortService:
    """Start the cohort's stable (and canary) version and the share router in front of them;
    a server that cannot start is one line naming the cohort."""
    stable, canary, share = cohort_versions(client, name, cohort)
    versions = [stable] + ([canary] if canary else [])
    try:
        servers = start_model_servers([f"models:/{name}/{v}" for v in versions], tracking_uri, timeout_s)
    except ServingError as exc:
        raise ServingError(f"cohort {cohort}: {exc}") from exc
    by_version = dict(zip(versions, servers, strict=True))
    router = ShareRouter(Backend("stable", stable, by_version[stable].url),
                         Backend("canary", canary, by_version[canary].url) if canary else None, share, log=log)
    return CohortService(cohort, name, router.start(), router, by_version, client, tracking_uri)

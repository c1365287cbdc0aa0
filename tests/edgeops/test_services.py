"""Local services by pid: ready by health check, stopped with their children, failures readable."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from edgeops import services
from edgeops.services import ServiceError, ServiceSpec


def _http_server(port: int) -> ServiceSpec:
    # a parent that forks a child: stopping must take the whole process group
    code = (f"import subprocess, sys; subprocess.Popen([sys.executable, '-m', 'http.server', '{port}', "
            "'--bind', '127.0.0.1']).wait()")
    return ServiceSpec("web", [sys.executable, "-c", code], health_url=f"http://127.0.0.1:{port}/", port=port,
                       url=f"http://127.0.0.1:{port}")


def test_start_wait_ready_and_stop_recorded(tmp_path: Path) -> None:
    port = services.free_port()
    service = services.start(_http_server(port), tmp_path, timeout=30)
    assert services.http_ok(f"http://127.0.0.1:{port}/")
    assert [s.name for s in services.recorded(tmp_path)] == ["web"]
    assert service.pidfile.exists() and (tmp_path / "logs" / "web.log").exists()
    with pytest.raises(ServiceError, match="already running"):
        services.start(_http_server(services.free_port()), tmp_path, timeout=5)

    assert services.stop_recorded(tmp_path) == ["web"]  # as `edgeops down` does, from the pid file
    assert not service.alive()
    assert not services.port_open(port)
    assert services.recorded(tmp_path) == []


def test_a_service_that_exits_is_reported_with_its_log(tmp_path: Path) -> None:
    spec = ServiceSpec("broken", [sys.executable, "-c", "print('no config here'); raise SystemExit(3)"],
                       health_url="http://127.0.0.1:9/")
    with pytest.raises(ServiceError, match=r"broken exited with 3: no config here"):
        services.start(spec, tmp_path, timeout=30)
    assert not (tmp_path / "run" / "broken.json").exists()


def test_not_ready_in_time_is_stopped(tmp_path: Path) -> None:
    spec = ServiceSpec("silent", [sys.executable, "-c", "import time; time.sleep(60)"],
                       health_url=f"http://127.0.0.1:{services.free_port()}/")
    with pytest.raises(ServiceError, match="silent not ready after 1s"):
        services.start(spec, tmp_path, timeout=1)
    assert services.recorded(tmp_path) == []


def test_a_stale_pid_file_is_dropped(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "ghost.json").write_text('{"name": "ghost", "pid": 999999, "argv": ["ghost"]}')
    assert services.stop_recorded(tmp_path) == []
    assert not (tmp_path / "run" / "ghost.json").exists()

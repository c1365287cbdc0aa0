"""The fleet view: every cohort on `/`, a page per cohort, in a real headless Chromium."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from edgeops.cli.dashboard import FleetView, Series, cohort_html, line_plot, overview_html, serve
from edgeops.services import free_port

T0 = datetime(2026, 12, 1, 8, 0)
VIEW = FleetView(
    cohorts=[
        {"cohort": "pi-fleet-eu", "profile": "raspberry-pi-4", "percentage": 5.0,
         "stable": {"registered_model": "digits-tflite-int8", "model_version": "1", "target": "tflite-int8",
                    "bundle_id": "a" * 64},
         "candidate": {"registered_model": "digits-prune-tflite-int8", "model_version": "2", "target": "tflite-int8",
                       "bundle_id": "b" * 64}},
        {"cohort": "mcu-line-a-production-eu-west", "profile": "cortex-m", "percentage": 0.0, "stable": None,
         "candidate": None},
    ],
    rollouts={"pi-fleet-eu": {"status": "running", "step": 1, "last_change": "2026-12-01T09:00:00Z",
                              "gates": {"gates": [{"gate": "dwell", "value": "47s", "limit": "600s",
                                                   "state": "553s remaining"}],
                                        "decision": {"action": "hold", "reasons": ["dwell 47s of 600s"]}}}},
    history=lambda cohort: [{"at": "2026-12-01T09:00:00Z", "actor": "release-pipeline", "action": "start",
                             "from_status": "planned", "to_status": "running", "percentage": 5.0, "version": "2",
                             "reason": "canary: first step"}] if cohort == "pi-fleet-eu" else [],
    windows=lambda cohort: [{"window_start": (T0 + timedelta(hours=h)).isoformat(), "estimated_accuracy": a,
                             "drift_share": d} for h, (a, d) in enumerate([(0.99, 0.1), (0.98, 0.2), (0.91, 0.7)])],
)


def test_pages_name_every_cohort_and_escape_input() -> None:
    text = overview_html(VIEW)
    assert "pi-fleet-eu" in text and "mcu-line-a-production-eu-west" in text
    assert "digits-prune-tflite-int8 v2" in text and "digits-tflite-int8 v1" in text
    page = cohort_html(VIEW, "pi-fleet-eu")
    assert "canary: first step" in page and page.count("<polyline") == 2
    assert "553s remaining" in page and "controller now: <b>hold</b>" in page
    evil = FleetView([{"cohort": "<script>x</script>", "profile": "p"}], {}, lambda c: [])
    assert "<script>x" not in overview_html(evil)
    with pytest.raises(KeyError):
        cohort_html(VIEW, "nope")


def test_plot_without_windows_says_so() -> None:
    assert "no windows judged yet" in line_plot("estimated accuracy", [Series("a", [])], (0, 1))


def test_served_pages_and_a_real_browser(tmp_path: Path) -> None:
    port = free_port()
    server = serve(lambda: VIEW, port)
    try:
        base = f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(f"{base}/cohort/pi-fleet-eu", timeout=10) as resp:
            assert resp.status == 200 and b"History" in resp.read()
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"{base}/cohort/unknown", timeout=10)
        assert missing.value.code == 404
        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        assert chromium, "Debian's chromium is installed by `make test` (see Makefile)"
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tempfile.mkdtemp(prefix='edgeops-chromium-')}"]
        dom = subprocess.run([chromium, *flags, "--dump-dom", f"{base}/"], capture_output=True, text=True,
                             timeout=120).stdout
        assert "pi-fleet-eu" in dom and "mcu-line-a-production-eu-west" in dom
        shots = Path(__file__).resolve().parents[2] / "build" / "screenshots"
        shots.mkdir(parents=True, exist_ok=True)
        subprocess.run([chromium, *flags, "--window-size=1300,700", f"--screenshot={shots / 'dashboard.png'}",
                        f"{base}/cohort/pi-fleet-eu"], capture_output=True, timeout=120, check=True)
        assert (shots / "dashboard.png").stat().st_size > 5000
    finally:
        server.shutdown()


def test_load_view_reads_a_real_channel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the CLI's own RolloutManager on a channel made by `edgeops keys init`: every cohort
    of devices.yaml is listed, none runs anything yet, and reading needs no key."""
    from typer.testing import CliRunner

    from edgeops.cli.dashboard import load_view
    from edgeops.cli.keys import keys_app
    from edgeops.settings import Settings

    monkeypatch.setenv("EDGEOPS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("EDGEOPS_OFFLINE_KEYS_DIR", str(tmp_path / "usb"))
    assert CliRunner().invoke(keys_app, ["init"]).exit_code == 0
    settings = Settings.from_env()
    view = load_view(settings)
    names = {c["cohort"] for c in view.cohorts}
    assert names == set(settings.devices().cohorts)
    assert all(c.get("stable") is None for c in view.cohorts)
    html = overview_html(view)
    assert all(name in html for name in names)
    assert view.windows(sorted(names)[0]) == []  # no monitor runs yet

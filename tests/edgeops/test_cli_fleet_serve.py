"""`edgeops fleet serve COHORT`: refusals are one line and the exit code of their error."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("cohort, message", [
    ("nowhere", "unknown cohort 'nowhere'"),
    ("pi-fleet-eu", "cohort pi-fleet-eu is not served over HTTP (its profile runs on agent)"),
    ("inference-servers", "cohort inference-servers: nothing released to it yet (no inference-servers-stable alias)"),
])
def test_serve_refuses_in_one_line(cohort: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from edgeops.cli.fleet import fleet_app

    monkeypatch.setenv("EDGEOPS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("EDGEOPS_DEVICES", str(REPO / "devices.yaml"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("COLUMNS", "400")
    result = CliRunner().invoke(fleet_app, ["serve", cohort])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()) and "Traceback" not in result.output

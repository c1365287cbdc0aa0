"""On a fresh `edgeops up` the schedules fire before anything is released: the controller and the
channel refresh complete with nothing to do instead of failing every few minutes."""

from __future__ import annotations

from pathlib import Path

import pytest

import flows  # noqa: F401 (Prefect defaults before prefect is imported)


def test_scheduled_flows_before_the_first_release(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.channel import channel_refresh
    from flows.controller import rollout_controller

    monkeypatch.setenv("EDGEOPS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("EDGEOPS_STORE_URL", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert rollout_controller() == {}
    assert channel_refresh() == {}
    assert not (tmp_path / "home" / "keys" / "tuf").exists()  # no key minted by a scheduled run

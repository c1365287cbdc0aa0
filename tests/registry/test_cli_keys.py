"""`edgeops keys ...` on a local store: init with thresholds, export, add cohorts, refresh,
rotate; refusals are one line."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from edgeops.cli.keys import keys_app


def _env(tmp_path: Path, monkeypatch, catalog) -> Path:
    devices = tmp_path / "devices.yaml"
    data = catalog.model_dump(exclude={"profiles": {"__all__": {"name"}}, "cohorts": {"__all__": {"name"}}})
    devices.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("EDGEOPS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("EDGEOPS_STORE_URL", str(tmp_path / "store"))
    monkeypatch.setenv("EDGEOPS_KEYS_DIR", str(tmp_path / "keys"))
    monkeypatch.setenv("EDGEOPS_OFFLINE_KEYS_DIR", str(tmp_path / "usb"))
    monkeypatch.setenv("EDGEOPS_DEVICES", str(devices))
    return devices


def test_keys_lifecycle_through_the_cli(tmp_path, monkeypatch, catalog) -> None:
    devices = _env(tmp_path, monkeypatch, catalog)
    r = CliRunner()
    out = r.invoke(keys_app, ["init", "--keys", "root=3", "--threshold", "root=4"])
    assert out.exit_code == 2 and "root threshold 4 exceeds its 3 keys" in out.output
    out = r.invoke(keys_app, ["init", "--keys", "root=3", "--threshold", "root=2", "--bin-bits", "2"])
    assert out.exit_code == 0, out.output
    assert len(list((tmp_path / "usb" / "root").glob("*.pem"))) == 3  # offline keys apart
    assert not (tmp_path / "keys" / "tuf" / "root").exists()
    out = r.invoke(keys_app, ["init"])
    assert out.exit_code == 2 and "already holds an update channel" in out.output
    assert r.invoke(keys_app, ["export-root", str(tmp_path / "root.json")]).exit_code == 0
    root = json.loads((tmp_path / "root.json").read_text())
    assert root["signed"]["roles"]["root"]["threshold"] == 2 and len(root["signatures"]) == 3
    assert root["signed"]["consistent_snapshot"] is True

    data = yaml.safe_load(devices.read_text())
    data["cohorts"]["pi-fleet-us"] = {"profile": "pi"}
    devices.write_text(yaml.safe_dump(data))
    out = r.invoke(keys_app, ["add-cohorts"])
    assert out.exit_code == 0 and "delegated pi-fleet-us" in out.output
    assert "already" in r.invoke(keys_app, ["add-cohorts"]).output
    ts = json.loads((tmp_path / "store" / "tuf" / "metadata" / "timestamp.json").read_text())
    assert r.invoke(keys_app, ["refresh"]).exit_code == 0
    ts2 = json.loads((tmp_path / "store" / "tuf" / "metadata" / "timestamp.json").read_text())
    assert ts2["signed"]["version"] > ts["signed"]["version"]

    out = r.invoke(keys_app, ["rotate", "root"])
    assert out.exit_code == 0 and "root is now v2" in out.output
    two = json.loads((tmp_path / "store" / "tuf" / "metadata" / "2.root.json").read_text())
    old_ids = set(root["signed"]["roles"]["root"]["keyids"])
    assert old_ids <= set(two["signatures"][i]["keyid"] for i in range(len(two["signatures"])))
    assert not old_ids & set(two["signed"]["roles"]["root"]["keyids"])  # revoked
    monkeypatch.setenv("EDGEOPS_OFFLINE_KEYS_DIR", str(tmp_path / "elsewhere"))
    out = r.invoke(keys_app, ["rotate", "targets"])
    assert out.exit_code == 2 and "no root signing key on this machine" in out.output

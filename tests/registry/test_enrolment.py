"""Device enrolment: the registry outside the bucket and `edgeops devices enroll/list`."""

from __future__ import annotations

import json
import os
import stat

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from device.identity import device_key_id, public_key_b64, read_private_key
from edgeops.cli.devices import devices_app
from edgeops.errors import ConfigError, IntegrityError
from registry.enrolment import DeviceRegistry, enrolled_devices


def test_registry_enrols_idempotently_and_refuses_silent_rekeying(tmp_path) -> None:
    reg = DeviceRegistry(tmp_path / "devices")
    key = Ed25519PrivateKey.generate().public_key()
    rec = reg.enroll("pi-0001", "pi-fleet-eu", key)
    assert reg.enroll("pi-0001", "pi-fleet-eu", key) == rec  # same key: a no-op
    other = Ed25519PrivateKey.generate().public_key()
    with pytest.raises(IntegrityError, match="--replace"):
        reg.enroll("pi-0001", "pi-fleet-eu", other)
    with pytest.raises(IntegrityError, match="--replace"):
        reg.enroll("pi-0001", "pi-fleet-us", key)  # a cohort change is a re-enrolment too
    assert reg.enroll("pi-0001", "pi-fleet-us", other, replace=True).key_id == device_key_id(other)
    with pytest.raises(ConfigError, match="no slash"):
        reg.enroll("../evil", "pi-fleet-eu", key)
    assert reg.get("../evil") is None and reg.get("nobody") is None
    assert list(reg.load()) == ["pi-0001"] and reg.load()["pi-0001"].cohort == "pi-fleet-us"


def test_cli_enroll_writes_the_device_key_and_lists(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("EDGEOPS_HOME", str(tmp_path / "home"))
    runner = CliRunner()
    key_out = tmp_path / "pi-0001.device.key"
    out = runner.invoke(
        devices_app,
        ["enroll", "pi-0001", "--cohort", "pi-fleet-eu", "--key-out", str(key_out), "--json"],
    )
    assert out.exit_code == 0, out.output
    rec = json.loads(out.output)
    key = read_private_key(key_out)
    assert rec["key_id"] == device_key_id(key.public_key()) and rec["cohort"] == "pi-fleet-eu"
    assert stat.S_IMODE(os.stat(key_out).st_mode) == 0o600
    devices = enrolled_devices(tmp_path / "home" / "keys")
    assert devices["pi-0001"].public_key_b64 == public_key_b64(key.public_key())
    again = runner.invoke(
        devices_app, ["enroll", "pi-0001", "--cohort", "pi-fleet-eu", "--key-out", str(key_out)]
    )
    assert again.exit_code != 0 and "exists" in str(again.exception)  # never overwritten silently
    # a key made on the device: only its public half travels
    pub = tmp_path / "pi-0002.pub"
    own = Ed25519PrivateKey.generate()
    pub.write_text(public_key_b64(own.public_key()) + "\n")
    ok = runner.invoke(
        devices_app, ["enroll", "pi-0002", "-c", "pi-fleet-us", "--public-key", str(pub)]
    )
    assert ok.exit_code == 0, ok.output
    listed = json.loads(runner.invoke(devices_app, ["list", "--json"]).output)
    assert [(d["device_id"], d["cohort"]) for d in listed] == [
        ("pi-0001", "pi-fleet-eu"),
        ("pi-0002", "pi-fleet-us"),
    ]
    assert not list((tmp_path / "home").glob("store/**/*.json"))  # nothing in the bucket

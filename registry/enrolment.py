"""The release side's record of which key speaks for which device: the enrolment registry.

It lives outside the bucket (by default `<keys_dir>/devices/`, beside the signing keys), one
JSON file per device with its cohort and Ed25519 public key, written when the device is
provisioned (`edgeops devices enroll`). Ingestion trusts a telemetry batch only when its
signature verifies against the key enrolled here for the device it names; nothing found in the
store is ever taken as a device key. Re-enrolling the same key is a no-op; a different key for
an enrolled device (a replaced board, a rotated key) needs `replace=True`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from device.identity import (
    device_key_id,
    public_key_b64,
    public_key_from_b64,
    write_private_key,
)
from edgeops.errors import ConfigError, IntegrityError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def enrolment_dir(keys_dir: Path) -> Path:
    return Path(keys_dir) / "devices"


@dataclass(frozen=True)
class EnrolledDevice:
    device_id: str
    cohort: str
    key_id: str
    public_key_b64: str
    enrolled_at: str

    @property
    def public_key(self) -> Ed25519PublicKey:
        return public_key_from_b64(self.public_key_b64)


def _check_name(what: str, value: str) -> None:
    if not _NAME.match(value):
        raise ConfigError(f"{what} {value!r} must be 1-128 of A-Z a-z 0-9 . _ - (no slash)")


class DeviceRegistry:
    """Enrolled devices in a directory the release side controls."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, device_id: str) -> Path:
        return self.root / f"{device_id}.json"

    def get(self, device_id: str) -> EnrolledDevice | None:
        if not _NAME.match(device_id):
            return None
        path = self._path(device_id)
        if not path.exists():
            return None
        try:
            return EnrolledDevice(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(f"enrolment record unreadable: {exc}", where=str(path)) from exc

    def load(self) -> dict[str, EnrolledDevice]:
        """Every enrolled device by id (what one ingestion run checks against)."""
        if not self.root.exists():
            return {}
        out = {}
        for p in sorted(self.root.glob("*.json")):
            dev = self.get(p.stem)
            if dev is not None:
                out[dev.device_id] = dev
        return out

    def enroll(
        self, device_id: str, cohort: str, public_key: Ed25519PublicKey, replace: bool = False
    ) -> EnrolledDevice:
        _check_name("device id", device_id)
        _check_name("cohort", cohort)
        rec = EnrolledDevice(
            device_id=device_id,
            cohort=cohort,
            key_id=device_key_id(public_key),
            public_key_b64=public_key_b64(public_key),
            enrolled_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
        old = self.get(device_id)
        if old is not None and (old.key_id, old.cohort) == (rec.key_id, rec.cohort):
            return old
        if old is not None and not replace:
            raise IntegrityError(
                f"device {device_id} is enrolled with key {old.key_id} in cohort {old.cohort}; "
                "pass --replace to enrol a new key or cohort"
            )
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{device_id}.json.tmp"
        tmp.write_text(json.dumps(asdict(rec), indent=1, sort_keys=True))
        os.replace(tmp, self._path(device_id))
        return rec

    def provision(
        self, device_id: str, cohort: str, key_out: Path, replace: bool = False
    ) -> EnrolledDevice:
        """Make a device key, write it to `key_out` for the device (0600) and enrol it."""
        if Path(key_out).exists() and not replace:
            raise ConfigError(
                "device key file exists; pass --replace to overwrite", where=str(key_out)
            )
        key = Ed25519PrivateKey.generate()
        rec = self.enroll(device_id, cohort, key.public_key(), replace=replace)
        write_private_key(Path(key_out), key)
        return rec


def enrolled_devices(keys_dir: Path) -> dict[str, EnrolledDevice]:
    """What an ingestion run checks batches against (`<keys_dir>/devices/`)."""
    return DeviceRegistry(enrolment_dir(keys_dir)).load()


def simulator_enroller(keys_dir: Path) -> Callable[[str, str, Ed25519PublicKey], EnrolledDevice]:
    """For the fleet simulator, which provisions its own devices: enrol (or re-key) each one."""
    reg = DeviceRegistry(enrolment_dir(keys_dir))
    return lambda device_id, cohort, key: reg.enroll(device_id, cohort, key, replace=True)

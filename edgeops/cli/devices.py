"""`edgeops devices ...`: device identity for telemetry (enrolment at provisioning).

The enrolment registry lives outside the bucket, under the keystore (`<keys_dir>/devices/`);
ingestion trusts a telemetry batch only when it verifies against the key enrolled there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from edgeops.console import make_console

devices_app = typer.Typer(help="Device identity: enrol telemetry keys.", no_args_is_help=True)
console = make_console()


def _registry() -> Any:
    from edgeops.settings import Settings
    from registry.enrolment import DeviceRegistry, enrolment_dir

    return DeviceRegistry(enrolment_dir(Settings.from_env().keys_dir))


@devices_app.command("enroll")
def enroll_cmd(
    device_id: Annotated[str, typer.Argument(help="The device's id, as in its agent config.")],
    cohort: Annotated[str, typer.Option("--cohort", "-c", help="The cohort it belongs to.")],
    public_key: Annotated[
        Path | None,
        typer.Option(help="Enrol a key made on the device (file with its raw base64 public key)."),
    ] = None,
    key_out: Annotated[
        Path | None,
        typer.Option(help="Where to write a new device key (default ./<device_id>.device.key)."),
    ] = None,
    replace: Annotated[bool, typer.Option(help="Replace an enrolled key or cohort.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Enrol a device: its telemetry must be signed by this key and name this cohort.

    Without --public-key a key pair is made here: the private key goes to --key-out (copy it to
    the device as <state_dir>/device.key, mode 0600), the public key into the registry."""
    from device.identity import public_key_from_b64

    reg = _registry()
    if public_key is not None:
        key = public_key_from_b64(public_key.read_text().strip())
        rec = reg.enroll(device_id, cohort, key, replace=replace)
        written = None
    else:
        written = key_out or Path(f"{device_id}.device.key")
        rec = reg.provision(device_id, cohort, written, replace=replace)
    out = {
        "device_id": rec.device_id,
        "cohort": rec.cohort,
        "key_id": rec.key_id,
        "enrolled_at": rec.enrolled_at,
        "key_file": str(written) if written else None,
        "registry": str(reg.root),
    }
    if as_json:
        typer.echo(json.dumps(out, indent=2))
        return
    console.print(f"enrolled [bold]{rec.device_id}[/] in {rec.cohort} with key {rec.key_id}")
    if written:
        console.print(f"device key written to {written} (copy to <state_dir>/device.key, 0600)")


@devices_app.command("list")
def list_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Enrolled devices."""
    devices = _registry().load()
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {"device_id": d.device_id, "cohort": d.cohort, "key_id": d.key_id}
                    for d in devices.values()
                ],
                indent=2,
            )
        )
        return
    table = Table("device", "cohort", "key id", "enrolled at", title="enrolled devices")
    for d in devices.values():
        table.add_row(d.device_id, d.cohort, d.key_id, d.enrolled_at)
    console.print(table)

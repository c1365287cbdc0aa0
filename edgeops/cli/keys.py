"""`edgeops keys ...`: the update channel's keys and root (docs/protocol.md, key ceremony).

`init` creates the channel (root v1 and every role) with keys made here; `export-root` writes
the root a device or any TUF client starts from; `trust` makes a second machine trust an
exported root (it can then read and verify, and sign only with the keys it is given);
`rotate` replaces a key group's keys (root rotation follows TUF's chain); `refresh` renews
the timestamp (what the `channel-refresh` deployment runs).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from edgeops.cli.release import _run, console
from edgeops.errors import ConfigError

keys_app = typer.Typer(help="Update-channel keys, root and key ceremony.", no_args_is_help=True)


def _parse_counts(items: list[str], what: str) -> dict[str, int]:
    out = {}
    for item in items:
        group, _, n = item.partition("=")
        if not n.isdigit() or int(n) < 1:
            raise ConfigError(f"bad {what} {item!r}; use e.g. root=2")
        out[group.strip()] = int(n)
    return out


def _repo():  # type: ignore[no-untyped-def]
    from edgeops.settings import Settings
    from registry.channel_access import channel_repository

    return channel_repository(Settings.from_env())


@keys_app.command("init")
def init_cmd(
    keys: Annotated[list[str], typer.Option("--keys", help="Keys per group, e.g. root=3.")] = [],  # noqa: B006
    threshold: Annotated[
        list[str], typer.Option("--threshold", help="Signatures needed, e.g. root=2.")
    ] = [],  # noqa: B006
    bin_bits: Annotated[int, typer.Option(help="2^bits hash bins for bundle targets.")] = 5,
) -> None:
    """Create the channel in the configured store, with every cohort of devices.yaml."""
    from edgeops.settings import Settings

    def init() -> str:
        repo = _repo()
        cohorts = sorted(Settings.from_env().devices().cohorts)
        repo.init(cohorts, counts=_parse_counts(keys, "--keys"),
                  thresholds=_parse_counts(threshold, "--threshold"), bin_bits=bin_bits)
        return f"channel created in {repo.store.url} for {len(cohorts)} cohorts; trusted root in {repo.keystore.root_path}"

    console.print(_run(init))


@keys_app.command("export-root")
def export_root_cmd(
    file: Annotated[Path, typer.Argument(help="Where to write root.json.")],
) -> None:
    """Write the newest verified root: what a device (or any TUF client) starts trusting."""

    def export() -> str:
        data = _repo().export_root()
        file.write_bytes(data)
        return f"root v{json.loads(data)['signed']['version']} written to {file}"

    console.print(_run(export))


@keys_app.command("trust")
def trust_cmd(file: Annotated[Path, typer.Argument(help="A root.json exported by key holders.")]) -> None:
    """Trust an exported root on this machine (a read-only or second signing machine)."""
    from tuf.api.metadata import Metadata, Root

    def trust() -> str:
        data = file.read_bytes()
        md = Metadata.from_bytes(data)
        if not isinstance(md.signed, Root):
            raise ConfigError("not root metadata", where=str(file))
        md.signed.verify_delegate("root", md.signed_bytes, md.signatures)
        _repo().keystore.save_root(data)
        return f"trusting root v{md.signed.version} from {file}"

    console.print(_run(trust))


@keys_app.command("rotate")
def rotate_cmd(
    group: Annotated[str, typer.Argument(help="root, targets, snapshot, timestamp or release.")],
) -> None:
    """New keys for a group; the old ones are revoked in the channel and deleted here."""
    from registry.tuf_rotation import rotate

    console.print(_run(lambda: rotate(_repo(), group)))


@keys_app.command("add-cohorts")
def add_cohorts_cmd() -> None:
    """Delegate the cohorts of devices.yaml the channel does not have yet (signs targets)."""
    from edgeops.settings import Settings

    def add() -> str:
        new = _repo().add_cohorts(sorted(Settings.from_env().devices().cohorts))
        return f"delegated {', '.join(new)}" if new else "every cohort is delegated already"

    console.print(_run(add))


@keys_app.command("refresh")
def refresh_cmd() -> None:
    """Renew the timestamp (and online roles near expiry) now."""
    console.print(_run(lambda: _repo().refresh()))

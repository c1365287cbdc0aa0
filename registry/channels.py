"""What each cohort runs: the channel target in the cohort's TUF role, read and written in
channel transactions (registry.tuf_repo).

`cohorts/<cohort>/channel.json` carries the `Channel` (stable, candidate, percentage, salt)
both as its content and as the target's signed custom field, so a device reads it from the
verified role without a download, and any TUF client can verify the file. Its `revision` is
the version of the cohort role that carries it, and only grows.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import replace

from device.channel import channel_path, cohort_role
from device.protocol import BundleRef, Channel, canonical_json
from edgeops.errors import IntegrityError
from registry.tuf_repo import TufRepository, Txn


def read_channel(txn: Txn, cohort: str) -> Channel | None:
    """The cohort's channel as signed; None before its first (or before it is delegated)."""
    if not txn.has_role(cohort_role(cohort)):
        return None
    custom = txn.channel_custom(cohort)
    if custom is None:
        return None
    channel = Channel.from_dict(custom)
    if channel.cohort != cohort:
        raise IntegrityError(f"channel of role {cohort_role(cohort)} names cohort {channel.cohort!r}")
    return channel


def write_channel(txn: Txn, cohort: str, channel: Channel) -> Channel:
    new = replace(channel, cohort=cohort, revision=txn.next_version(cohort_role(cohort)))
    d = new.to_dict()
    txn.put_target(channel_path(cohort), canonical_json(d), {"edgeops": d})
    return new


def new_salt() -> str:
    return secrets.token_hex(8)


def update_channel(
    repo: TufRepository, cohort: str, mutate: Callable[[Channel | None], Channel | None]
) -> Channel | None:
    """Apply `mutate` to the current channel in one transaction (re-run on a lost race);
    returning None leaves it as it is."""

    def change(txn: Txn) -> Channel | None:
        current = read_channel(txn, cohort)
        new = mutate(current)
        return current if new is None else write_channel(txn, cohort, new)

    return repo.transact(change)


def set_stable(repo: TufRepository, cohort: str, ref: BundleRef) -> Channel:
    """Point the cohort at `ref` as stable and clear any candidate (first publish)."""

    def mutate(c: Channel | None) -> Channel:
        return replace(c or Channel(cohort, salt=new_salt()), stable=ref, candidate=None, percentage=0.0)

    channel = update_channel(repo, cohort, mutate)
    assert channel is not None
    return channel

"""The update channel from the pipeline's side: open the TUF repository from Settings, create
it on a first release, and the `channel-refresh` flow that keeps the short-lived timestamp
(and any online-signed role near expiry) fresh. Deployed on an interval (prefect.yaml)."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from prefect import flow

if TYPE_CHECKING:
    from components.profiles import DeviceCatalog
    from edgeops.settings import Settings
    from registry.tuf_repo import TufRepository

OFFLINE_ENV = "EDGEOPS_OFFLINE_KEYS_DIR"  # where the root and targets keys are kept, if apart


def channel_repository(settings: Settings) -> TufRepository:
    """The repository in the configured store, keys and trust anchor from the local keystore."""
    from pathlib import Path

    from registry.tuf_keys import Keystore
    from registry.tuf_repo import Lifetimes, TufRepository

    offline = os.environ.get(OFFLINE_ENV)
    keystore = Keystore(settings.keys_dir, Path(offline) if offline else None)
    days = settings.params().publish.manifest_ttl_days
    return TufRepository(settings.store(), keystore, lifetimes=Lifetimes(delegated=timedelta(days=days)))


def ensure_channel(settings: Settings, catalog: DeviceCatalog) -> TufRepository:
    """A first release on an empty store with an empty keystore creates the channel (as
    `edgeops keys init` would); a store that has one needs this machine to trust its root
    already, and a machine without the keys a change needs fails with one line."""
    repo = channel_repository(settings)
    if not repo.exists() and not repo.keystore.has_root():
        repo.init(sorted(catalog.cohorts))
    missing = [c for c in catalog.cohorts if c not in repo.cohorts(repo.begin())]
    if missing:
        repo.add_cohorts(missing)
    return repo


@flow(name="channel-refresh")
def channel_refresh(within_hours: float | None = None) -> dict[str, Any]:
    """Renew the timestamp (and online roles near expiry) so devices never see it expire."""
    from edgeops.settings import Settings

    within = timedelta(hours=within_hours) if within_hours is not None else None
    out = channel_repository(Settings.from_env()).refresh(within)
    print(f"channel refreshed: timestamp v{out['timestamp_version']} until {out['timestamp_expires']}"
          + (f"; renewed {', '.join(out['renewed'])}" if out["renewed"] else "")
          + (f"; offline roles expiring: {', '.join(out['expiring_offline'])}" if out["expiring_offline"] else ""))
    return out

"""Opening the update channel from Settings (no Prefect import: the CLI uses it too): the
TUF repository in the configured store with this machine's keystore, and its creation on a
first release."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from components.profiles import DeviceCatalog
    from edgeops.settings import Settings
    from registry.tuf_repo import TufRepository

OFFLINE_ENV = "EDGEOPS_OFFLINE_KEYS_DIR"  # where the root and targets keys are kept, if apart


def channel_repository(settings: Settings) -> TufRepository:
    """The repository in the configured store, keys and trust anchor from the local keystore."""
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

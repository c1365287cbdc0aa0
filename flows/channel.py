"""The update channel from the pipeline's side: open the TUF repository from Settings, create
it on a first release, and the `channel-refresh` flow that keeps the short-lived timestamp
(and any online-signed role near expiry) fresh. Deployed on an interval (prefect.yaml)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from prefect import flow

from registry.channel_access import OFFLINE_ENV, channel_repository, ensure_channel

__all__ = ["OFFLINE_ENV", "channel_refresh", "channel_repository", "ensure_channel"]


@flow(name="channel-refresh")
def channel_refresh(within_hours: float | None = None) -> dict[str, Any]:
    """Renew the timestamp (and online roles near expiry) so devices never see it expire."""
    from edgeops.settings import Settings

    within = timedelta(hours=within_hours) if within_hours is not None else None
    repo = channel_repository(Settings.from_env())
    if not repo.exists() and not repo.keystore.has_root():
        print("no update channel yet (nothing released on this store): nothing to refresh")
        return {}
    out = repo.refresh(within)
    print(f"channel refreshed: timestamp v{out['timestamp_version']} until {out['timestamp_expires']}"
          + (f"; renewed {', '.join(out['renewed'])}" if out["renewed"] else "")
          + (f"; offline roles expiring: {', '.join(out['expiring_offline'])}" if out["expiring_offline"] else ""))
    return out

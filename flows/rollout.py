"""Starting a staged rollout from the release pipeline (later releases go canary-first)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from components.profiles import DeviceCatalog
    from edgeops.settings import Settings


def rollout_manager(settings: Settings, catalog: DeviceCatalog | None = None,
                    client: MlflowClient | None = None) -> Any:
    from edgeops.channel import channel_repository
    from registry.rollouts import RolloutManager

    return RolloutManager(channel_repository(settings), catalog or settings.devices(),
                          client or settings.mlflow_client(), keys_dir=settings.keys_dir)


def start_canary(client: MlflowClient, settings: Settings, catalog: DeviceCatalog, cohort: str,
                 registered: dict[str, Any], actor: str = "release-pipeline", reason: str = "") -> str:
    """Plan and start a rollout of a registered version on a cohort; returns its status.

    The rollout begins at its first step (a canary percentage); the controller or a release
    manager moves it on. A rollout already running on the cohort is left alone: the new
    version stays registered and published, and the refusal is returned as the status.
    """
    from edgeops.errors import RolloutError

    manager = rollout_manager(settings, catalog, client)
    try:
        manager.plan(cohort, registered["name"], registered["version"], actor=actor,
                     reason=reason or f"new release {registered['name']} v{registered['version']}")
        state = manager.start(cohort, actor=actor, reason="canary: first step")
    except RolloutError as exc:
        return f"not started: {exc}"
    return state.status

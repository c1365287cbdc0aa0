"""The MLflow mirror of a rollout: what a reviewer sees in the MLflow UI.

Aliases `<cohort>-canary` (while a candidate runs) and `<cohort>-stable` (what the cohort's
channel names as stable, by registered model and version), and `rollout.<cohort>` tags with the status and the last transition on
the candidate's model version. The store is the source of truth: a failure here is logged and
never blocks a transition (above all not a rollback).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from edgeops.errors import RegistryError

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from registry.rollout_state import RolloutState

log = logging.getLogger(__name__)


def mirror_rollout(client: MlflowClient, s: RolloutState) -> None:
    """Aliases and tags in MLflow; a failure is logged, never blocks the rollout.

    After every transition the aliases are set from the state alone, not moved by the action:
    `<cohort>-stable` on the registered model and version the channel names as stable,
    `<cohort>-canary` on the candidate while it runs or is paused, neither on any other model.
    So a rollback, a second release or a re-run converges on the same aliases."""
    if s.plan is None:
        return
    from mlflow.exceptions import MlflowException

    from registry.mlflow_models import set_version_tags, sync_cohort_aliases

    p, c, last = s.plan, s.cohort, s.history[-1]
    stable = s.stable_version
    canary = s.candidate_version if s.status in ("running", "paused") else None
    try:
        set_version_tags(
            client,
            p.registered_model,
            p.version,
            {
                f"rollout.{c}": f"{s.status} {s.percentage:g}% (rollout {s.rollout_id})",
                f"rollout.{c}.last": f"{last.at} {last.actor}: {last.action} - {last.reason}"[
                    :4000
                ],
            },
        )
        sync_cohort_aliases(
            client,
            c,
            (stable.registered_model, stable.version) if stable else None,
            (canary.registered_model, canary.version) if canary else None,
            # a stable bundle whose registered model could not be read: leave its alias be
            keep_stable=stable is None and s.stable_bundle is not None,
        )
    except (MlflowException, RegistryError, OSError) as exc:
        log.warning("MLflow mirror of %s rollout failed: %s", c, exc)

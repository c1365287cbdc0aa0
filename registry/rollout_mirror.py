"""The MLflow mirror of a rollout: what a reviewer sees in the MLflow UI.

Aliases `<cohort>-canary` (while a candidate runs) and `<cohort>-stable` (what the cohort's
manifest names as stable), and `rollout.<cohort>` tags with the status and the last transition on
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
    """Aliases and tags in MLflow; a failure is logged, never blocks the rollout."""
    if s.plan is None:
        return
    from mlflow.exceptions import MlflowException

    from registry.mlflow_models import set_cohort_alias, set_version_tags

    p, c, last = s.plan, s.cohort, s.history[-1]
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
        if last.action == "start":
            set_cohort_alias(client, p.registered_model, c, "canary", p.version)
        elif last.action == "complete":
            set_cohort_alias(client, p.registered_model, c, "canary", None)
            prev = s.previous_stable_version
            if prev and prev["registered_model"] != p.registered_model:
                set_cohort_alias(client, prev["registered_model"], c, "stable", None)
            set_cohort_alias(client, p.registered_model, c, "stable", p.version)
        elif last.action == "rollback":
            set_cohort_alias(client, p.registered_model, c, "canary", None)
            prev = s.previous_stable_version
            if last.from_status == "completed":
                set_cohort_alias(client, p.registered_model, c, "stable", None)
            if prev:
                set_cohort_alias(client, prev["registered_model"], c, "stable", prev["version"])
    except (MlflowException, RegistryError, OSError) as exc:
        log.warning("MLflow mirror of %s rollout failed: %s", c, exc)

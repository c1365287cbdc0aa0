"""Releasing to cohorts that take a registered version rather than a device bundle: model servers
(SavedModel through MLflow's scoring server, registry.serving) and hosts that load a directory
format (an OpenVINO IR). The registry's aliases are the release: `<cohort>-stable`, and on later
releases `<cohort>-canary` with the share of requests (`share.<cohort>`, the rollout's first step)
that registry.serving's router sends to it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from components.profiles import DeviceProfile


def takes_registered_version(profile: DeviceProfile, variant_path: Path | str) -> bool:
    """True for server cohorts and for variants that are directories (no single-file bundle)."""
    return profile.runs_on == "server" or Path(variant_path).is_dir()


def release_by_alias(client: MlflowClient, cohort: str, registered: dict[str, Any], rollout: bool) -> dict[str, Any]:
    """Point the cohort's alias at the registered version: stable on the first release (or without
    a rollout), else canary at the first rollout step's share of requests."""
    from registry.mlflow_models import cohort_alias, set_cohort_alias
    from registry.rollout_state import DEFAULT_STEPS
    from registry.serving import share_tag

    name, version = registered["name"], str(registered["version"])
    aliases = {k: str(v) for k, v in client.get_registered_model(name).aliases.items()}
    stable = aliases.get(cohort_alias(cohort, "stable"))
    if stable is None or stable == version or not rollout:
        set_cohort_alias(client, name, cohort, "stable", version)
        role = "stable"
    else:
        set_cohort_alias(client, name, cohort, "canary", version)
        client.set_model_version_tag(name, version, share_tag(cohort), f"{DEFAULT_STEPS[0]:g}")
        role = f"canary ({DEFAULT_STEPS[0]:g}% of requests)"
    return {"published": True, "role": role, "target": registered["target"],
            "registered": f"{name}/{version}", "serves": f"models:/{name}@{cohort_alias(cohort, role.split()[0])}"}

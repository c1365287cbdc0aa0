"""Targets converted here but not runnable here (Core ML): built only for profiles that list them
under `unverified_targets`, registered as "converted, not run", never blessed or published.

A conversion that fails is recorded with its one-line reason; the release goes on.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from flows.tracking import log_batch

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from components.profiles import DeviceCatalog
    from registry.data_versions import DataVersion


def register_unverified_targets(client: MlflowClient, stage_run_id: str, parent_run_id: str, model_name: str,
                                model: Any, catalog: DeviceCatalog, data_version: DataVersion,
                                float_model_uri: str, git_commit: str, out_dir: Path) -> dict[str, dict[str, Any]]:
    """{target: {name, version, status, profiles} | {failed: reason}} for every unverified target."""
    from components.convert.coreml import to_coreml
    from edgeops.errors import ConversionError
    from registry.mlflow_models import Lineage, register_unverified

    wanted: dict[str, list[str]] = {}
    for p in catalog.profiles.values():
        for t in p.unverified_targets:
            wanted.setdefault(t, []).append(p.name)
    lineage = Lineage(data_version=data_version.md5, git_commit=git_commit, run_id=parent_run_id,
                      parent_model=float_model_uri)
    out: dict[str, dict[str, Any]] = {}
    for target, profiles in wanted.items():
        try:
            v = to_coreml(model, target, out_dir)
        except ConversionError as exc:
            out[target] = {"failed": str(exc), "profiles": profiles}
            continue
        mv = register_unverified(client, stage_run_id, v.path, model_name=model_name, target=target,
                                 lineage=lineage, status=v.status,
                                 extra_tags={"bytes": str(v.bytes), "for_profiles": ",".join(profiles)})
        out[target] = {"name": mv.name, "version": mv.version, "status": v.status, "bytes": v.bytes,
                       "profiles": profiles}
    log_batch(client, stage_run_id, tags={f"unverified.{t}": (f"{o['name']}/{o['version']}: {o['status']}"
                                                             if "name" in o else f"failed: {o['failed']}")[:4000]
                                          for t, o in out.items()})
    return out

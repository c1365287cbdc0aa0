"""Retraining: labelled field feedback becomes a new data version, then the same release pipeline
runs on it (validation, training, verification, blessing) and publishes as a canary rollout,
never straight to 100%.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

log = logging.getLogger(__name__)


def run_ids(value: list[str] | str | None) -> list[str]:
    """Run ids from a list, or from the text a deployment trigger's template renders it as."""
    if value is None:
        return []
    items = value.strip().strip("[]").split(",") if isinstance(value, str) else value
    return [i for i in (str(v).strip().strip("'\"").strip() for v in items) if i]


@task(name="merge-feedback", cache_policy=NO_CACHE)
def merge_feedback_task(data_dir: str) -> dict[str, Any]:
    """Write labelled thumbnails from the compacted telemetry into the image folder."""
    import pandas as pd

    from edgeops.settings import Settings
    from monitoring.feedback import merge_feedback
    from monitoring.table import read_table
    from registry.bundles import bundle_file

    store = Settings.from_env().store()
    rows = read_table(store)
    if rows.empty or "label" not in rows:
        return {"offered": 0, "written": 0}
    rows = rows[rows["label"].notna() & rows["thumb"].notna()]
    totals: dict[str, Any] = {"offered": 0, "written": 0, "already_present": 0, "duplicates": 0,
                              "per_class": {}}
    for bundle_id, part in rows.groupby("bundle_id"):
        labels = tuple(json.loads(bundle_file(store, bundle_id, "labels.json")))
        merged = merge_feedback(pd.DataFrame(part), Path(data_dir), labels)
        totals["offered"] += merged.offered
        totals["written"] += merged.written
        totals["already_present"] += merged.already_present
        totals["duplicates"] += merged.duplicates
        for k, v in merged.per_class.items():
            totals["per_class"][k] = totals["per_class"].get(k, 0) + v
    return totals


@task(name="version-data", cache_policy=NO_CACHE)
def version_data_task(data_dir: str) -> str:
    """`dvc add` + `dvc push` inside a DVC repository; elsewhere the DVC hash alone is the version."""
    from registry.data_versions import dvc_hash, find_dvc_root, track_new_version

    path = Path(data_dir)
    if find_dvc_root(path) is not None and (path.parent / f"{path.name}.dvc").exists():
        return track_new_version(path, "labelled feedback").md5
    return dvc_hash(path).md5


@flow(name="retrain", log_prints=True)
def retrain(
    data_dir: str = "data/digits",
    reason: str = "manual",
    merge_feedback: bool = True,
    overrides: dict[str, Any] | None = None,
    cause_runs: list[str] | str | None = None,
) -> dict[str, Any]:
    """Merge feedback, version the data, and run the release pipeline as a canary.

    `cause_runs`: the MLflow runs of the monitoring windows that fired the retrain
    (flows.monitoring.retrain_trigger); the release run is tagged with them and its report links
    them. A deployment trigger renders the event's list as text ("a,b" or "['a', 'b']"): both read.
    """
    from flows.release import release_pipeline

    merged = merge_feedback_task(data_dir) if merge_feedback else {"offered": 0, "written": 0}
    version = version_data_task(data_dir)
    print(f"retrain ({reason}): {merged['written']} feedback images merged, data version {version}")
    result = release_pipeline(data_dir, trigger=f"retrain: {reason}", rollout=True, overrides=overrides,
                              cause_runs=run_ids(cause_runs))
    result["feedback"] = merged
    return result

"""MLflow tracking for flows: one experiment, parent and child runs, batched logging.

Every metric, param and tag of a step goes out in `log_batch` calls (chunked to MLflow's
limits) rather than one request each: on an `mlflow server` that is the difference between a
handful of HTTP requests per stage and hundreds. `LOG_CALLS` counts the requests made, so the
orchestration benchmark can report them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flows.links import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG, prefect_run_tags

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from edgeops.settings import Settings

MAX_METRICS, MAX_PARAMS, MAX_TAGS = 1000, 100, 100


@dataclass
class LogCounter:
    batches: int = 0
    artifacts: int = 0
    values: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)

    def reset(self) -> None:
        self.batches = self.artifacts = self.values = 0
        self.by_kind.clear()


LOG_CALLS = LogCounter()


def configure_mlflow(settings: Settings) -> tuple[MlflowClient, str]:
    """Point MLflow (client and fluent API, which `log_model` needs) at the settings.

    Called at the start of a flow run, never at import. Returns the client and experiment id.
    """
    import mlflow

    client = settings.mlflow_client()
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_registry_uri(settings.mlflow_tracking_uri)
    exp = client.get_experiment_by_name(settings.experiment_name)
    if exp is not None:
        experiment_id = exp.experiment_id
        if exp.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:
            client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    else:
        local = not settings.mlflow_tracking_uri.startswith(("http://", "https://", "databricks"))
        location = f"{settings.mlflow_artifact_root}/{settings.experiment_name}" if local else None
        experiment_id = client.create_experiment(settings.experiment_name, artifact_location=location,
                                                 tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
    mlflow.set_experiment(experiment_id=experiment_id)
    return client, experiment_id


def start_run(client: MlflowClient, experiment_id: str, name: str,
              tags: Mapping[str, str] | None = None) -> str:
    """A run tagged with the Prefect flow run that creates it (see flows.links)."""
    all_tags = {**prefect_run_tags(), "mlflow.runName": name, **(tags or {})}
    run = client.create_run(experiment_id, run_name=name, tags=all_tags)
    return run.info.run_id


def start_child(client: MlflowClient, experiment_id: str, parent_run_id: str | None, name: str,
                tags: Mapping[str, str] | None = None) -> str:
    all_tags = dict(tags or {})
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    return start_run(client, experiment_id, name, all_tags)


@contextmanager
def child_run(client: MlflowClient, experiment_id: str, parent_run_id: str | None, name: str,
              tags: Mapping[str, str] | None = None) -> Iterator[str]:
    """A child run that ends FINISHED, or FAILED if the body raises."""
    run_id = start_child(client, experiment_id, parent_run_id, name, tags)
    status = "FAILED"
    try:
        yield run_id
        status = "FINISHED"
    finally:
        client.set_terminated(run_id, status=status)


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def log_batch(client: MlflowClient, run_id: str, *, metrics: Mapping[str, float] | None = None,
              params: Mapping[str, Any] | None = None, tags: Mapping[str, Any] | None = None,
              step: int = 0, history: Mapping[str, list[float]] | None = None) -> None:
    """Log metrics (scalar or per-step history), params and tags in as few requests as possible."""
    from mlflow.entities import Metric, Param, RunTag

    now = int(time.time() * 1000)
    m = [Metric(k, float(v), now, step) for k, v in (metrics or {}).items() if v is not None]
    for key, values in (history or {}).items():
        m.extend(Metric(key, float(v), now, i) for i, v in enumerate(values))
    p = [Param(k, str(v)[:6000]) for k, v in (params or {}).items()]
    t = [RunTag(k, str(v)[:5000]) for k, v in (tags or {}).items()]
    while m or p or t:
        batch_m, m = m[:MAX_METRICS], m[MAX_METRICS:]
        batch_p, p = p[:MAX_PARAMS], p[MAX_PARAMS:]
        batch_t, t = t[:MAX_TAGS], t[MAX_TAGS:]
        client.log_batch(run_id, metrics=batch_m, params=batch_p, tags=batch_t)
        LOG_CALLS.batches += 1
        LOG_CALLS.values += len(batch_m) + len(batch_p) + len(batch_t)


def log_artifact(client: MlflowClient, run_id: str, path: Path | str, artifact_path: str | None = None) -> None:
    path = Path(path)
    if path.is_dir():
        client.log_artifacts(run_id, str(path), artifact_path)
    else:
        client.log_artifact(run_id, str(path), artifact_path)
    LOG_CALLS.artifacts += 1


def flatten(prefix: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"prefix.a.b": 1}: nested params as MLflow keys."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(value, Mapping):
            out.update(flatten(name, value))
        else:
            out[name] = value
    return out

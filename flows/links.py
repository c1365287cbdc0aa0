"""Prefect and MLflow, linked both ways.

Every MLflow run a flow creates carries the Prefect flow run that made it (id, UI address,
deployment) and `mlflow.source.name`, so a reviewer in the MLflow UI can open the run's logs in
Prefect; the flow run gets link artifacts to its MLflow runs and registered versions, so the
Prefect UI leads back. Outside a flow run (a DVC stage, a test) the Prefect tags are left out.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

log = logging.getLogger(__name__)

# MLflow 3 opens an experiment on its GenAI view unless told what kind it is.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"


def prefect_run_tags() -> dict[str, str]:
    """Tags naming the current Prefect flow run (empty outside one)."""
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None:
        return {}
    run = ctx.flow_run
    flow_name = ctx.flow.name if ctx.flow is not None else run.name
    deployment = _deployment_name(run.deployment_id)
    tags = {
        "prefect.flow_run_id": str(run.id),
        "prefect.flow_run_name": run.name,
        "prefect.flow_name": flow_name,
        "mlflow.source.name": f"prefect:{flow_name}" + (f"/{deployment}" if deployment else ""),
        "mlflow.source.type": "JOB",
    }
    if deployment:
        tags["prefect.deployment"] = deployment
    url = flow_run_url(str(run.id))
    if url:
        tags["prefect.flow_run_url"] = url
    return tags


def flow_run_url(flow_run_id: str) -> str | None:
    """The flow run's page in the Prefect UI, when a server (not the ephemeral API) runs it."""
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL

    ui = PREFECT_UI_URL.value() or None
    api = PREFECT_API_URL.value() or None
    if not ui and api:
        ui = api.removesuffix("/").removesuffix("/api")
    return f"{ui.rstrip('/')}/runs/flow-run/{flow_run_id}" if ui else None


def _deployment_name(deployment_id: Any) -> str | None:
    if deployment_id is None:
        return None
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            return client.read_deployment(deployment_id).name
    except Exception as exc:  # noqa: BLE001 - a missing name never stops a run; the id is tagged
        log.debug("deployment %s not readable: %s", deployment_id, exc)
        return str(deployment_id)


def mlflow_ui_base(tracking_uri: str, ui_url: str | None = None) -> str:
    """Where a person opens MLflow: the server itself, or `mlflow ui`'s default for a local file."""
    if ui_url:
        return ui_url.rstrip("/")
    if tracking_uri.startswith(("http://", "https://")):
        return tracking_uri.rstrip("/")
    return "http://127.0.0.1:5000"


def mlflow_run_url(base: str, experiment_id: str, run_id: str) -> str:
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}"


def mlflow_model_version_url(base: str, name: str, version: str | int) -> str:
    return f"{base}/#/models/{quote(name, safe='')}/versions/{version}"


def link_in_prefect(key: str, url: str, text: str, description: str) -> None:
    """A link artifact on the current flow run (nothing outside a flow run)."""
    from prefect.artifacts import create_link_artifact
    from prefect.context import FlowRunContext

    if FlowRunContext.get() is None:
        return
    create_link_artifact(link=url, link_text=text, key=_artifact_key(key), description=description)


def _artifact_key(key: str) -> str:
    """Prefect artifact keys: lowercase letters, digits and dashes only."""
    cleaned = "".join(c if c.isalnum() else "-" for c in key.lower())
    return "-".join(part for part in cleaned.split("-") if part)[:100]

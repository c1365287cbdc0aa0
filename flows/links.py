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
    """Tags naming the current Prefect flow run (empty outside one).

    A subflow (the release a retrain runs) is tagged with its own run and with the root run that
    the deployment started, and with that deployment's name.
    """
    from prefect.runtime import deployment, flow_run

    run_id = flow_run.id
    if not run_id:
        return {}
    flow_name = flow_run.flow_name or "flow"
    tags = {"prefect.flow_run_id": str(run_id), "prefect.flow_run_name": str(flow_run.name),
            "prefect.flow_name": flow_name, "mlflow.source.type": "JOB"}
    root = _quietly(lambda: flow_run.root_flow_run_id)
    if root and str(root) != str(run_id):
        tags["prefect.root_flow_run_id"] = str(root)
    name = _quietly(lambda: deployment.name)
    if name:
        tags["prefect.deployment"] = str(name)
    tags["mlflow.source.name"] = f"prefect:{name}/{flow_name}" if name else f"prefect:{flow_name}"
    url = flow_run_url(str(run_id))
    if url:
        tags["prefect.flow_run_url"] = str(url)
    return tags


def flow_run_url(flow_run_id: str) -> str | None:
    """The flow run's page in the Prefect UI, when a server (not the ephemeral API) runs it."""
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL

    ui = PREFECT_UI_URL.value() or None
    api = PREFECT_API_URL.value() or None
    if not ui and api:
        ui = api.rstrip("/").removesuffix("/api")
    return f"{ui.rstrip('/')}/runs/flow-run/{flow_run_id}" if ui else None


def _quietly(read: Any) -> Any:
    """A runtime attribute that needs the API (root run, deployment name): None if unreadable,
    never an error that would stop the run it only describes."""
    try:
        return read()
    except Exception as exc:  # noqa: BLE001 - see docstring; the run id is always tagged
        log.debug("prefect runtime attribute not readable: %s", exc)
        return None


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

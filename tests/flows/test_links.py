"""Prefect <-> MLflow links: what a run is tagged with inside and outside a flow run."""

from __future__ import annotations

import flows  # noqa: F401 (Prefect defaults before prefect is imported)
from flows.links import (
    _artifact_key,
    mlflow_model_version_url,
    mlflow_run_url,
    mlflow_ui_base,
    prefect_run_tags,
)


def test_outside_a_flow_run_no_prefect_tags() -> None:
    assert prefect_run_tags() == {}


def test_a_subflow_names_its_own_run_and_the_root() -> None:
    from prefect import flow

    @flow(name="inner-probe")
    def inner() -> dict[str, str]:
        return prefect_run_tags()

    @flow(name="outer-probe")
    def outer() -> tuple[dict[str, str], dict[str, str]]:
        return prefect_run_tags(), inner()

    top, sub = outer()
    assert top["prefect.flow_name"] == "outer-probe"
    assert top["mlflow.source.name"] == "prefect:outer-probe"  # no deployment in-process
    assert "prefect.root_flow_run_id" not in top
    assert sub["prefect.root_flow_run_id"] == top["prefect.flow_run_id"]
    assert sub["prefect.flow_run_id"] != top["prefect.flow_run_id"]
    assert sub["mlflow.source.type"] == "JOB"


def test_urls_and_artifact_keys() -> None:
    assert mlflow_ui_base("sqlite:////x/mlflow.db") == "http://127.0.0.1:5000"
    assert mlflow_ui_base("http://10.0.0.5:5000/") == "http://10.0.0.5:5000"
    assert mlflow_ui_base("sqlite:///x", "https://mlflow.example/") == "https://mlflow.example"
    assert mlflow_run_url("http://h", "1", "abc") == "http://h/#/experiments/1/runs/abc"
    assert mlflow_model_version_url("http://h", "digits-tflite int8", 3) == "http://h/#/models/digits-tflite%20int8/versions/3"
    assert _artifact_key("MLflow model digits_tflite-int8/3") == "mlflow-model-digits-tflite-int8-3"

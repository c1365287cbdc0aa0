"""The demo's cohort table: every cohort of devices.yaml with its variant and why (or the reason for
none), the MLflow aliases that say which version serves it (read back from the registry), Core ML
converted-not-run entries, and what it did in the field."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from components.profiles import load_devices
from flows.demo import cohort_rows, cohort_table

REPO = Path(__file__).resolve().parents[2]


def test_every_cohort_has_a_row_with_its_variant_reason_and_aliases(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    from registry.mlflow_models import set_cohort_alias

    catalog = load_devices(REPO / "devices.yaml")
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'm.db'}", registry_uri=f"sqlite:///{tmp_path / 'm.db'}")
    for name in ("digits-tflite-f32", "digits-savedmodel"):
        client.create_registered_model(name)
        for _ in range(2):
            client.create_model_version(name, source=str(tmp_path))
    set_cohort_alias(client, "digits-tflite-f32", "pi-fleet-eu", "stable", "1")
    set_cohort_alias(client, "digits-savedmodel", "inference-servers", "stable", "1")
    set_cohort_alias(client, "digits-savedmodel", "inference-servers", "canary", "2")
    published = {
        "pi-fleet-eu": {"published": True, "role": "stable", "variant": "tflite-f32", "profile": "raspberry-pi-4",
                        "why": "best on validation"},
        "inference-servers": {"published": True, "role": "canary (1% of requests)", "variant": "savedmodel",
                              "profile": "server", "why": "the only savedmodel"},
        "coral-line": {"published": False, "profile": "coral-edge-tpu",
                       "reason": "no variant fits profile coral-edge-tpu: tflite-int8 not blessed"},
    }
    release = {"published": published,
               "unverified": {"coreml-f16": {"name": "digits-coreml-f16", "version": "1",
                                             "status": "converted, not run", "profiles": ["iphone"]}}}
    summary = {"release": {"published": {c: str(p) for c, p in published.items()}}, "retrain": None,
               "fleet_clean": {"accuracy": {"pi-fleet-eu": 0.9}, "not_simulated": {"web-users": "page ran"}},
               "fleet_drift": {"accuracy": {"pi-fleet-eu": 0.6}, "not_simulated": {}}}
    rows = cohort_rows(summary, release, catalog, client)
    assert list(rows) == list(catalog.cohorts)  # every cohort of devices.yaml, in its order
    assert rows["pi-fleet-eu"]["variant"] == "tflite-f32" and rows["pi-fleet-eu"]["why"] == "best on validation"
    assert rows["pi-fleet-eu"]["mlflow"] == ["digits-tflite-f32 v1 (@pi-fleet-eu-stable)"]
    assert rows["inference-servers"]["mlflow"] == ["digits-savedmodel v2 (@inference-servers-canary)",
                                                   "digits-savedmodel v1 (@inference-servers-stable)"]
    assert rows["coral-line"]["variant"] is None and rows["coral-line"]["why"].startswith("no variant fits")
    assert rows["iphone-beta"]["unverified"] == ["coreml-f16: digits-coreml-f16 v1 converted, not run"]
    assert rows["web-users"]["field"] == {"fleet_clean": "page ran", "fleet_drift": None}
    console = Console(record=True, width=400)
    console.print(cohort_table(rows))
    text = console.export_text()
    for cohort in catalog.cohorts:
        assert cohort in text
    assert "clean: 90.0% (agents); drift: 60.0% (agents)" in text

"""The release report on the parent MLflow run: what shipped where, against what, and why."""

from __future__ import annotations

from flows.report import release_headline, release_report

RESULT = {
    "model_name": "digits", "data_version": "abc123", "run_id": "r1",
    "float": {"test_accuracy": 0.99, "params": 9500, "macs": 100000},
    "published": {
        "pi-fleet-eu": {"published": True, "role": "canary", "target": "tflite-int8", "variant": "tflite-int8",
                        "bundle_id": "f" * 64, "registered": "digits-tflite-int8/3", "replaces": "digits-tflite-int8/2"},
        "coral-line": {"published": False, "reason": "no variant compiled for the Edge TPU"},
    },
    "selection": {
        "per_profile": {"raspberry-pi-4": {"target": "tflite-int8", "reason": "smallest blessed on validation"}},
        "blessings": {"tflite-int8": {"raspberry-pi-4": {
            "blessed": True, "reasons": ["vs float: -0.3 pt [-1.1, +0.5], McNemar p=0.02 within 1.0 pt: pass"]}}},
    },
    "conversion_failures": {"coreml": "runs on macOS only"},
}


def test_report_names_cohort_model_version_bundle_and_evidence() -> None:
    text = release_report(RESULT, "retrain: harm in pi-fleet-eu")
    assert "| pi-fleet-eu | canary | digits-tflite-int8 | 3 | tflite-int8 | `ffffffffffff` | digits-tflite-int8/2 |" in text
    assert "coral-line | not published: no variant compiled for the Edge TPU" in text
    assert "McNemar p=0.02" in text and "Trigger: retrain: harm in pi-fleet-eu" in text
    assert "coreml: runs on macOS only" in text


def test_headline_lists_shipped_and_held_cohorts() -> None:
    assert release_headline(RESULT) == (
        "Shipped pi-fleet-eu: digits-tflite-int8/3 (canary). Not published: coral-line.")

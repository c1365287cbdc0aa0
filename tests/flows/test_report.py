"""The release report on the parent MLflow run (what shipped where, against what it replaces, on
the same test images) and the notes of a registered version (verdict first, no contradictions)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from components.blessing import Paired, bless
from components.conversion import Variant
from components.measure import Measurement
from components.profiles import DeviceProfile
from edgeops.params import EvaluateParams
from flows.report import release_headline, release_markdown, release_report, version_notes
from registry.data_versions import DataVersion

Y = np.arange(1000) % 10
PROFILE = DeviceProfile(name="pi", targets=("tflite-f32",), max_model_bytes=10**6, arena_bytes=10**6,
                        latency_budget_ms=100.0, throughput_macs_per_s=1e9)


def _wrong(k: int) -> np.ndarray:
    """Predictions with the first k images wrong."""
    pred = Y.copy()
    pred[:k] = (Y[:k] + 1) % 10
    return pred


def _variant(pred: np.ndarray, parent_accuracy: float, float_pred: np.ndarray) -> Variant:
    return Variant(target="tflite-f32", path=Path("m.tflite"), bytes=1000, gzip_bytes=900,
                   accuracy=float((pred == Y).mean()), float_accuracy=parent_accuracy,
                   agreement=0.99, max_abs_diff=0.0, input_dtype="float32", output_dtype="float32",
                   tensor_dtypes=("float32",), ops=("CONV_2D",), n_test=len(Y), val_accuracy=0.95,
                   predictions=tuple(pred.tolist()), float_predictions=tuple(float_pred.tolist()),
                   measurement=Measurement("tflite-f32", 1000, 900, 800, 200, 10_000, 0.1, 0.2, 5, 4096, "test"))


def _result() -> dict:
    float_pred, stable_pred, mine = _wrong(10), _wrong(30), _wrong(12)
    v = _variant(mine, 0.989, float_pred)
    b = bless(v, PROFILE, 0.99, None, EvaluateParams(), Paired(Y, float_pred, stable_pred)).to_dict()
    return {
        "model_name": "digits", "data_version": "abc123", "run_id": "r1",
        "float": {"test_accuracy": 0.99, "params": 9500, "macs": 100000},
        "published": {
            "pi-fleet-eu": {"published": True, "role": "canary", "target": "tflite-f32", "variant": "tflite-f32",
                            "profile": "pi", "bundle_id": "f" * 64, "registered": "digits-tflite-f32/3",
                            "replaces": {"registered_model": "digits-prune-tflite-f32", "version": "2"}},
            "pi-fleet-us": {"published": True, "role": "stable", "target": "tflite-f32", "variant": "tflite-f32",
                            "profile": "pi", "bundle_id": "f" * 64, "registered": "digits-tflite-f32/3",
                            "replaces": None},
            "coral-line": {"published": False, "reason": "no variant compiled for the Edge TPU"},
        },
        "selection": {"per_profile": {"pi": {"target": "tflite-f32", "reason": "smallest blessed on validation"}},
                      "blessings": {"tflite-f32": {"pi": b}}},
        "conversion_failures": {"coreml": "runs on macOS only"},
    }


def test_report_names_what_each_release_replaces_with_both_scores() -> None:
    text = release_report(_result(), "retrain: harm in pi-fleet-eu")
    assert ("| pi-fleet-eu | canary | digits-tflite-f32 | 3 | tflite-f32 | `ffffffffffff` | "
            "digits-prune-tflite-f32 v2 |") in text
    assert "| pi-fleet-us | stable | digits-tflite-f32 | 3 | tflite-f32 | `ffffffffffff` | nothing (first release) |" in text
    row = next(line for line in text.splitlines() if line.startswith("| pi-fleet-eu | digits-prune-tflite-f32 v2"))
    # shipped 988/1000, stable 970/1000 on the same images (Wilson intervals): +0.018
    assert "| 0.9880 (0.9791-0.9931) | 0.9700 (0.9575-0.9789), n=1000 | +0.0180 | +0.0111 |" in row
    assert f"| {EvaluateParams().max_regression_vs_stable:g} | pass (p=" in row
    assert "coral-line | not published: no variant compiled for the Edge TPU" in text
    assert "Trigger: retrain: harm in pi-fleet-eu" in text and "coreml: runs on macOS only" in text
    result = {**_result(), "variants": {}, "registered": {}}
    assert "| pi-fleet-eu | pi | canary | tflite-f32 | digits-prune-tflite-f32 v2 |" in release_markdown(result)


def test_headline_lists_shipped_and_held_cohorts() -> None:
    assert release_headline(_result()) == (
        "Shipped pi-fleet-eu: digits-tflite-f32/3 (canary); pi-fleet-us: digits-tflite-f32/3 (stable). "
        "Not published: coral-line.")


def test_version_notes_open_with_the_verdict_and_name_each_reference() -> None:
    """A pruned variant: 0.0020 lost in conversion from its own Keras model, 0.0300 below the
    float model. The notes say both, naming which model each is against, verdict first."""
    float_pred = _wrong(10)  # 0.990
    pred = _wrong(40)  # 0.960: errors a superset of the float model's (30 losses, 0 wins)
    v = _variant(pred, 0.962, float_pred)
    b = bless(v, PROFILE, 0.99, None, EvaluateParams(), Paired(Y, float_pred)).to_dict()
    assert not b["blessed"]
    blessings = {"pi": b, "mcu": {"blessed": False, "reasons": ["not chosen: x ranks first on validation"],
                                  "metrics": {}, "outcome": "not chosen"}}
    notes = version_notes("prune/tflite-f32", v, DataVersion("d", "abc.dir", 400, 1), blessings, None)
    first = notes.splitlines()[0]
    assert first.startswith("Verdict: Not blessed for pi: fail against the float model (difference -0.0300")
    assert "Conversion: -0.0020 against its fine-tuned prune Keras model it was converted from (0.9620)" in notes
    assert "Against the float model (0.9900): -0.0300, of which -0.0280 from prune and -0.0020 from conversion" in notes
    assert "- pi: not blessed. against the float model (0.9900): fail, difference -0.0300" in notes
    assert "- mcu: not chosen" in notes and "float parent" not in notes
    blessed = bless(_variant(float_pred, 0.99, float_pred), PROFILE, 0.99, None, EvaluateParams(),
                    Paired(Y, float_pred)).to_dict()
    notes = version_notes("tflite-f32", _variant(float_pred, 0.99, float_pred), DataVersion("d", "abc.dir", 400, 1),
                          {"pi": blessed}, "old.dir")
    assert notes.startswith("Verdict: Blessed for pi.") and "no stable yet" in notes
    assert "Conversion: +0.0000 against the float model it was converted from" in notes


def test_report_links_the_monitoring_runs_that_triggered_the_retrain(tmp_path: Path) -> None:
    """A retrain's release names the drift runs that fired it, each a link into the MLflow UI
    (flows.links), in the report and the Prefect summary; a run MLflow lacks keeps its id."""
    from mlflow import MlflowClient

    from flows.report import cause_run_entries

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'm.db'}")
    exp = client.create_experiment("edgeops", artifact_location=str(tmp_path / "artifacts"))
    run = client.create_run(exp, run_name="pi-fleet-eu v3 window 2026-11-20 10:00",
                            tags={"edgeops.stage": "drift",
                                  "reasons": "harm: estimated accuracy 0.800 vs reference 0.970 | data drift"})
    rid, missing = run.info.run_id, "0" * 32
    causes = cause_run_entries(client, [rid, missing], exp)
    result = {**_result(), "variants": {}, "registered": {}, "mlflow_ui": "http://mlflow.example:5000",
              "cause_runs": causes}
    text = release_report(result, "retrain: harm in pi-fleet-eu")
    assert "## What triggered it" in text
    assert (f"- [pi-fleet-eu v3 window 2026-11-20 10:00](http://mlflow.example:5000/#/experiments/{exp}/runs/{rid})"
            ": harm: estimated accuracy 0.800 vs reference 0.970\n") in text
    assert f"- [{missing} (not found)](http://mlflow.example:5000/#/experiments/{exp}/runs/{missing})" in text
    assert text.index("## What triggered it") < text.index("## What shipped where")
    assert f"/runs/{rid})" in release_markdown(result)
    assert "What triggered it" not in release_report(_result(), "manual")  # a manual release has no cause

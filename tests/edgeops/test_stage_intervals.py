"""The DVC evaluate stage gives each accuracy it reports a 95% Wilson interval (components.evidence)."""

from __future__ import annotations

import json
from pathlib import Path

from components.conversion import Variant
from components.evidence import wilson
from edgeops.cli.stages import with_accuracy_intervals


def _variant(target: str, val: tuple[int, ...]) -> dict:
    v = Variant(target, Path(f"/nonexistent/{target}"), 30_000, 20_000, 0.95, 0.96, 0.99, 0.01,
                "int8", "int8", ("int8",), (), 200, None, 0.9 if val else None, val_predictions=val)
    d = v.to_dict()
    for k in ("gate_split", "gate_agreement", "gate_n"):  # a variants.json written before the gate moved
        d.pop(k)
    return d


def test_evaluate_stage_gives_each_accuracy_an_interval(tmp_path: Path) -> None:
    path = tmp_path / "variants.json"
    path.write_text(json.dumps({"tflite-int8": _variant("tflite-int8", (1,) * 50),
                                "onnx": _variant("onnx", ())}))
    selection = {"mcu": {"target": "tflite-int8", "candidate": "tflite-int8", "accuracy": 0.95},
                 "host": {"target": None, "candidate": "tflite-int8", "accuracy": None},
                 "server": {"target": "onnx", "candidate": "onnx", "accuracy": 0.95},
                 "coral": {"target": None, "candidate": None}}
    lines = with_accuracy_intervals(selection, path)

    lo, hi = wilson(190, 200)
    assert (selection["mcu"]["accuracy_low"], selection["mcu"]["accuracy_high"], selection["mcu"]["n_test"]) == (
        lo, hi, 200)
    vlo, vhi = wilson(45, 50)
    assert (selection["mcu"]["val_accuracy_low"], selection["mcu"]["val_accuracy_high"]) == (vlo, vhi)
    assert lines["mcu"] == (f"tflite-int8: test 0.9500 (95% CI {lo:.4f}-{hi:.4f}, n=200); "
                            f"validation 0.9000 (95% CI {vlo:.4f}-{vhi:.4f}, n=50)")
    # nothing released: validation's candidate gets its interval, the test accuracy stays unreported
    assert selection["host"]["accuracy"] is None and "accuracy_low" not in selection["host"]
    assert selection["host"]["n_validation"] == 50
    # no recorded validation predictions: no validation interval is invented
    assert "val_accuracy_low" not in selection["server"] and "validation" not in lines["server"]
    assert "coral" not in lines

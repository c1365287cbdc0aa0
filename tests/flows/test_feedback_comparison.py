"""Champion and challenger on held-out field feedback: which images, and the paired comparison."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from components.prepare import prepare
from edgeops.params import EvaluateParams, PrepareParams
from flows.selection import compare_on_feedback, held_out_feedback
from tests.components.conftest import write_folder


def test_held_out_feedback_is_fb_images_outside_train_and_val(tmp_path: Path) -> None:
    data = write_folder(tmp_path / "data", {"a": 20, "b": 20, "c": 20})
    extra = write_folder(tmp_path / "extra", {"a": 20, "b": 20, "c": 20}, seed=3)
    for label in ("a", "b", "c"):
        for i, f in enumerate(sorted((extra / label).iterdir())):
            shutil.copy(f, data / label / f"fb-dev-{i}.png")
    p = prepare(data, PrepareParams(image_size=10, min_per_class=5))
    x, y = held_out_feedback(p)
    m = p.manifest
    fb = m[m["path"].str.contains("/fb-") & m["split"].isin(["test", "field"])]
    assert len(y) == len(fb) > 0 and x.shape[1:] == p.x_test.shape[1:]
    rows = {r.tobytes() for r in x}
    assert not rows & {r.tobytes() for r in p.x_train} and not rows & {r.tobytes() for r in p.x_val}


def test_compare_on_feedback_reports_intervals_and_the_paired_verdict() -> None:
    y = np.zeros(200, np.int64)
    stable = np.zeros(200, np.int64)
    stable[:40] = 1  # the stable is wrong on 40 images
    challenger = np.zeros(200, np.int64)
    challenger[:5] = 1  # the challenger on 5 of them
    out = compare_on_feedback(challenger, stable, y, EvaluateParams())
    assert out["n"] == 200 and out["challenger"]["value"] == pytest.approx(0.975)
    assert out["stable"]["value"] == pytest.approx(0.8)
    assert out["verdict"]["wins"] == 35 and out["verdict"]["outcome"] == "pass"
    assert "95% CI" in out["line"] and "held-out field feedback" in out["line"]

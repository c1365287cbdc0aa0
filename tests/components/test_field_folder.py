"""A user's field folder for the simulator: labels from folder names, unseen classes marked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from components.field_folder import UNSEEN_LABEL, load_field_folder
from device.preprocessing import PreprocessingSpec
from edgeops.errors import DataError

SPEC = PreprocessingSpec(8, 8, 1, (0.5,), (0.5,), ("0", "1", "2"))


def _folder(root: Path, classes: list[str]) -> Path:
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((20, 16), 40 * i, np.uint8)).save(root / c / f"{i}.png")
    return root


def test_frames_at_the_model_input_with_labels_by_folder(tmp_path: Path) -> None:
    pool = load_field_folder(_folder(tmp_path / "f", ["1", "2", "cat"]), SPEC)
    assert pool.x01.shape == (6, 8, 8, 1) and pool.classes == SPEC.labels
    assert sorted(pool.labels.tolist()) == [UNSEEN_LABEL, UNSEEN_LABEL, 1, 1, 2, 2]


def test_a_folder_with_none_of_the_model_classes_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no class folder matches"):
        load_field_folder(_folder(tmp_path / "g", ["cat", "dog"]), SPEC)

"""The fleet's frames come from the field split only: never a train, validation or test image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from components.prepare import prepare
from device.fleet import field_pool
from edgeops.errors import DataError
from edgeops.params import PrepareParams
from tests.components.conftest import write_folder


def _rows(x: np.ndarray) -> set[bytes]:
    return {r.tobytes() for r in x.astype(np.float32)}


def test_the_pool_is_the_field_split_and_nothing_else(tmp_path: Path) -> None:
    data = write_folder(tmp_path / "data", {"a": 20, "b": 20, "c": 20})
    prepared = prepare(data, PrepareParams(image_size=10, min_per_class=5))
    out = prepared.save(tmp_path / "prepared")
    pool = field_pool(out)
    assert len(pool.x01) == len(prepared.x_field) > 0 and pool.classes == ("a", "b", "c")
    np.testing.assert_array_equal(pool.labels, prepared.y_field)
    served = _rows(pool.x01)
    assert served == _rows(prepared.x_field)
    for split in ("train", "val", "test"):
        assert not served & _rows(prepared.split(split)[0]), split


def test_prepared_data_without_a_field_split_is_refused(tmp_path: Path) -> None:
    data = write_folder(tmp_path / "data", {"a": 20, "b": 20, "c": 20})
    params = PrepareParams(image_size=10, min_per_class=5, field_fraction=0.0)
    out = prepare(data, params).save(tmp_path / "prepared")
    with pytest.raises(DataError, match="field split is empty") as exc:
        field_pool(out)
    assert str(out) in str(exc.value)
    with pytest.raises(DataError, match="no field split"):
        field_pool(tmp_path / "nowhere")

"""Prepare: splits, statistics, manifest, duplicates, atomic save."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from components.prepare import PreparedData, UnitImages, prepare
from edgeops.errors import DataError
from edgeops.params import PrepareParams
from tests.components.conftest import write_folder

PARAMS = PrepareParams(image_size=10, min_per_class=5)


def test_splits_come_from_content_and_statistics_from_train(tiny_folder: Path) -> None:
    p = prepare(tiny_folder, PARAMS)
    assert p.x_train.shape[1:] == (10, 10, 1) and p.x_train.dtype == np.float32
    assert p.x_train[:2].dtype == np.float32 and isinstance(p.x_train, UnitImages)
    assert len(p.x_train) + len(p.x_val) + len(p.x_test) + len(p.x_field) == 60
    for s in ("train", "test"):  # every class in train and in test (refused otherwise)
        assert sorted(set(p.split(s)[1].tolist())) == [0, 1, 2]
    assert len(p.x_field) > 0 and p.x_field.shape[1:] == (10, 10, 1)
    assert p.x_train.min() >= 0.0 and p.x_train.max() <= 1.0
    assert p.spec.mean[0] == pytest.approx(float(p.x_train.mean()), abs=1e-5)
    assert p.spec.std[0] == pytest.approx(float(p.x_train.std()), abs=1e-5)
    assert p.spec.labels == ("bars_h", "bars_v", "diag")
    assert p.skipped == 1  # notes.txt
    m = p.manifest
    assert list(m.columns) == ["path", "label", "split", "index", "sha256", "height", "width", "channels", "group"]
    assert set(m["height"]) == {12, 16, 20}
    assert list(p.splits.columns) == ["path", "sha256", "group", "split"]
    again = prepare(tiny_folder, PARAMS)
    assert again.manifest.equals(m) and np.array_equal(again.x_train, p.x_train)
    other = prepare(tiny_folder, PARAMS.model_copy(update={"split_salt": "another"}))
    assert not other.manifest["split"].equals(m["split"])
    # a manifest row points at its array row
    row = m[m["split"] == "test"].iloc[0]
    assert p.spec.labels[p.y_test[row["index"]]] == row["label"]


def test_colour_images_make_three_channels(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "c", {"a": 10, "b": 10, "c": 10}, colour_every=3)
    p = prepare(root, PARAMS)
    assert p.spec.channels == 3 and p.x_train.shape[-1] == 3
    assert set(p.manifest["channels"]) == {1, 3}
    forced = prepare(root, PARAMS.model_copy(update={"channels": 1}))
    assert forced.x_train.shape[-1] == 1


def test_duplicates_share_a_split_and_max_images_is_stratified(tiny_folder: Path) -> None:
    capped = prepare(tiny_folder, PARAMS.model_copy(update={"max_images": 30}))
    assert capped.manifest["label"].value_counts().to_dict() == {"bars_h": 10, "bars_v": 10, "diag": 10}
    for i in range(5):  # copies of one file under the same class
        shutil.copy(tiny_folder / "diag" / "img_000.png", tiny_folder / "diag" / f"copy_{i}.png")
    p = prepare(tiny_folder, PARAMS)
    dup = p.manifest[p.manifest["sha256"].duplicated(keep=False)]
    assert len(dup) == 6 and dup["split"].nunique() == 1


def test_undecodable_file_stops_prepare_with_its_path(tiny_folder: Path) -> None:
    bad = tiny_folder / "diag" / "zz_bad.jpg"
    bad.write_bytes(b"garbage")
    with pytest.raises(DataError, match="cannot decode") as exc:
        prepare(tiny_folder, PARAMS)
    assert "zz_bad.jpg" in str(exc.value)


def test_save_load_round_trip_and_atomic_failure(
    tiny_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = prepare(tiny_folder, PARAMS)
    out = p.save(tmp_path / "prepared")
    q = PreparedData.load(out)
    assert q.spec == p.spec and q.skipped == p.skipped
    assert q.manifest.equals(p.manifest)
    assert (out / "splits.csv").exists()
    for s in ("train", "val", "test", "field"):
        assert np.array_equal(q.split(s)[0], p.split(s)[0])
        assert np.array_equal(q.split(s)[1], p.split(s)[1])
    p.save(out)  # overwriting keeps exactly one copy
    assert sorted(x.name for x in tmp_path.iterdir()) == ["data", "prepared"]

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("components.prepared.write_metadata", boom)
    with pytest.raises(OSError, match="disk full"):
        p.save(tmp_path / "second")
    assert sorted(x.name for x in tmp_path.iterdir()) == ["data", "prepared"]
    with pytest.raises(DataError, match="missing or unreadable"):
        PreparedData.load(tmp_path / "second")


def test_large_colour_jpegs_are_resized_on_decode(tmp_path: Path) -> None:
    from PIL import Image

    root = write_folder(tmp_path / "j", {"a": 6, "b": 6}, fmt="JPEG")
    rng = np.random.default_rng(1)
    big = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    Image.fromarray(big).save(root / "a" / "photo.jpeg", quality=90)
    p = prepare(root, PrepareParams(image_size=16, min_per_class=5))
    row = p.manifest[p.manifest["path"] == "a/photo.jpeg"].iloc[0]
    assert (row["height"], row["width"], row["channels"]) == (480, 640, 3)
    assert p.spec.channels == 3 and p.x_train.shape[1:] == (16, 16, 3)

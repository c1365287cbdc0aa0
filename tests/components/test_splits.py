"""Splits that never move: add, remove, reorder, copies, feedback, and the refusals."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from components.prepare import PreparedData, prepare
from components.splits import read_split_manifest
from edgeops.errors import DataError
from edgeops.params import PrepareParams
from tests.components.conftest import write_folder

PARAMS = PrepareParams(image_size=10, min_per_class=5)
CLASSES = {"bars_h": 24, "bars_v": 24, "diag": 24}


def _split_of(p: PreparedData) -> dict[str, str]:
    return dict(zip(p.manifest["sha256"], p.manifest["split"], strict=True))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return write_folder(tmp_path / "data", CLASSES)


def test_adding_removing_and_reordering_moves_no_image(folder: Path, tmp_path: Path) -> None:
    """With the previous version's manifest (as the release flow passes it) nothing seen moves."""
    first = prepare(folder, PARAMS)
    before = _split_of(first)
    assert set(before.values()) == {"train", "val", "test", "field"}
    extra = write_folder(tmp_path / "extra", CLASSES, seed=5)  # new pictures, some near-duplicates
    for label in CLASSES:
        for i, f in enumerate(sorted((extra / label).iterdir())):
            shutil.copy(f, folder / label / f"new_{i:03d}.png")
    second = prepare(folder, PARAMS, previous=first.splits)
    added = _split_of(second)
    assert {k: added[k] for k in before} == before and len(added) == 2 * len(before)
    for f in sorted((folder / "diag").glob("img_*"))[:10]:
        f.unlink()
    removed = _split_of(prepare(folder, PARAMS, previous=second.splits))
    assert all(removed[k] == added[k] for k in removed)
    # another folder, other file names in reverse order: the same content, the same splits,
    # without any manifest (the rule is a function of content alone)
    moved = tmp_path / "elsewhere"
    for label in CLASSES:
        files = sorted((folder / label).iterdir())
        (moved / label).mkdir(parents=True)
        for i, f in enumerate(reversed(files)):
            shutil.copy(f, moved / label / f"z{i:03d}_{label}.png")
    assert _split_of(prepare(moved, PARAMS)) == _split_of(prepare(folder, PARAMS))


def test_without_a_manifest_only_images_whose_group_changed_can_move(folder: Path, tmp_path: Path) -> None:
    first = prepare(folder, PARAMS)
    extra = write_folder(tmp_path / "extra", CLASSES, seed=5)
    for label in CLASSES:
        for i, f in enumerate(sorted((extra / label).iterdir())):
            shutil.copy(f, folder / label / f"new_{i:03d}.png")
    second = prepare(folder, PARAMS).manifest.set_index("sha256")
    for _, row in first.manifest.iterrows():
        if second.loc[row["sha256"], "split"] != row["split"]:
            members = second[second["group"] == second.loc[row["sha256"], "group"]]
            assert members["path"].str.contains("new_").any()  # a new near-duplicate joined


def _resized_jpeg(src: Path, dst: Path, scale: float = 2.0) -> None:
    with Image.open(src) as im:
        big = im.convert("RGB").resize((int(im.width * scale), int(im.height * scale)), Image.Resampling.BILINEAR)
        buf = io.BytesIO()
        big.save(buf, format="JPEG", quality=85)
    dst.write_bytes(buf.getvalue())


@pytest.mark.parametrize("with_previous", [False, True])
def test_a_resized_re_encoded_copy_lands_with_its_original(folder: Path, with_previous: bool) -> None:
    first = prepare(folder, PARAMS)
    m = first.manifest
    for split in ("test", "train"):
        row = m[m["split"] == split].iloc[0]
        _resized_jpeg(folder / row["path"], folder / row["label"] / f"copy_of_{split}.jpg")
    second = prepare(folder, PARAMS, previous=first.splits if with_previous else None)
    s = second.manifest.set_index("path")
    for split in ("test", "train"):
        row = m[m["split"] == split].iloc[0]
        copy = s.loc[f"{row['label']}/copy_of_{split}.jpg"]
        assert copy["split"] == s.loc[row["path"], "split"]  # together, in every case
        assert copy["group"] == s.loc[row["path"], "group"]
        if with_previous:  # and the original, already assigned, does not move
            assert copy["split"] == split


def test_a_retrain_after_feedback_keeps_every_earlier_test_image_in_test(folder: Path) -> None:
    from device.records import _thumbs
    from monitoring.feedback import merge_feedback

    first = prepare(folder, PARAMS)
    x = np.concatenate([first.x_test, first.x_train[:10]])
    y = np.concatenate([first.y_test, first.y_train[:10]])
    rows = pd.DataFrame({"device_id": "d1", "seq": np.arange(len(x)), "label": y,
                         "thumb": _thumbs(x, 8)})
    merged = merge_feedback(rows, folder, first.labels)
    assert merged.written == len(x)
    second = prepare(folder, PARAMS, previous=first.splits)
    was_test = set(first.manifest.loc[first.manifest["split"] == "test", "sha256"])
    now = _split_of(second)
    assert all(now[h] == "test" for h in was_test)
    assert {k: now[k] for k in _split_of(first)} == _split_of(first)
    fb = second.manifest[second.manifest["path"].str.contains("/fb-")].sort_values("path", key=lambda p: p.str.extract(r"-(\d+)\.png")[0].astype(int))
    assert len(fb) == len(x)  # each thumbnail traced to its source frame and placed with it
    assert fb["split"].tolist() == ["test"] * len(first.x_test) + ["train"] * 10


def test_classes_that_are_near_duplicates_of_each_other_are_refused(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "same", {"a": 12, "b": 12, "c": 12})
    for f in (root / "a").iterdir():  # class b holds copies of class a's pictures
        shutil.copy(f, root / "b" / f.name)
    for f in (root / "b").glob("*"):
        if not (root / "a" / f.name).exists():
            f.unlink()
    with pytest.raises(DataError, match="class 'a' is a near-duplicate of other classes") as exc:
        prepare(root, PARAMS)
    assert str(root) in str(exc.value)


def test_a_class_without_a_test_image_is_refused(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "few", {"a": 12, "b": 12, "c": 12})
    for f in sorted((root / "c").iterdir())[1:]:  # one picture, twelve times: one group, one split
        shutil.copy(root / "c" / "img_000.png", f)
    with pytest.raises(DataError, match=r"class 'c' would get no (test|train) image: its 12 images form 1"):
        prepare(root, PARAMS)


def test_a_split_manifest_from_another_data_version_is_refused(folder: Path, tmp_path: Path) -> None:
    first = prepare(folder, PARAMS)
    out = first.save(tmp_path / "prepared")
    shutil.copy(folder / "diag" / "img_001.png", folder / "diag" / "img_000.png")  # content changed
    with pytest.raises(DataError, match="another data version: 1 file.*diag/img_000.png"):
        prepare(folder, PARAMS, previous=first.splits, previous_where="old/splits.csv")
    other = write_folder(tmp_path / "other", {"x": 10, "y": 10}, seed=9)
    with pytest.raises(DataError, match="another data set"):
        prepare(other, PARAMS, previous=first.splits)
    (tmp_path / "bad.csv").write_text("path,split\na.png,holdout\n")
    with pytest.raises(DataError, match="not a split manifest"):
        read_split_manifest(tmp_path / "bad.csv")
    splits = pd.read_csv(out / "splits.csv", dtype=str)
    splits.loc[0, "split"] = "train" if splits.loc[0, "split"] != "train" else "test"
    splits.to_csv(out / "splits.csv", index=False)
    with pytest.raises(DataError, match="another data version than these prepared arrays"):
        PreparedData.load(out)

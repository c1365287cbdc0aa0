from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from edgeops.errors import DataError
from monitoring.feedback import decode_thumb, merge_feedback


def test_decode_gray_and_colour_thumbs() -> None:
    assert decode_thumb(bytes(64)).shape == (8, 8)
    assert decode_thumb(bytes(8 * 8 * 3)).shape == (8, 8, 3)
    with pytest.raises(DataError):
        decode_thumb(bytes(10))


def test_merge_writes_labelled_thumbs_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    img = (np.arange(64, dtype=np.uint8) * 3).tobytes()
    rows = pd.DataFrame(
        {
            "device_id": ["d1", "d1", "d2", "d3"],
            "seq": [1, 2, 1, 7],
            "label": [3, None, 1, 99],
            "thumb": [img, img, img, img],
        }
    )
    rows.loc[2, "thumb"] = (np.arange(64, dtype=np.uint8) * 2).tobytes()
    first = merge_feedback(rows, data, labels=tuple(str(i) for i in range(10)))
    assert (first.offered, first.written, first.skipped_unknown_label) == (3, 2, 1)
    written = data / "3" / "fb-d1-1.png"
    assert np.array_equal(
        np.asarray(Image.open(written)), np.frombuffer(img, np.uint8).reshape(8, 8)
    )
    again = merge_feedback(rows, data, labels=tuple(str(i) for i in range(10)))
    assert (again.written, again.already_present) == (0, 2)


def test_merge_skips_content_already_in_the_folder(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "3").mkdir(parents=True)
    pixels = np.full((8, 8), 7, np.uint8)
    Image.fromarray(pixels).save(data / "3" / "original.png")
    rows = pd.DataFrame({"device_id": ["d1", "d2", "d3"], "seq": [1, 1, 1], "label": [3, 3, 3],
                         "thumb": [pixels.tobytes(), (pixels + 1).tobytes(), (pixels + 1).tobytes()]})
    merged = merge_feedback(rows, data, labels=tuple(str(i) for i in range(10)))
    assert (merged.written, merged.duplicates) == (1, 2)


def test_late_labels_join_their_inference_by_id() -> None:
    from monitoring.feedback import join_labels

    ts = pd.Timestamp("2026-01-01", tz="UTC")
    rows = pd.DataFrame({
        "device_id": ["a", "a", "b", "a", "a", "b", "a"],
        "event": ["inference", "inference", "inference", "label", "label", "label", "label"],
        "inference_id": pd.array([1, 2, 1, 2, 1, 9, 1], dtype="Int64"),
        "label": pd.array([None, 5, None, 3, 7, 4, 8], dtype="Int32"),
        "seq": [0, 1, 0, 2, 3, 1, 4],
        "ts": [ts] * 7,
    })
    out, stats = join_labels(rows)
    assert list(out["event"]) == ["inference"] * 3  # label events consumed
    assert list(out["label"].astype("Int64")) == [8, 3, pd.NA]  # the last label wins; b/1 has none
    assert (stats.joined, stats.relabelled, stats.orphaned) == (2, 1, 1)  # b/9 never uploaded
    older = rows.drop(columns=["inference_id"])
    assert join_labels(older)[0] is older

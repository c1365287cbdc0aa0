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

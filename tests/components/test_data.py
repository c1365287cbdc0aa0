"""Image folders: the example data set, scanning, decoding and the errors users see."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from components.data import decode_image, scan_image_folder, write_example_digits
from edgeops.errors import DataError
from tests.components.conftest import write_folder


def test_example_digits_are_real_pngs_per_class(tmp_path: Path) -> None:
    n = write_example_digits(tmp_path / "digits")
    assert n == 1797
    scan = scan_image_folder(tmp_path / "digits", min_per_class=100)
    assert scan.labels == tuple(str(d) for d in range(10))
    assert len(scan.files) == 1797 and not scan.skipped
    img = decode_image(scan.files[0][0])
    from sklearn.datasets import load_digits

    expected = np.round(load_digits().images[0] * 255 / 16).astype(np.uint8)  # 0/digit_0000.png
    assert img.dtype == np.uint8 and np.array_equal(img, expected)


def test_scan_counts_skipped_files_and_sorts(tiny_folder: Path) -> None:
    (tiny_folder / "README.md").write_text("top-level file")
    scan = scan_image_folder(tiny_folder, min_per_class=20)
    assert scan.labels == ("bars_h", "bars_v", "diag")
    assert scan.per_class == {"bars_h": 20, "bars_v": 20, "diag": 20}
    assert sorted(p.name for p in scan.skipped) == ["README.md", "notes.txt"]


def test_missing_folder_one_class_and_small_class_are_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist") as exc:
        scan_image_folder(tmp_path / "nope")
    assert str(tmp_path / "nope") in str(exc.value)
    write_folder(tmp_path / "one", {"only": 3})
    with pytest.raises(DataError, match="at least two class subfolders, found 1 \\(only\\)"):
        scan_image_folder(tmp_path / "one")
    write_folder(tmp_path / "small", {"a": 12, "b": 4})
    with pytest.raises(DataError, match="below the minimum of 10 images: b=4"):
        scan_image_folder(tmp_path / "small", min_per_class=10)


def test_decode_grey_colour_jpeg_and_refuse_garbage(tmp_path: Path) -> None:
    write_folder(tmp_path / "d", {"a": 2, "b": 2}, colour_every=2, fmt="JPEG")
    colour = decode_image(tmp_path / "d" / "a" / "img_000.jpg")
    grey = decode_image(tmp_path / "d" / "a" / "img_001.jpg")
    assert colour.ndim == 3 and colour.shape[2] == 3
    assert grey.ndim == 2
    Image.fromarray(np.zeros((5, 7, 4), np.uint8), mode="RGBA").save(tmp_path / "rgba.png")
    assert decode_image(tmp_path / "rgba.png").shape == (5, 7, 3)
    bad = tmp_path / "d" / "a" / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match="cannot decode image") as exc:
        decode_image(bad)
    assert str(bad) in str(exc.value)

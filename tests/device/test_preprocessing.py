"""The shared preprocessing: resize, channel conversion, normalisation, spec round trip."""

from __future__ import annotations

import numpy as np
import pytest

from device.preprocessing import PreprocessingSpec, normalize, preprocess, resize, to_unit
from edgeops.errors import DataError


def spec(size: int = 4, channels: int = 1) -> PreprocessingSpec:
    return PreprocessingSpec(size, size, channels, (0.5,) * channels, (0.25,) * channels, ("a", "b"))


def test_spec_json_round_trip_and_checks() -> None:
    s = PreprocessingSpec(32, 24, 3, (0.1, 0.2, 0.3), (0.4, 0.5, 0.6), ("cat", "dog"))
    assert PreprocessingSpec.from_json(s.to_json()) == s
    assert PreprocessingSpec.from_dict(s.to_dict()) == s
    with pytest.raises(DataError, match="one value per channel"):
        PreprocessingSpec(8, 8, 3, (0.1,), (0.2,), ("a",))
    with pytest.raises(DataError, match="std must be positive"):
        PreprocessingSpec(8, 8, 1, (0.1,), (0.0,), ("a",))
    with pytest.raises(DataError, match="malformed"):
        PreprocessingSpec.from_dict({"height": 1})


def test_upsampling_is_bilinear_with_edge_copy() -> None:
    img = np.array([[0.0, 1.0]], dtype=np.float32)[:, :, None]  # 1x2
    out = resize(img, 1, 4)[0, :, 0]
    # half-pixel centres: outputs sit at 0.25, 0.75, 1.25, 1.75 in source pixels
    assert out == pytest.approx([0.0, 0.25, 0.75, 1.0])


def test_downsampling_averages_every_pixel() -> None:
    checker = (np.indices((64, 64)).sum(axis=0) % 2).astype(np.float32)[:, :, None]
    out = resize(checker, 8, 8)
    assert out == pytest.approx(np.full((8, 8, 1), 0.5), abs=0.02)
    constant = np.full((37, 53, 3), 0.3, np.float32)
    assert resize(constant, 5, 7) == pytest.approx(np.full((5, 7, 3), 0.3))


def test_to_unit_converts_channels_dtypes_and_batches() -> None:
    rgb = np.zeros((6, 6, 3), np.uint8)
    rgb[..., 1] = 255  # pure green
    gray = to_unit(rgb, spec(channels=1))
    assert gray.shape == (1, 4, 4, 1)
    assert gray == pytest.approx(np.full((1, 4, 4, 1), 0.587), abs=1e-3)
    back = to_unit(np.full((5, 5), 255, np.uint8), spec(channels=3))
    assert back.shape == (1, 4, 4, 3) and back.min() == 1.0
    rgba = np.dstack([rgb, np.zeros((6, 6), np.uint8)])  # alpha dropped, not treated as colour
    assert to_unit(rgba, spec(channels=3))[0, 0, 0].tolist() == pytest.approx([0, 1, 0])
    batch = to_unit([np.zeros((3, 3), np.uint8), np.ones((9, 7, 3), np.float32)], spec(channels=1))
    assert batch.shape == (2, 4, 4, 1)
    assert batch[0].max() == 0.0 and batch[1].min() == pytest.approx(1.0)
    assert to_unit(np.zeros((5, 8, 8), np.uint8), spec()).shape == (5, 4, 4, 1)  # grey stack
    with pytest.raises(DataError, match="HxW"):
        to_unit(np.zeros((2, 3, 4, 5, 6), np.uint8), spec())
    with pytest.raises(DataError, match="dtype"):
        to_unit(np.zeros((4, 4), np.int32), spec())


def test_normalize_and_preprocess() -> None:
    s = spec()
    x = np.full((2, 4, 4, 1), 0.75, np.float32)
    assert normalize(x, s) == pytest.approx(np.ones_like(x))
    assert normalize(x, s).dtype == np.float32
    assert preprocess(np.full((4, 4), 255, np.uint8), s) == pytest.approx(np.full((1, 4, 4, 1), 2.0))
    with pytest.raises(DataError, match="normalize wants"):
        normalize(np.zeros((4, 4, 3), np.float32), s)

"""Fixtures for the data and training tests: tiny image folders written with Pillow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import components  # noqa: F401  (sets TF_USE_LEGACY_KERAS before tensorflow)


def pattern(kind: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """A learnable uint8 image per class: bars in different orientations, with noise.

    The bar moves by up to two pixels and its brightness varies, so images of one class are
    distinct pictures, not near-duplicates (which would share a split, components.splits).
    """
    img = rng.integers(0, 40, (size, size)).astype(np.uint8)
    shift = int(rng.integers(-2, 3))
    lo, hi = size // 3 + shift, 2 * size // 3 + shift + int(rng.integers(0, 2))
    level = int(rng.integers(150, 256))
    if kind == 0:
        img[lo:hi, :] = level
    elif kind == 1:
        img[:, lo:hi] = level
    else:
        offset = abs(shift)
        view = img[offset:] if shift >= 0 else img[:, offset:]
        np.fill_diagonal(view, level)
        np.fill_diagonal(view[1:], level)
    return img


def write_folder(
    root: Path,
    per_class: dict[str, int],
    size: int = 12,
    colour_every: int = 0,
    fmt: str = "PNG",
    seed: int = 0,
) -> Path:
    """One subfolder per class; every `colour_every`-th image is RGB (0: all grayscale)."""
    rng = np.random.default_rng(seed)
    for k, (label, count) in enumerate(per_class.items()):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            arr = pattern(k % 3, size + (i % 3) * 4, rng)
            im = Image.fromarray(arr, mode="L")
            if colour_every and i % colour_every == 0:
                im = im.convert("RGB")
            ext = "png" if fmt == "PNG" else "jpg"
            im.save(root / label / f"img_{i:03d}.{ext}", format=fmt)
    return root


@pytest.fixture
def tiny_folder(tmp_path: Path) -> Path:
    """Three classes of 20 grayscale PNGs of mixed sizes, plus a stray non-image file."""
    root = write_folder(tmp_path / "data", {"bars_h": 20, "bars_v": 20, "diag": 20})
    (root / "bars_h" / "notes.txt").write_text("not an image")
    return root

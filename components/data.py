"""Image folders: the bundled example data set, scanning and decoding a user's folder.

The shape of a data set is one subfolder per class (the folder names are the labels) holding
PNG or JPEG files of any size, grayscale or colour. Everything else is skipped and counted.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image, UnidentifiedImageError

from edgeops.errors import DataError

T = TypeVar("T")
R = TypeVar("R")
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})


@dataclass(frozen=True)
class FolderScan:
    """What a folder holds: image files per class and what was skipped."""

    root: Path
    labels: tuple[str, ...]
    files: tuple[tuple[Path, str], ...]  # (path, label), sorted
    skipped: tuple[Path, ...] = field(default=())

    @property
    def per_class(self) -> dict[str, int]:
        counts = dict.fromkeys(self.labels, 0)
        for _, label in self.files:
            counts[label] += 1
        return counts


def write_example_digits(directory: Path | str) -> int:
    """Write scikit-learn's bundled 8x8 digits as PNGs under `<dir>/<digit>/`; return the count.

    The 0..16 intensities are rescaled to 0..255 so the files look like ordinary images.
    """
    from sklearn.datasets import load_digits

    root = Path(directory)
    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    for label in range(10):
        (root / str(label)).mkdir(parents=True, exist_ok=True)
    for i, (img, label) in enumerate(zip(images, digits.target, strict=True)):
        path = root / str(label) / f"digit_{i:04d}.png"
        buf = io.BytesIO()
        Image.fromarray(img, mode="L").save(buf, format="PNG")
        tmp = path.with_suffix(".png.tmp")
        tmp.write_bytes(buf.getvalue())
        tmp.replace(path)
    return len(images)


def scan_image_folder(directory: Path | str, min_per_class: int = 1) -> FolderScan:
    """List the images of a class-per-subfolder data set, refusing shapes that cannot train."""
    root = Path(directory)
    if not root.exists():
        raise DataError("data folder does not exist", where=str(root))
    if not root.is_dir():
        raise DataError("data path is not a folder", where=str(root))
    files: list[tuple[Path, str]] = []
    skipped: list[Path] = []
    labels: list[str] = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if not entry.is_dir():
            skipped.append(entry)
            continue
        labels.append(entry.name)
        for path in sorted(p for p in entry.rglob("*") if p.is_file()):
            if path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith("."):
                files.append((path, entry.name))
            else:
                skipped.append(path)
    scan = FolderScan(root=root, labels=tuple(labels), files=tuple(files), skipped=tuple(skipped))
    if len(labels) < 2:
        raise DataError(
            f"need at least two class subfolders, found {len(labels)} ({', '.join(labels) or 'none'})",
            where=str(root),
        )
    small = {k: v for k, v in scan.per_class.items() if v < min_per_class}
    if small:
        listed = ", ".join(f"{k}={v}" for k, v in sorted(small.items()))
        raise DataError(
            f"classes below the minimum of {min_per_class} images: {listed}", where=str(root)
        )
    return scan


def decode_image(path: Path) -> np.ndarray:
    """Decode one PNG/JPEG to uint8 HxW (grayscale) or HxWx3 (colour; alpha dropped)."""
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("L", "1", "I;16", "I", "F", "LA") or (
                im.mode == "P" and _palette_is_gray(im)
            ):
                arr = np.asarray(im.convert("L"))
            else:
                arr = np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"cannot decode image: {exc}", where=str(path)) from exc
    if arr.size == 0:
        raise DataError("image is empty", where=str(path))
    return arr


def _palette_is_gray(im: Image.Image) -> bool:
    palette = im.getpalette() or []
    triples = np.asarray(palette[: (len(palette) // 3) * 3]).reshape(-1, 3)
    return bool(len(triples)) and bool(np.all(triples == triples[:, :1]))


def default_workers() -> int:
    """Decoding threads: one per core the process may use, at most 8."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(8, cores))


def map_ordered(fn: Callable[[T], R], items: Sequence[T], workers: int | None = None, window: int = 256) -> Iterator[R]:
    """`fn` over `items` on a thread pool, results in order, at most `window` in flight.

    Threads suffice: Pillow decodes, hashlib and numpy's resize release the GIL. The window
    bounds what waits in memory when the consumer is slower than the decoders.
    """
    workers = workers or default_workers()
    if workers == 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:
        for start in range(0, len(items), window):
            yield from pool.map(fn, items[start : start + window])

"""Prepare: decode, resize, split (by content, components.splits) and compute normalisation statistics.

The statistics come from the train split only and become the PreprocessingSpec that ships with
every bundle. Splits are train, val (chooses), test (scores the chosen once) and field (the pool
the fleet simulator draws frames from). Identical and near-duplicate images share a split, so a
copy can never leak from train into test; `splits.csv` records which image went where.

Preparation streams: images are decoded on a thread pool straight into a uint8 array on disk
(components.prepared), split a chunk at a time, and the statistics come from per-channel
histograms of the stored bytes, so memory stays bounded as the folder grows and the mean and
standard deviation are exact (integer sums; one rounding at the end), not float32 running sums.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from components.data import FolderScan, decode_image, map_ordered, scan_image_folder
from components.prepared import CHUNK, PreparedData, UnitImages, staging, write_metadata
from components.splits import (
    SIGNATURE_SIDE,
    SPLIT_COLUMNS,
    SPLITS,
    assign,
    check_previous,
    feedback_sources,
    pixel_hash,
    signature,
)
from device.preprocessing import LUMA, PreprocessingSpec, to_unit
from edgeops.errors import DataError
from edgeops.params import PrepareParams
from edgeops.progress import report

__all__ = ["SPLITS", "PreparedData", "UnitImages", "prepare", "channel_statistics"]

FEEDBACK_PREFIX = "fb-"  # monitoring/feedback.py names merged thumbnails fb-<device>-<seq>.png
REPORT_EVERY = 1000  # images between progress reports
MANIFEST_COLUMNS = ["path", "label", "split", "index", "sha256", "height", "width", "channels", "group"]
Alloc = Callable[[str, tuple[int, ...]], "np.ndarray | NpyRows"]


@dataclass(frozen=True)
class _Decoded:
    """One image after the worker: model-size RGB bytes and what the split rule needs."""

    pixels: np.ndarray  # (S, S, 3) uint8
    signature: np.ndarray
    pixel_hash: str
    shape: tuple[int, int, int]  # height, width, channels as decoded
    thumb: np.ndarray | None  # grey uint8 when the file is labelled field feedback


def _subset(files: list[tuple[Path, str]], digests: list[str], params: PrepareParams) -> list[int]:
    """`max_images` kept per class in proportion, chosen by salted content hash (not by order)."""
    assert params.max_images is not None
    by_class: dict[str, list[int]] = {}
    for i, (_, label) in enumerate(files):
        by_class.setdefault(label, []).append(i)
    keep = []
    for idx in by_class.values():
        k = max(1, round(params.max_images * len(idx) / len(files)))
        keep += sorted(idx, key=lambda i: hashlib.sha256(f"{params.split_salt}:subset:{digests[i]}".encode()).digest())[:k]
    return sorted(keep)


def _decoder(size: int, labels: tuple[str, ...]) -> Callable[[Path], _Decoded]:
    rgb = PreprocessingSpec(size, size, 3, (0.0,) * 3, (1.0,) * 3, labels)

    def decode(path: Path) -> _Decoded:
        img = decode_image(path)
        unit = to_unit(img, rgb)[0]
        thumb = None
        if path.name.startswith(FEEDBACK_PREFIX):
            thumb = img if img.ndim == 2 else np.round(img[..., :3] @ np.asarray(LUMA)).astype(np.uint8)
        shape = (img.shape[0], img.shape[1], 1 if img.ndim == 2 else img.shape[2])
        return _Decoded(np.round(unit * 255.0).astype(np.uint8), signature(img), pixel_hash(img), shape, thumb)

    return decode


class NpyRows:
    """A uint8 `.npy` file written and read by rows with plain file I/O.

    Not a memory map on purpose: pages written or read through a mapping stay in the process's
    resident set until the kernel needs them, so a mapped 20,000-image folder would show as
    gigabytes of "peak memory"; pwrite/pread go through the page cache the process does not own.
    """

    def __init__(self, path: Path, shape: tuple[int, ...]) -> None:
        header = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=shape)  # sized, sparse
        self.offset, self.shape = header.offset, shape
        del header
        self.row = int(np.prod(shape[1:], dtype=np.int64))
        self.fd = os.open(path, os.O_RDWR)

    def __len__(self) -> int:
        return self.shape[0]

    def __setitem__(self, key: int | slice, rows: np.ndarray) -> None:
        start = (key.start or 0) if isinstance(key, slice) else key
        os.pwrite(self.fd, np.ascontiguousarray(rows, np.uint8).tobytes(), self.offset + start * self.row)

    def __getitem__(self, idx: np.ndarray) -> np.ndarray:
        out = np.empty((len(idx), *self.shape[1:]), np.uint8)
        for k, i in enumerate(np.asarray(idx, np.int64)):
            out[k] = np.frombuffer(os.pread(self.fd, self.row, self.offset + int(i) * self.row), np.uint8).reshape(
                self.shape[1:])
        return out

    def close(self) -> None:
        os.close(self.fd)


class _Luma:
    """Grey [0, 1] rows of the decoded RGB bytes, converted only when indexed."""

    def __init__(self, rgb: np.ndarray) -> None:
        self.rgb = rgb
        self.shape = rgb.shape[:3]

    def __len__(self) -> int:
        return len(self.rgb)

    def __getitem__(self, key: object) -> np.ndarray:
        return (np.asarray(self.rgb[key], np.float32) / np.float32(255.0)) @ LUMA


def channel_statistics(histograms: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and (population) standard deviation of [0, 1] pixels from per-channel histograms of
    their uint8 values: integer sums, so exact up to the final division."""
    levels = np.arange(256, dtype=np.int64)
    means, stds = [], []
    for h in histograms.astype(np.int64):
        n, s1, s2 = int(h.sum()), int((levels * h).sum()), int((levels * levels * h).sum())
        means.append(s1 / (255 * n))
        stds.append(float(np.sqrt((n * s2 - s1 * s1) / (255 * 255 * n * n))))
    return tuple(means), tuple(stds)


def _to_channels(rows: np.ndarray, channels: int, all_grey: bool) -> np.ndarray:
    """RGB bytes to the model's channels: grey images were replicated, so channel 0 is exact;
    colour goes to luma (rounded to the nearest grey level)."""
    if channels == 3:
        return rows
    if all_grey:
        return rows[..., :1]
    return np.round(rows.astype(np.float32) @ LUMA).astype(np.uint8)[..., None]


def _write_splits(
    x_all: np.ndarray | NpyRows, split: np.ndarray, channels: int, all_grey: bool, alloc: Alloc
) -> tuple[dict[str, np.ndarray | NpyRows], np.ndarray]:
    """Copy each split's rows out of the decoded array a chunk at a time; histogram the train split."""
    parts: dict[str, np.ndarray | NpyRows] = {}
    hist = np.zeros((channels, 256), np.int64)
    for s in SPLITS:
        sel = np.flatnonzero(split == s)
        out = alloc(f"x_{s}", (len(sel), *x_all.shape[1:3], channels))
        for i in range(0, len(sel), CHUNK):
            rows = _to_channels(np.asarray(x_all[sel[i : i + CHUNK]]), channels, all_grey)
            out[i : i + len(rows)] = rows
            if s == "train":
                for c in range(channels):
                    hist[c] += np.bincount(rows[..., c].ravel(), minlength=256)
        parts[s] = out
    return parts, hist


def prepare(
    data_dir: Path | str,
    params: PrepareParams,
    progress: Callable[[int, int], None] | None = None,
    previous: pd.DataFrame | None = None,
    previous_where: str = "split manifest",
    out: Path | str | None = None,
    workers: int | None = None,
) -> PreparedData:
    """Decode an image folder into content-assigned splits with train-split statistics.

    Splits follow components.splits (salted content hash, near-duplicate groups, and the
    earlier data version's `previous` split manifest when given). Each image is resized as soon
    as it is decoded, on `workers` threads. With `out`, everything is written there (through a
    temp sibling renamed at the end: never half-written) and the result memory-maps it, so a
    folder larger than memory prepares; without, the uint8 arrays are held in memory.
    `progress(done, total)` is called as files are read.
    """
    scan = scan_image_folder(data_dir, params.min_per_class)
    label_index = {label: i for i, label in enumerate(scan.labels)}
    files = list(scan.files)
    digests = list(map_ordered(lambda f: hashlib.sha256(f[0].read_bytes()).hexdigest(), files, workers))
    if params.max_images is not None and params.max_images < len(files):
        keep = _subset(files, digests, params)
        files, digests = [files[i] for i in keep], [digests[i] for i in keep]
    args = (scan, files, digests, label_index, params, progress, previous, previous_where, workers)
    if out is None:
        spec, manifest, ys, pixels = _prepare_into(*args, lambda name, shape: np.empty(shape, np.uint8))
        parts = {f"{k}_{s}": v for s in SPLITS for k, v in (("x", UnitImages(pixels[s])), ("y", ys[s]))}
        return PreparedData(**parts, spec=spec, manifest=manifest, skipped=len(scan.skipped))
    target = Path(out)
    with staging(target) as tmp:
        opened: list[NpyRows] = []

        def alloc(name: str, shape: tuple[int, ...]) -> NpyRows:
            opened.append(NpyRows(tmp / f"{name}.npy", shape))
            return opened[-1]

        try:
            spec, manifest, ys, _ = _prepare_into(*args, alloc)
        finally:
            for rows in opened:
                rows.close()
        for s in SPLITS:
            np.save(tmp / f"y_{s}.npy", ys[s])
        write_metadata(tmp, spec, manifest, manifest.reindex(columns=SPLIT_COLUMNS), len(scan.skipped))
        (tmp / "x_all.npy").unlink()
    return PreparedData.load(target)


def _prepare_into(
    scan: FolderScan,
    files: list[tuple[Path, str]],
    digests: list[str],
    label_index: dict[str, int],
    params: PrepareParams,
    progress: Callable[[int, int], None] | None,
    previous: pd.DataFrame | None,
    previous_where: str,
    workers: int | None,
    alloc: Alloc,
) -> tuple[PreprocessingSpec, pd.DataFrame, dict[str, np.ndarray], dict[str, np.ndarray | NpyRows]]:
    """Decode into `alloc`'s rows, split and take statistics: spec, manifest, labels and pixels."""
    size, n = params.image_size, len(files)
    y_all = np.array([label_index[label] for _, label in files], dtype=np.int64)
    x_all = alloc("x_all", (n, size, size, 3))
    sigs = np.empty((n, SIGNATURE_SIDE * SIGNATURE_SIDE), dtype=np.float32)
    thumbs: dict[int, np.ndarray] = {}  # labelled field feedback, traced to its source below
    rows = []
    decoded = map_ordered(_decoder(size, scan.labels), [path for path, _ in files], workers)
    for i, ((path, label), d) in enumerate(zip(files, decoded, strict=True)):
        x_all[i], sigs[i] = d.pixels, d.signature
        if d.thumb is not None:
            thumbs[i] = d.thumb
        if progress is not None:
            progress(i + 1, n)
        if (i + 1) % REPORT_EVERY == 0 or i + 1 == n:
            report("prepare", "decoding", done=i + 1, total=n)
        rows.append({"path": path.relative_to(scan.root).as_posix(), "label": label, "sha256": digests[i],
                     "pixels": d.pixel_hash, "height": d.shape[0], "width": d.shape[1], "channels": d.shape[2]})
    manifest = pd.DataFrame(rows)
    channels = params.channels or (1 if (manifest["channels"] == 1).all() else 3)
    if previous is not None:
        check_previous(previous, manifest, previous_where)
    report("prepare", "assigning splits")
    links = feedback_sources(thumbs, _Luma(x_all), params.near_duplicate_rms) if thumbs else []
    manifest = assign(manifest, sigs, params, previous, where=str(scan.root), links=links)

    report("prepare", "writing splits and statistics")
    split = manifest["split"].to_numpy()
    all_grey = bool((manifest["channels"] == 1).all())
    pixels, hist = _write_splits(x_all, split, channels, all_grey, alloc)
    manifest["index"] = -1
    for s in SPLITS:
        sel = np.flatnonzero(split == s)
        manifest.loc[sel, "index"] = np.arange(len(sel))
    if len(pixels["train"]) == 0:
        raise DataError("the train split is empty", where=str(scan.root))
    mean, std = channel_statistics(hist)
    spec = PreprocessingSpec(size, size, channels, mean, tuple(max(s, 1e-3) for s in std), scan.labels)
    return spec, manifest[MANIFEST_COLUMNS], {s: y_all[split == s] for s in SPLITS}, pixels

"""Prepare: decode, resize, split (by content, components.splits) and compute normalisation statistics.

The statistics come from the train split only and become the PreprocessingSpec that ships with
every bundle. Splits are train, val (chooses), test (scores the chosen once) and field (the pool
the fleet simulator draws frames from). Identical and near-duplicate images share a split, so a
copy can never leak from train into test; `splits.csv` records which image went where.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from components.data import decode_image, scan_image_folder
from components.splits import (
    SIGNATURE_SIDE,
    SPLIT_COLUMNS,
    SPLITS,
    assign,
    check_previous,
    feedback_sources,
    pixel_hash,
    read_split_manifest,
    signature,
)
from device.preprocessing import LUMA, PreprocessingSpec, to_unit
from edgeops.errors import DataError
from edgeops.params import PrepareParams

FEEDBACK_PREFIX = "fb-"  # monitoring/feedback.py names merged thumbnails fb-<device>-<seq>.png
MANIFEST_COLUMNS = ["path", "label", "split", "index", "sha256", "height", "width", "channels", "group"]


@dataclass(frozen=True)
class PreparedData:
    """Splits as [0, 1] pixels at the model's size, integer labels, the spec and a manifest."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    spec: PreprocessingSpec
    manifest: pd.DataFrame
    skipped: int = 0
    x_field: np.ndarray = field(default_factory=lambda: np.zeros((0, 1, 1, 1), np.float32))
    y_field: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    @property
    def labels(self) -> tuple[str, ...]:
        return self.spec.labels

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        return getattr(self, f"x_{name}"), getattr(self, f"y_{name}")

    @property
    def splits(self) -> pd.DataFrame:
        """The split manifest (`splits.csv`): path relative to the data folder, sha256, group, split."""
        return self.manifest.reindex(columns=SPLIT_COLUMNS).reset_index(drop=True)

    def save(self, directory: Path | str) -> Path:
        """Write arrays, spec and manifest into a temp sibling, then rename: never half-written."""
        target = Path(directory)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            np.savez_compressed(
                tmp / "arrays.npz", **{f"{k}_{s}": self.split(s)[i] for s in SPLITS for i, k in enumerate("xy")}
            )
            (tmp / "preprocessing.json").write_text(self.spec.to_json())
            self.manifest.to_csv(tmp / "manifest.csv", index=False)
            self.splits.to_csv(tmp / "splits.csv", index=False)
            (tmp / "info.json").write_text(json.dumps({"skipped": self.skipped}))
            if target.exists():
                old = target.with_name(f".{target.name}.old-{os.getpid()}")
                target.rename(old)
                tmp.rename(target)
                shutil.rmtree(old)
            else:
                tmp.rename(target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return target

    @classmethod
    def load(cls, directory: Path | str) -> PreparedData:
        root = Path(directory)
        try:
            with np.load(root / "arrays.npz") as arrays:
                parts = {k: arrays[k] for k in arrays.files}
            spec = PreprocessingSpec.from_json((root / "preprocessing.json").read_text())
            manifest = pd.read_csv(root / "manifest.csv", dtype={"label": str, "sha256": str, "group": str})
            info = json.loads((root / "info.json").read_text())
        except (OSError, KeyError, ValueError) as exc:
            raise DataError(f"prepared data is missing or unreadable: {exc}", where=str(root)) from exc
        if (root / "splits.csv").exists():
            _check_splits_match(read_split_manifest(root / "splits.csv"), manifest, root / "splits.csv")
        return cls(**parts, spec=spec, manifest=manifest, skipped=int(info.get("skipped", 0)))


def _check_splits_match(splits: pd.DataFrame, manifest: pd.DataFrame, where: Path) -> None:
    """splits.csv and the arrays must describe the same images in the same splits."""
    ours = manifest.reindex(columns=SPLIT_COLUMNS).fillna("").astype(str).reset_index(drop=True)
    if not ours.equals(splits.fillna("").astype(str).reset_index(drop=True)):
        raise DataError("split manifest is from another data version than these prepared arrays",
                        where=str(where))


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


def prepare(
    data_dir: Path | str,
    params: PrepareParams,
    progress: Callable[[int, int], None] | None = None,
    previous: pd.DataFrame | None = None,
    previous_where: str = "split manifest",
) -> PreparedData:
    """Decode an image folder into content-assigned splits with train-split statistics.

    Splits follow components.splits (salted content hash, near-duplicate groups, and the
    earlier data version's `previous` split manifest when given). Each image is resized as soon
    as it is decoded, so memory grows with the model's input size, not with the photos'.
    `progress(done, total)` is called as files are read.
    """
    scan = scan_image_folder(data_dir, params.min_per_class)
    label_index = {label: i for i, label in enumerate(scan.labels)}
    files = list(scan.files)
    digests = [hashlib.sha256(path.read_bytes()).hexdigest() for path, _ in files]
    if params.max_images is not None and params.max_images < len(files):
        keep = _subset(files, digests, params)
        files, digests = [files[i] for i in keep], [digests[i] for i in keep]
    y_all = np.array([label_index[label] for _, label in files], dtype=np.int64)

    size = params.image_size
    rgb = PreprocessingSpec(size, size, 3, (0.0,) * 3, (1.0,) * 3, scan.labels)
    x_all = np.empty((len(files), size, size, 3), dtype=np.float32)
    rows = []
    sigs = np.empty((len(files), SIGNATURE_SIDE * SIGNATURE_SIDE), dtype=np.float32)
    thumbs: dict[int, np.ndarray] = {}  # labelled field feedback, traced to its source below
    for i, (path, label) in enumerate(files):
        img = decode_image(path)
        x_all[i] = to_unit(img, rgb)[0]
        sigs[i] = signature(img)
        if path.name.startswith(FEEDBACK_PREFIX):
            thumbs[i] = img if img.ndim == 2 else np.round(img[..., :3] @ np.asarray(LUMA)).astype(np.uint8)
        if progress is not None:
            progress(i + 1, len(files))
        rows.append(
            {
                "path": path.relative_to(scan.root).as_posix(),
                "label": label,
                "sha256": digests[i],
                "pixels": pixel_hash(img),
                "height": img.shape[0],
                "width": img.shape[1],
                "channels": 1 if img.ndim == 2 else img.shape[2],
            }
        )
    manifest = pd.DataFrame(rows)
    channels = params.channels or (1 if (manifest["channels"] == 1).all() else 3)
    if previous is not None:
        check_previous(previous, manifest, previous_where)
    links = feedback_sources(thumbs, x_all @ np.asarray(LUMA, np.float32), params.near_duplicate_rms) if thumbs else []
    manifest = assign(manifest, sigs, params, previous, where=str(data_dir), links=links)

    if channels == 1:  # grey images were replicated, so channel 0 is exact; colour goes to luma
        all_grey = bool((manifest["channels"] == 1).all())
        x_all = x_all[..., :1] if all_grey else (x_all @ LUMA)[..., None]
    parts: dict[str, np.ndarray] = {}
    manifest["index"] = -1
    for s in SPLITS:
        sel = np.flatnonzero(manifest["split"].to_numpy() == s)
        manifest.loc[sel, "index"] = np.arange(len(sel))
        parts[f"x_{s}"], parts[f"y_{s}"] = x_all[sel], y_all[sel]
    if len(parts["x_train"]) == 0:
        raise DataError("the train split is empty", where=str(data_dir))
    mean = parts["x_train"].mean(axis=(0, 1, 2), dtype=np.float64)  # float64: see DEPENDENCIES.md
    std = np.maximum(parts["x_train"].std(axis=(0, 1, 2), dtype=np.float64), 1e-3)
    spec = PreprocessingSpec(
        size, size, channels, tuple(map(float, mean)), tuple(map(float, std)), scan.labels
    )
    return PreparedData(
        **parts, spec=spec, manifest=manifest[MANIFEST_COLUMNS], skipped=len(scan.skipped)
    )

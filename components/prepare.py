"""Prepare: decode, resize, split (stratified, seeded) and compute normalisation statistics.

The statistics come from the train split only and become the PreprocessingSpec that ships with
every bundle. Files with identical content always land in the same split, so a duplicate can
never leak from train into test; duplicates inside one split are left for validation to report.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from components.data import decode_image, scan_image_folder
from device.preprocessing import LUMA, PreprocessingSpec, to_unit
from edgeops.errors import DataError
from edgeops.params import PrepareParams

SPLITS = ("train", "val", "test")
MANIFEST_COLUMNS = ["path", "label", "split", "index", "sha256", "height", "width", "channels"]


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

    @property
    def labels(self) -> tuple[str, ...]:
        return self.spec.labels

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        return getattr(self, f"x_{name}"), getattr(self, f"y_{name}")

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
            manifest = pd.read_csv(root / "manifest.csv", dtype={"label": str, "sha256": str})
            info = json.loads((root / "info.json").read_text())
        except (OSError, KeyError, ValueError) as exc:
            raise DataError(f"prepared data is missing or unreadable: {exc}", where=str(root)) from exc
        return cls(**parts, spec=spec, manifest=manifest, skipped=int(info.get("skipped", 0)))


def _stratified_indices(
    y: np.ndarray, size: float | int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    idx = np.arange(len(y))
    try:
        a, b = train_test_split(idx, test_size=size, stratify=y, random_state=seed)
    except ValueError as exc:
        raise DataError(f"cannot make a stratified split: {exc}") from exc
    return np.sort(a), np.sort(b)


def assign_splits(y: np.ndarray, params: PrepareParams) -> np.ndarray:
    """Split names per item, stratified by label and seeded."""
    rest, test = _stratified_indices(y, params.test_fraction, params.seed)
    val_share = params.val_fraction / (1.0 - params.test_fraction)
    tr, va = _stratified_indices(y[rest], val_share, params.seed + 1)
    out = np.empty(len(y), dtype=object)
    out[test], out[rest[va]], out[rest[tr]] = "test", "val", "train"
    return out


def prepare(
    data_dir: Path | str,
    params: PrepareParams,
    progress: Callable[[int, int], None] | None = None,
) -> PreparedData:
    """Decode an image folder into seeded stratified splits with train-split statistics.

    Each image is resized as soon as it is decoded, so memory grows with the model's input
    size, not with the photos'. `progress(done, total)` is called as files are read.
    """
    scan = scan_image_folder(data_dir, params.min_per_class)
    label_index = {label: i for i, label in enumerate(scan.labels)}
    files = list(scan.files)
    y_all = np.array([label_index[label] for _, label in files], dtype=np.int64)
    if params.max_images is not None and params.max_images < len(files):
        _, keep = _stratified_indices(y_all, params.max_images, params.seed)
        files, y_all = [files[i] for i in keep], y_all[keep]

    size = params.image_size
    rgb = PreprocessingSpec(size, size, 3, (0.0,) * 3, (1.0,) * 3, scan.labels)
    x_all = np.empty((len(files), size, size, 3), dtype=np.float32)
    rows = []
    for i, (path, label) in enumerate(files):
        raw = path.read_bytes()
        img = decode_image(path)
        x_all[i] = to_unit(img, rgb)[0]
        if progress is not None:
            progress(i + 1, len(files))
        rows.append(
            {
                "path": path.relative_to(scan.root).as_posix(),
                "label": label,
                "sha256": hashlib.sha256(raw).hexdigest(),
                "height": img.shape[0],
                "width": img.shape[1],
                "channels": 1 if img.ndim == 2 else img.shape[2],
            }
        )
    manifest = pd.DataFrame(rows)
    channels = params.channels or (1 if (manifest["channels"] == 1).all() else 3)

    # Split unique contents, then give every copy its original's split (no cross-split leakage).
    first = manifest.drop_duplicates("sha256")
    split_of = dict(zip(first["sha256"], assign_splits(y_all[first.index.to_numpy()], params), strict=True))
    manifest["split"] = manifest["sha256"].map(split_of)

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
    mean = parts["x_train"].mean(axis=(0, 1, 2))
    std = np.maximum(parts["x_train"].std(axis=(0, 1, 2)), 1e-3)
    spec = PreprocessingSpec(
        size, size, channels, tuple(map(float, mean)), tuple(map(float, std)), scan.labels
    )
    return PreparedData(
        **parts, spec=spec, manifest=manifest[MANIFEST_COLUMNS], skipped=len(scan.skipped)
    )

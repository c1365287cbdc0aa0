"""The prepared data set on disk: one uint8 `.npy` per split, memory-mapped when read.

A prepared folder holds `x_<split>.npy` (uint8, N x H x W x C, pixels at the model's size),
`y_<split>.npy` (int64 labels), `preprocessing.json` (the spec that ships in every bundle),
`manifest.csv`, `splits.csv` and `info.json`. Readers memory-map the pixel files, so a split is
never held in memory whole: `UnitImages` shows the uint8 rows as float32 [0, 1] pixels, one
indexed batch at a time, and code that indexes `prepared.x_test[i:j]` keeps working unchanged.
Storing uint8 costs at most half a grey level (0.5/255) against float32 after resizing, and is
4x smaller; an image already at the model's size is stored exactly. Folders written before
this format (one `arrays.npz` of float32) still load.
"""

from __future__ import annotations

import json
import mmap
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from components.splits import SPLIT_COLUMNS, SPLITS, read_split_manifest
from device.preprocessing import PreprocessingSpec
from edgeops.errors import DataError

FORMAT = 2  # info.json "format": 2 = uint8 .npy per split; absent = float32 arrays.npz
CHUNK = 512  # rows per copy/statistics step: about 14 MB of uint8 at 96 x 96 x 3


class UnitImages(np.lib.mixins.NDArrayOperatorsMixin):
    """uint8 images (often a read-only memmap) seen as float32 pixels in [0, 1].

    Indexing reads and converts only the rows asked for; `np.asarray` (and arithmetic) converts
    everything, as a float32 array would have held it. Written here rather than found in a
    library because the contract is numpy's own: a lazy dtype view over a memmap.
    """

    def __init__(self, raw: np.ndarray) -> None:
        if raw.dtype != np.uint8 or raw.ndim != 4:
            raise DataError(f"prepared pixels must be uint8 (N, H, W, C), got {raw.dtype} {raw.shape}")
        self.raw = raw

    shape = property(lambda self: self.raw.shape)
    ndim = property(lambda self: 4)
    size = property(lambda self: self.raw.size)
    dtype = property(lambda self: np.dtype(np.float32))

    def __len__(self) -> int:
        return len(self.raw)

    def __getitem__(self, key: Any) -> np.ndarray:
        return np.asarray(self.raw[key], dtype=np.float32) / np.float32(255.0)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[...]
        return out if dtype is None else out.astype(dtype, copy=False)

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        args = [np.asarray(a) if isinstance(a, UnitImages) else a for a in inputs]
        return getattr(ufunc, method)(*args, **kwargs)

    def __repr__(self) -> str:
        return f"UnitImages({self.raw.shape}, uint8 -> float32 [0, 1])"

    def release(self) -> None:
        """Drop the pages this process has read from a memory-mapped split from its resident set.

        They stay in the kernel's page cache (a later read maps them back without disk I/O); a
        reader that streams through a split calls this per chunk, so its resident memory stays
        a chunk, not the file. In-memory arrays: nothing to do.
        """
        handle = getattr(self.raw, "_mmap", None)  # numpy.memmap keeps its mmap.mmap here
        if handle is not None and not handle.closed:
            handle.madvise(mmap.MADV_DONTNEED)

    def astype(self, dtype: Any, copy: bool = True) -> np.ndarray:
        return np.asarray(self, dtype=dtype)

    def copy(self) -> np.ndarray:
        return np.asarray(self)

    def min(self, *args: Any, **kwargs: Any) -> Any:
        return np.asarray(self).min(*args, **kwargs)

    def max(self, *args: Any, **kwargs: Any) -> Any:
        return np.asarray(self).max(*args, **kwargs)

    def mean(self, *args: Any, **kwargs: Any) -> Any:
        return np.asarray(self).mean(*args, **kwargs)

    def std(self, *args: Any, **kwargs: Any) -> Any:
        return np.asarray(self).std(*args, **kwargs)


def as_uint8(x: np.ndarray | UnitImages) -> np.ndarray:
    """The stored bytes of [0, 1] pixels: the raw array of a UnitImages, else round(x * 255)."""
    if isinstance(x, UnitImages):
        return x.raw
    return np.round(np.clip(np.asarray(x, np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)


def _empty_field() -> UnitImages:
    return UnitImages(np.zeros((0, 1, 1, 1), np.uint8))


@dataclass(frozen=True)
class PreparedData:
    """Splits as [0, 1] pixels at the model's size (UnitImages, or float arrays built in memory),
    integer labels, the spec and a manifest."""

    x_train: np.ndarray | UnitImages
    y_train: np.ndarray
    x_val: np.ndarray | UnitImages
    y_val: np.ndarray
    x_test: np.ndarray | UnitImages
    y_test: np.ndarray
    spec: PreprocessingSpec
    manifest: pd.DataFrame
    skipped: int = 0
    x_field: np.ndarray | UnitImages = field(default_factory=_empty_field)
    y_field: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    @property
    def labels(self) -> tuple[str, ...]:
        return self.spec.labels

    def split(self, name: str) -> tuple[np.ndarray | UnitImages, np.ndarray]:
        return getattr(self, f"x_{name}"), getattr(self, f"y_{name}")

    @property
    def splits(self) -> pd.DataFrame:
        """The split manifest (`splits.csv`): path relative to the data folder, sha256, group, split."""
        return self.manifest.reindex(columns=SPLIT_COLUMNS).reset_index(drop=True)

    def save(self, directory: Path | str) -> Path:
        """Write every file into a temp sibling, then rename: never half-written.

        Pixels are copied a chunk at a time, so saving a memory-mapped set stays small too.
        """
        target = Path(directory)
        with staging(target) as tmp:
            for s in SPLITS:
                x, y = self.split(s)
                out = np.lib.format.open_memmap(tmp / f"x_{s}.npy", mode="w+", dtype=np.uint8, shape=x.shape)
                for i in range(0, len(x), CHUNK):
                    raw = x.raw[i : i + CHUNK] if isinstance(x, UnitImages) else as_uint8(x[i : i + CHUNK])
                    out[i : i + CHUNK] = raw
                    if isinstance(x, UnitImages):
                        x.release()
                out.flush()
                del out
                np.save(tmp / f"y_{s}.npy", np.asarray(y, np.int64))
            write_metadata(tmp, self.spec, self.manifest, self.splits, self.skipped)
        return target

    @classmethod
    def load(cls, directory: Path | str) -> PreparedData:
        """Memory-map the pixels (read-only); labels, spec and manifest are read whole."""
        root = Path(directory)
        try:
            if (root / "arrays.npz").exists():  # the float32 format before FORMAT 2
                with np.load(root / "arrays.npz") as arrays:
                    parts: dict[str, Any] = {k: arrays[k] for k in arrays.files}
            else:
                parts = {}
                for s in SPLITS:
                    parts[f"x_{s}"] = UnitImages(np.load(root / f"x_{s}.npy", mmap_mode="r"))
                    parts[f"y_{s}"] = np.load(root / f"y_{s}.npy").astype(np.int64)
            spec = PreprocessingSpec.from_json((root / "preprocessing.json").read_text())
            manifest = pd.read_csv(root / "manifest.csv", dtype={"label": str, "sha256": str, "group": str})
            info = json.loads((root / "info.json").read_text())
        except (OSError, KeyError, ValueError) as exc:
            raise DataError(f"prepared data is missing or unreadable: {exc}", where=str(root)) from exc
        if (root / "splits.csv").exists():
            _check_splits_match(read_split_manifest(root / "splits.csv"), manifest, root / "splits.csv")
        return cls(**parts, spec=spec, manifest=manifest, skipped=int(info.get("skipped", 0)))


def write_metadata(
    directory: Path, spec: PreprocessingSpec, manifest: pd.DataFrame, splits: pd.DataFrame, skipped: int
) -> None:
    (directory / "preprocessing.json").write_text(spec.to_json())
    manifest.to_csv(directory / "manifest.csv", index=False)
    splits.to_csv(directory / "splits.csv", index=False)
    (directory / "info.json").write_text(json.dumps({"skipped": skipped, "format": FORMAT}))


class staging:  # noqa: N801  (used as a context manager, like tempfile's)
    """A temp sibling of `target` that replaces it on success and vanishes on any failure.

    Temp folders of writers that died (their pid no longer runs) are removed on entry, so a
    crash leaves neither a half-written set nor a growing pile of partial ones.
    """

    def __init__(self, target: Path) -> None:
        self.target = target

    def __enter__(self) -> Path:
        self.target.parent.mkdir(parents=True, exist_ok=True)
        _remove_dead_staging(self.target)
        prefix = f".{self.target.name}.tmp-{os.getpid()}-"
        self.tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=self.target.parent))
        return self.tmp

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        try:
            if self.target.exists():
                old = self.target.with_name(f".{self.target.name}.old-{os.getpid()}")
                self.target.rename(old)
                self.tmp.rename(self.target)
                shutil.rmtree(old)  # open memmaps of the old set keep their (unlinked) files
            else:
                self.tmp.rename(self.target)
        except BaseException:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise


def _remove_dead_staging(target: Path) -> None:
    for tmp in target.parent.glob(f".{target.name}.tmp-*-*"):
        try:
            pid = int(tmp.name.rsplit(".tmp-", 1)[1].split("-", 1)[0])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(tmp, ignore_errors=True)
        except (ValueError, PermissionError, IndexError):
            continue


def _check_splits_match(splits: pd.DataFrame, manifest: pd.DataFrame, where: Path) -> None:
    """splits.csv and the arrays must describe the same images in the same splits."""
    ours = manifest.reindex(columns=SPLIT_COLUMNS).fillna("").astype(str).reset_index(drop=True)
    if not ours.equals(splits.fillna("").astype(str).reset_index(drop=True)):
        raise DataError("split manifest is from another data version than these prepared arrays",
                        where=str(where))

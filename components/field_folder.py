"""A user's own field conditions for the fleet simulator: any image folder of class subfolders.

`edgeops fleet simulate --field DIR` replays frames from DIR instead of the release's field
split. Labels come from the folder names, matched to the model's classes (the preprocessing
spec's labels); a folder whose name is not one of them is an unseen class: its frames are
always wrong for the model and never labelled by a user (a correction would name a class the
model cannot output). Frames are decoded and resized with the same numpy preprocessing the
device runs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from components.data import decode_image, scan_image_folder
from device.fleet import FramePool
from device.preprocessing import PreprocessingSpec, to_unit
from edgeops.errors import DataError

UNSEEN_LABEL = -1


def load_field_folder(
    directory: Path | str, spec: PreprocessingSpec, max_images: int | None = None
) -> FramePool:
    """Frames of `directory` at the model's input size, labels by folder name (-1: unseen)."""
    scan = scan_image_folder(directory, min_per_class=1)
    known = {name: i for i, name in enumerate(spec.labels)}
    if not any(label in known for label in scan.labels):
        raise DataError(
            f"no class folder matches the model's classes {list(spec.labels)[:10]}",
            where=str(directory),
        )
    files = list(scan.files)
    if max_images is not None and len(files) > max_images:
        pick = np.random.default_rng(0).choice(len(files), max_images, replace=False)
        files = [files[i] for i in sorted(pick)]
    if not files:
        raise DataError("the field folder holds no images", where=str(directory))
    x01 = to_unit([decode_image(path) for path, _ in files], spec)
    labels = np.array([known.get(label, UNSEEN_LABEL) for _, label in files], dtype=np.int64)
    return FramePool(x01.astype(np.float32), labels, spec.labels)

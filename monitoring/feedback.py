"""Labelled feedback from the field becomes training data.

Records whose user corrected (or confirmed) the prediction carry a label and a downscaled
input (`thumb`, uint8 bytes of size x size x channels). They are written into the image folder
as PNG files under their class, with names that make a re-merge idempotent
(`fb-<device>-<seq>.png`), so the folder's DVC hash changes exactly when new feedback arrives.
A thumbnail whose PNG bytes equal a file already in the folder is skipped (the same frame seen
twice). Where each merged file goes is decided by prepare's split rule (components.splits): its
content decides, a near-duplicate joins its group, and a thumbnail that equals the device
thumbnail of a frame in the folder joins that frame's split, so feedback of a test or field
frame never lands in train.
"""

from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from edgeops.errors import DataError


@dataclass(frozen=True)
class LabelJoin:
    joined: int  # label events applied to their inference row
    relabelled: int  # of those, inferences that already had a (different) label: the later wins
    orphaned: int  # label events whose inference is not among these rows (never sampled, or
    # in partitions not read): counted, never guessed


def join_labels(rows: pd.DataFrame) -> tuple[pd.DataFrame, LabelJoin]:
    """Late labels onto their inferences: each `label` event names (device_id, inference_id) of
    an inference uploaded earlier; its label is written onto that row and the event dropped.
    Several labels for one inference: the last (by ts, then seq) wins. Rows without the column
    (an older agent's) pass through unchanged."""
    if len(rows) == 0 or "inference_id" not in rows.columns or "event" not in rows.columns:
        return rows, LabelJoin(0, 0, 0)
    is_label = rows["event"] == "label"
    if not is_label.any():
        return rows, LabelJoin(0, 0, 0)
    events = (
        rows[is_label]
        .sort_values(["ts", "seq"])
        .drop_duplicates(["device_id", "inference_id"], keep="last")
    )
    out = rows[~is_label].copy()
    key = pd.MultiIndex.from_frame(
        out[["device_id", "inference_id"]].astype({"inference_id": "Int64"})
    )
    ev_key = pd.MultiIndex.from_frame(
        events[["device_id", "inference_id"]].astype({"inference_id": "Int64"})
    )
    target = (out["event"] == "inference").to_numpy() & key.isin(ev_key)
    new = pd.Series(events["label"].to_numpy(), index=ev_key)
    labels = new.reindex(key[target]).to_numpy()
    old = out.loc[target, "label"]
    relabelled = int((old.notna() & (old.to_numpy() != labels)).sum())
    out.loc[target, "label"] = labels
    orphaned = int((~ev_key.isin(key[(out["event"] == "inference").to_numpy()])).sum())
    return out.reset_index(drop=True), LabelJoin(int(target.sum()), relabelled, orphaned)


@dataclass(frozen=True)
class FeedbackMerge:
    offered: int  # labelled rows with a thumbnail
    written: int  # new files
    already_present: int
    skipped_unknown_label: int
    duplicates: int  # same pixels as an image already in the folder: would leak across splits
    per_class: dict[str, int]


def decode_thumb(data: bytes) -> np.ndarray:
    """uint8 bytes of a square size x size x C image -> (size, size) or (size, size, 3)."""
    n = len(data)
    for channels in (1, 3):
        side = math.isqrt(n // channels)
        if side * side * channels == n and side > 0:
            arr = np.frombuffer(data, dtype=np.uint8).reshape(side, side, channels)
            return arr[..., 0] if channels == 1 else arr
    raise DataError(f"thumbnail of {n} bytes is not a square 1- or 3-channel image")


def merge_feedback(rows: pd.DataFrame, data_dir: Path, labels: tuple[str, ...]) -> FeedbackMerge:
    """Write each labelled thumbnail as data_dir/<label name>/fb-<device>-<seq>.png."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError("data folder does not exist", where=str(data_dir))
    usable = rows[rows["label"].notna() & rows["thumb"].notna()] if len(rows) else rows
    written = present = unknown = duplicates = 0
    per_class: dict[str, int] = {}
    seen = _content_hashes(data_dir)
    for row in usable.itertuples(index=False):
        label = int(row.label)
        if not 0 <= label < len(labels):
            unknown += 1
            continue
        name = labels[label]
        path = data_dir / name / f"fb-{row.device_id}-{int(row.seq)}.png"
        if path.exists():
            present += 1
            continue
        png = _png(decode_thumb(bytes(row.thumb)))
        digest = hashlib.sha256(png).hexdigest()
        if digest in seen:
            duplicates += 1
            continue
        seen.add(digest)
        path.parent.mkdir(exist_ok=True)
        tmp = path.with_suffix(".tmp.png")
        tmp.write_bytes(png)
        tmp.replace(path)
        written += 1
        per_class[name] = per_class.get(name, 0) + 1
    return FeedbackMerge(len(usable), written, present, unknown, duplicates, per_class)


def _png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def _content_hashes(data_dir: Path) -> set[str]:
    """sha256 of every file under the folder: the same content hash validation checks."""
    return {hashlib.sha256(p.read_bytes()).hexdigest() for p in data_dir.rglob("*") if p.is_file()}

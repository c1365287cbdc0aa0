"""Splits that never move: train, val, test and field, assigned from image content.

Each image's split comes from a salted sha256 of its decoded pixels (`prepare.split_salt`), so
adding, removing or reordering files never moves another image, in any folder. Near-duplicates
share a split: every image gets a perceptual signature (grey levels resized to a fixed 32x32
with bilinear interpolation, then averaged into 8x8 cells, on a [0, 1] scale) and images whose
signatures are within `prepare.near_duplicate_rms` (root mean square over the 64 cells) are
linked; a connected group takes the split of its canonical member (the smallest pixel hash). A
resized or re-encoded copy of a test image therefore lands in test, never in train.

Why not a 64-bit dHash: on the bundled 8x8 digits, dHash at Hamming distance 2 already chains
107 different digits (12 groups across classes) into one group, while the signature distance
keeps every digit apart at 0.03 and still links 2x-resized JPEG (quality 75) copies.

With the split manifest of an earlier data version (`previous`), every image it lists keeps its
recorded split and a new near-duplicate of it joins that split: nothing seen before ever moves,
even when a new copy would become a group's canonical member.

Labelled field feedback (`fb-*.png`, monitoring/feedback.py) follows the same rule, and a
feedback thumbnail that equals the device thumbnail of a frame in the folder (its source) is
linked to that frame, so it lands in the frame's split even when the downscale moved its
signature too far for the near-duplicate test.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from device.preprocessing import LUMA
from edgeops.errors import DataError
from edgeops.params import PrepareParams

SPLITS = ("train", "val", "test", "field")
SPLIT_COLUMNS = ["path", "sha256", "group", "split"]
SIGNATURE_SIDE = 8


def pixel_hash(img: np.ndarray) -> str:
    """sha256 of the decoded pixels (shape included): the same picture in PNG or BMP hashes alike."""
    h = hashlib.sha256(f"{img.dtype}{img.shape}".encode())
    h.update(np.ascontiguousarray(img).tobytes())
    return h.hexdigest()


def signature(img: np.ndarray) -> np.ndarray:
    """The perceptual signature of the module docstring: 64 float32 values in [0, 1]."""
    grey = img.astype(np.float32) if img.ndim == 2 else img[..., :3].astype(np.float32) @ np.asarray(LUMA, np.float32)
    im = Image.fromarray(grey, mode="F").resize((32, 32), Image.Resampling.BILINEAR)
    small = im.resize((SIGNATURE_SIDE, SIGNATURE_SIDE), Image.Resampling.BOX)
    return (np.asarray(small, dtype=np.float32) / 255.0).ravel()


def bucket(key: str, params: PrepareParams) -> str:
    """The split of a content key: a salted hash mapped to [0, 1) and cut at the fractions."""
    u = int(hashlib.sha256(f"{params.split_salt}:{key}".encode()).hexdigest()[:15], 16) / 16**15
    for name, share in (("test", params.test_fraction), ("val", params.val_fraction),
                        ("field", params.field_fraction)):
        if u < share:
            return name
        u -= share
    return "train"


def near_duplicate_groups(signatures: np.ndarray, max_rms: float,
                          links: list[tuple[int, int]] | None = None) -> np.ndarray:
    """Connected components of the graph linking signatures within `max_rms` of each other,
    plus explicit `links` (a feedback thumbnail and its source frame)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from sklearn.neighbors import NearestNeighbors

    n = len(signatures)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    radius = max_rms * np.sqrt(signatures.shape[1])
    graph = NearestNeighbors().fit(signatures).radius_neighbors_graph(signatures, radius=radius)
    if links:
        a, b = np.asarray(links, dtype=np.int64).T
        graph = graph + coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n)).tocsr()
    return connected_components(graph, directed=False)[1]


def box_thumbnail(grey01: np.ndarray, side: int) -> np.ndarray:
    """(N, H, W) [0, 1] -> (N, side, side) uint8 box means: the device's telemetry thumbnail
    (device/records.py), so a feedback file can be traced back to the frame it was taken from."""
    n, h, w = grey01.shape
    rows = np.array_split(np.arange(h), min(side, h))
    cols = np.array_split(np.arange(w), min(side, w))
    out = np.empty((n, len(rows), len(cols)), dtype=np.float32)
    for i, r in enumerate(rows):
        band = grey01[:, r[0] : r[-1] + 1].mean(axis=1) * 255.0
        for j, c in enumerate(cols):
            out[:, i, j] = band[:, c[0] : c[-1] + 1].mean(axis=1)
    return np.round(out).astype(np.uint8)


def feedback_sources(thumbs: dict[int, np.ndarray], grey01: np.ndarray, max_rms: float) -> list[tuple[int, int]]:
    """(feedback index, source index) for each thumbnail that is some frame's device thumbnail."""
    from sklearn.neighbors import NearestNeighbors

    links: list[tuple[int, int]] = []
    others = np.array([i for i in range(len(grey01)) if i not in thumbs])
    if not len(others):
        return links
    by_side: dict[tuple[int, int], list[int]] = {}
    for i, t in thumbs.items():
        by_side.setdefault(t.shape[:2], []).append(i)
    for (h, w), idx in by_side.items():
        if h != w or h > min(grey01.shape[1:3]):
            continue  # not a device thumbnail of these frames (a box filter only shrinks)
        cand = box_thumbnail(grey01[others], h).reshape(len(others), -1) / 255.0
        mine = np.stack([thumbs[i] for i in idx]).reshape(len(idx), -1) / 255.0
        dist, j = NearestNeighbors(n_neighbors=1).fit(cand).kneighbors(mine)
        rms = dist[:, 0] / np.sqrt(cand.shape[1])
        links += [(i, int(others[k])) for i, k, r in zip(idx, j[:, 0], rms, strict=True) if r <= max_rms]
    return links


def read_split_manifest(path: Path | str) -> pd.DataFrame:
    """A `splits.csv`; DataError naming the file when it is not one."""
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"split manifest is unreadable: {exc}", where=str(path)) from exc
    missing = [c for c in SPLIT_COLUMNS if c not in df.columns]
    bad = sorted(set(df.get("split", pd.Series(dtype=str))) - set(SPLITS))
    if missing or bad:
        what = f"missing columns {missing}" if missing else f"unknown splits {bad}"
        raise DataError(f"not a split manifest: {what}", where=str(path))
    return df[SPLIT_COLUMNS]


def check_previous(previous: pd.DataFrame, items: pd.DataFrame, where: str) -> None:
    """Refuse a manifest written for other data: same path, different content, or nothing shared."""
    cur = dict(zip(items["path"], items["sha256"], strict=True))
    changed = [p for p, s in zip(previous["path"], previous["sha256"], strict=True) if p in cur and cur[p] != s]
    if changed:
        raise DataError(
            f"split manifest is from another data version: {len(changed)} file(s) changed content since "
            f"it was written (e.g. {changed[0]})", where=where)
    if len(previous) and len(items) and not set(previous["sha256"]) & set(items["sha256"]):
        raise DataError("split manifest is from another data set: it shares no image with this folder",
                        where=where)


def assign(items: pd.DataFrame, signatures: np.ndarray, params: PrepareParams,
           previous: pd.DataFrame | None = None, where: str = "",
           links: list[tuple[int, int]] | None = None) -> pd.DataFrame:
    """`items` (path, label, sha256, pixels) -> the same rows with `group` and `split`.

    Refuses (DataError naming the classes and files) a class whose every image has a
    near-duplicate in another class, and a class left without a train or test image.
    """
    comp = near_duplicate_groups(signatures, params.near_duplicate_rms, links)
    out = items.copy()
    known = {} if previous is None else dict(zip(previous["sha256"], zip(previous["group"], previous["split"],
                                                                        strict=True), strict=True))
    group = np.empty(len(out), dtype=object)
    split = np.empty(len(out), dtype=object)
    source = dict(links or [])
    for c in np.unique(comp):
        members = np.flatnonzero(comp == c)
        seen = [i for i in members if out["sha256"].iat[i] in known]
        if not seen:
            canon = min(out["pixels"].iat[i] for i in members)
            group[members], split[members] = canon[:16], bucket(canon, params)
            continue
        for i in members:  # seen images keep their split; new ones join their source or nearest seen one
            if i in seen:
                j = i
            elif source.get(i) in seen:
                j = source[i]
            else:
                j = min(seen, key=lambda k: (float(((signatures[k] - signatures[i]) ** 2).sum()),
                                             out["pixels"].iat[k]))
            group[i], split[i] = known[out["sha256"].iat[j]]
    out["group"], out["split"] = group, split
    _refuse_unusable(out, where)
    return out


def _refuse_unusable(df: pd.DataFrame, where: str) -> None:
    labels_per_group = df.groupby("group")["label"].nunique()
    shared = set(labels_per_group[labels_per_group > 1].index)
    for label, part in df.groupby("label"):
        if shared and set(part["group"]) <= shared:
            other = df[df["group"].isin(set(part["group"])) & (df["label"] != label)].iloc[0]
            raise DataError(
                f"class '{label}' is a near-duplicate of other classes: every one of its {len(part)} images "
                f"has a near-duplicate labelled otherwise (e.g. {part['path'].iat[0]} ~ {other['path']}); "
                f"fix the labels or lower prepare.near_duplicate_rms", where=where)
        for needed in ("test", "train"):
            if not (part["split"] == needed).any():
                raise DataError(
                    f"class '{label}' would get no {needed} image: its {len(part)} images form "
                    f"{part['group'].nunique()} near-duplicate group(s), all in "
                    f"{', '.join(sorted(set(part['split'])))}; add distinct images to it or change "
                    f"prepare.split_salt", where=where)


def ledger(previous: pd.DataFrame | None, current: pd.DataFrame) -> pd.DataFrame:
    """Every image ever assigned: the current rows, plus earlier rows whose content is gone now."""
    cur = current[SPLIT_COLUMNS]
    if previous is None:
        return cur.reset_index(drop=True)
    gone = previous[~previous["sha256"].isin(set(cur["sha256"]))]
    return pd.concat([cur, gone[SPLIT_COLUMNS]], ignore_index=True)

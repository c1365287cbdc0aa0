"""Streaming preparation: a folder larger than a memory cap prepares, statistics are exact,
and a failed run leaves nothing half-written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from components.prepare import NpyRows, channel_statistics, prepare
from components.prepared import PreparedData, UnitImages
from edgeops.errors import DataError
from edgeops.params import PrepareParams

ROOT = Path(__file__).parents[2]

_MEASURE = """
import json, resource, sys
from pathlib import Path
from components.prepare import prepare
from edgeops.params import PrepareParams
from tests.components.conftest import write_folder
warm, folder, out, size = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
params = PrepareParams(image_size=size, min_per_class=5)
prepare(write_folder(warm, {"a": 10, "b": 10}), params, out=warm.parent / "warm-out")  # lazy imports
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
prepared = prepare(folder, params, out=out, workers=2)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"grown_kb": after - before, "images": len(prepared.manifest)}))
"""


def _colour_folder(root: Path, per_class: int, side: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for k, label in enumerate(("red", "green", "blue")):
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            img = rng.integers(0, 96, (side, side, 3), dtype=np.uint8)
            img[..., k] += rng.integers(60, 160, dtype=np.uint8)
            Image.fromarray(img).save(root / label / f"{i:05d}.png")
    return root


def test_a_folder_larger_than_the_memory_cap_prepares(tmp_path: Path) -> None:
    """3,000 colour images at 64 px are 147 MB as float32 and 37 MB as uint8: preparing them
    may grow the process's peak resident memory by less than the uint8 array alone."""
    per_class, size = 1000, 64
    folder = _colour_folder(tmp_path / "data", per_class, side=16)
    cap_kb = 3 * per_class * size * size * 3 // 1024  # the whole set as uint8
    res = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(tmp_path / "warm"), str(folder), str(tmp_path / "out"), str(size)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    measured = json.loads(res.stdout.strip().splitlines()[-1])
    assert measured["images"] == 3 * per_class
    assert measured["grown_kb"] < cap_kb, measured
    p = PreparedData.load(tmp_path / "out")
    assert isinstance(p.x_train, UnitImages) and isinstance(p.x_train.raw, np.memmap)
    # statistics equal a float64 reference over the stored train pixels
    s1, s2, n = np.zeros(3), np.zeros(3), 0
    for i in range(0, len(p.x_train), 500):
        v = np.asarray(p.x_train.raw[i : i + 500], np.float64).reshape(-1, 3) / 255.0
        s1, s2, n = s1 + v.sum(0), s2 + (v * v).sum(0), n + len(v)
    np.testing.assert_allclose(p.spec.mean, s1 / n, rtol=1e-9)  # the reference's own summation error
    np.testing.assert_allclose(p.spec.std, np.sqrt(s2 / n - (s1 / n) ** 2), rtol=1e-9)
    assert not list(tmp_path.glob(".out.*"))  # no staging left behind


def test_histogram_statistics_are_exact_where_float32_sums_saturate() -> None:
    hist = np.zeros((1, 256), np.int64)
    hist[0, 200], hist[0, 201] = 3 * 10**8, 10**8  # 400M pixels, more than float32 counts exactly
    mean, std = channel_statistics(hist)
    values = np.array([200, 201]) / 255.0
    weights = np.array([0.75, 0.25])
    assert mean[0] == pytest.approx(float(values @ weights), rel=1e-15)
    assert std[0] == pytest.approx(float(np.sqrt(weights @ (values - values @ weights) ** 2)), rel=1e-12)


def test_prepare_to_disk_matches_in_memory_and_fails_without_leftovers(tmp_path: Path) -> None:
    folder = _colour_folder(tmp_path / "data", 30, side=20)
    params = PrepareParams(image_size=16, min_per_class=5)
    mem = prepare(folder, params, workers=1)
    disk = prepare(folder, params, out=tmp_path / "prepared", workers=2)
    assert disk.spec == mem.spec and disk.manifest.equals(mem.manifest)
    for s in ("train", "val", "test", "field"):
        np.testing.assert_array_equal(disk.split(s)[0].raw, mem.split(s)[0].raw)
        np.testing.assert_array_equal(disk.split(s)[1], mem.split(s)[1])
    (folder / "red" / "zz_bad.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot decode"):
        prepare(folder, params, out=tmp_path / "prepared")
    assert sorted(x.name for x in tmp_path.iterdir()) == ["data", "prepared"]  # the old set, whole
    assert PreparedData.load(tmp_path / "prepared").spec == mem.spec


def test_rows_written_and_read_back_by_file_offset(tmp_path: Path) -> None:
    rows = NpyRows(tmp_path / "r.npy", (5, 2, 2, 3))
    data = np.arange(60, dtype=np.uint8).reshape(5, 2, 2, 3)
    rows[0] = data[0]
    rows[1:5] = data[1:]
    np.testing.assert_array_equal(rows[np.array([4, 0, 2])], data[[4, 0, 2]])
    rows.close()
    np.testing.assert_array_equal(np.load(tmp_path / "r.npy"), data)

"""Benchmark for streaming preparation: a synthetic RGB image folder, prepared in a child process.

    .venv/bin/python benchmarks/prepare_scale.py [--images 20000] [--size 96] [--seeds 3]
        [--workers N] [--no-validate] [--json FILE]

Generates `--images` RGB PNGs of `--size` px offline (numpy + Pillow, ten classes; each image
is a random coarse colour field plus noise, so no two are near-duplicates and the content split
sees a realistic folder) in a temp directory, then runs `components.prepare.prepare(..., out=)`
(what `edgeops stage prepare` runs) in a fresh Python process and records its wall time and the
child's peak resident memory (`ru_maxrss`, imports included). A second child runs the Great
Expectations suite over the prepared folder (the rest of the stage) and is measured the same
way. Each seed generates a different folder; the table gives the mean and a 95% t-interval.

Goal (issue 14): 20,000 images at 96 px prepare with peak memory <= 1.5 GB. Anchor: the old
path (every image decoded into one float32 array) peaked at 6.0 GB and took 3 min 45 s on that
folder, then refused it (float32 statistics). `--json FILE` writes
{"goal_peak_rss_mb", "anchor": {...}, "runs": [{"images", "size", "seed", "prepare_s",
"peak_rss_mb", "validate_s", "validate_peak_rss_mb", "validation_success"}, ...], "summary": {...}}.
`run(images, size)` returns the summary dict (benchmarks/scale.py --prepare calls it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
GOAL_PEAK_MB = 1500.0  # 1.5 GB
ANCHOR = {"images": 20_000, "size": 96, "peak_rss_mb": 6000.0, "prepare_s": 225.0,
          "note": "old path: one float32 array in memory; refused the valid data (float32 statistics)"}
CLASSES = 10

_CHILD = """
import json, os, resource, sys, time
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
from pathlib import Path
from edgeops.params import PrepareParams
mode, folder, out, size = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
workers = int(sys.argv[5]) or None
params = PrepareParams(image_size=size, min_per_class=5)
start = time.perf_counter()
if mode == "prepare":
    from components.prepare import prepare
    prepared = prepare(folder, params, out=out, workers=workers)
    extra = {"images": len(prepared.manifest), "mean": list(prepared.spec.mean), "std": list(prepared.spec.std)}
else:
    from components.prepare import PreparedData
    from components.validation import validate_prepared
    result = validate_prepared(PreparedData.load(out), params)
    extra = {"success": result.success, "failures": result.failures}
seconds = time.perf_counter() - start
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "peak_rss_mb": peak_mb, **extra}))
"""


def make_folder(root: Path, images: int, size: int, seed: int) -> Path:
    """`images` RGB PNGs at `size` px in CLASSES class folders (about equal counts)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for k in range(CLASSES):
        (root / f"class_{k}").mkdir(parents=True, exist_ok=True)
    for i in range(images):
        k = i % CLASSES
        coarse = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        field = np.asarray(Image.fromarray(coarse).resize((size, size), Image.Resampling.BILINEAR), np.int16)
        field[..., k % 3] += 20 * (k // 3)  # a weak class cue
        noise = rng.integers(-12, 13, (size, size, 3), dtype=np.int16)
        img = np.clip(field + noise, 0, 255).astype(np.uint8)
        Image.fromarray(img).save(root / f"class_{k}" / f"img_{i:06d}.png", compress_level=1)
    return root


def _child(mode: str, folder: Path, out: Path, size: int, workers: int | None) -> dict[str, Any]:
    res = subprocess.run(
        [sys.executable, "-c", _CHILD, mode, str(folder), str(out), str(size), str(workers or 0)],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )
    if res.returncode != 0:
        raise RuntimeError(f"{mode} child failed: {res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def run_once(images: int, size: int, seed: int, workers: int | None = None, validate: bool = True) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="edgeops-prepare-scale-"))
    try:
        folder = make_folder(tmp / "data", images, size, seed)
        prep = _child("prepare", folder, tmp / "prepared", size, workers)
        row: dict[str, Any] = {"images": images, "size": size, "seed": seed, "prepare_s": prep["seconds"],
                               "peak_rss_mb": prep["peak_rss_mb"], "prepared_images": prep["images"],
                               "validate_s": None, "validate_peak_rss_mb": None, "validation_success": None}
        if validate:
            val = _child("validate", folder, tmp / "prepared", size, workers)
            row.update(validate_s=val["seconds"], validate_peak_rss_mb=val["peak_rss_mb"],
                       validation_success=val["success"], validation_failures=val["failures"])
        return row
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def interval(values: list[float]) -> tuple[float, float, float]:
    """Mean and 95% t-interval across seeds (one seed: no width)."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, mean, mean
    from scipy import stats

    half = float(stats.t.ppf(0.975, len(values) - 1)) * statistics.stdev(values) / len(values) ** 0.5
    return mean, mean - half, mean + half


def run(images: int, size: int, seeds: int = 1, workers: int | None = None, validate: bool = True) -> dict[str, Any]:
    """Prepare `images` synthetic images at `size` px per seed; the summary with every run."""
    runs = [run_once(images, size, seed, workers, validate) for seed in range(seeds)]
    summary: dict[str, Any] = {"images": images, "size": size, "seeds": seeds, "goal_peak_rss_mb": GOAL_PEAK_MB}
    for key in ("prepare_s", "peak_rss_mb", "validate_s", "validate_peak_rss_mb"):
        vals = [r[key] for r in runs if r[key] is not None]
        if vals:
            summary[key] = dict(zip(("mean", "lo", "hi"), interval(vals), strict=True))
    summary["peak_goal_met"] = max(r["peak_rss_mb"] for r in runs) <= GOAL_PEAK_MB
    summary["validation_success"] = all(r["validation_success"] is not False for r in runs)
    return {"goal_peak_rss_mb": GOAL_PEAK_MB, "anchor": ANCHOR, "runs": runs, "summary": summary}


def _table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    s = result["summary"]
    t = Table(title=f"prepare: {s['images']:,} RGB images at {s['size']} px, {s['seeds']} seed(s), "
                    "mean [95% interval]")
    for col in ("path", "wall time", "peak RSS", "goal", "statistics"):
        t.add_column(col)

    def fmt(d: dict[str, float] | None, unit: str) -> str:
        return "-" if d is None else f"{d['mean']:.1f} [{d['lo']:.1f}, {d['hi']:.1f}] {unit}"

    t.add_row("old (anchor, issue 14)", f"{ANCHOR['prepare_s']:.0f} s", f"{ANCHOR['peak_rss_mb']:.0f} MB",
              f"<= {GOAL_PEAK_MB:.0f} MB", "refused (float32)")
    t.add_row("new: prepare (child process)", fmt(s.get("prepare_s"), "s"), fmt(s.get("peak_rss_mb"), "MB"),
              "met" if s["peak_goal_met"] else "NOT met", "exact (integer histograms)")
    t.add_row("new: validation suite (child)", fmt(s.get("validate_s"), "s"), fmt(s.get("validate_peak_rss_mb"), "MB"),
              "", "passed" if s["validation_success"] else "FAILED")
    Console().print(t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=20_000)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=None, help="decoding threads (default: one per core, <= 8)")
    ap.add_argument("--no-validate", action="store_true", help="skip the Great Expectations child")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    result = run(args.images, args.size, args.seeds, args.workers, not args.no_validate)
    _table(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.json.with_suffix(args.json.suffix + ".tmp")
        tmp.write_text(json.dumps(result, indent=2))
        os.replace(tmp, args.json)


if __name__ == "__main__":
    main()

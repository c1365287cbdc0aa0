"""Segments: a frozen camera on one device is flagged; healthy devices are not."""

from __future__ import annotations

import numpy as np
import pandas as pd

from monitoring.segments import benjamini_hochberg, flag_segments


def _window(rng: np.random.Generator, pool: np.ndarray, frozen: bool) -> pd.DataFrame:
    parts = []
    for d in range(10):
        idx = rng.integers(0, len(pool), 24)
        if frozen and d == 3:
            idx[:] = idx[0]  # the camera sends the same frame over and over
        f = pool[idx]
        parts.append(pd.DataFrame({
            "device_id": f"dev-{d}", "f_a": f[:, 0], "f_b": f[:, 1],
            "top1": (f[:, 0] * 10).astype(int), "confidence": 0.5 + f[:, 1] / 2,
            "latency_ms": rng.normal(5, 0.5, 24),
        }))
    return pd.concat(parts, ignore_index=True)


def test_frozen_camera_is_flagged_and_healthy_fleets_mostly_are_not() -> None:
    rng = np.random.default_rng(0)
    pool = rng.random((300, 2))
    caught = sum(
        any(f.value == "dev-3" and f.statistic == "repeated_frames"
            for f in flag_segments(_window(rng, pool, True)))
        for _ in range(20)
    )
    false = sum(bool(flag_segments(_window(rng, pool, False))) for _ in range(20))
    assert caught == 20
    assert false <= 3  # BH at 5%: about one window in twenty may raise a false flag


def test_benjamini_hochberg_known_values() -> None:
    p = np.array([0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205])
    assert benjamini_hochberg(p, 0.05).tolist() == [True, True] + [False] * 6

"""Drift scenarios for the fleet simulator: what the field does to a model, from an onset time.

Pure numpy on [0,1] images (N,H,W,C). Data drift changes the pixels (rotation, lighting,
blur, noise), label drift changes which classes arrive (class-prior shift), concept drift
changes what a label means (the same image now belongs to another class, seen only through
user corrections). Before `onset_hours` a scenario is the identity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeops.errors import ConfigError


def rotate(x01: np.ndarray, degrees: float, fill: float | None = None) -> np.ndarray:
    """Rotate every image about its centre (inverse-mapped bilinear). Uncovered pixels take
    `fill`, or each image's border mean so a rotated frame does not gain a dark corner."""
    x = np.asarray(x01, dtype=np.float32)
    n, h, w, c = x.shape
    if degrees == 0 or n == 0:
        return x.copy()
    t = np.deg2rad(degrees)
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    # output (y, x) samples the input at R(-t) (y, x)
    sx = np.cos(t) * (xx - cx) + np.sin(t) * (yy - cy) + cx
    sy = -np.sin(t) * (xx - cx) + np.cos(t) * (yy - cy) + cy
    x0 = np.floor(sx).astype(np.int64)
    y0 = np.floor(sy).astype(np.int64)
    fx = (sx - x0)[None, :, :, None]
    fy = (sy - y0)[None, :, :, None]
    inside = (sx >= 0) & (sx <= w - 1) & (sy >= 0) & (sy <= h - 1)
    x0c, y0c = np.clip(x0, 0, w - 1), np.clip(y0, 0, h - 1)
    x1c, y1c = np.clip(x0 + 1, 0, w - 1), np.clip(y0 + 1, 0, h - 1)
    top = x[:, y0c, x0c] * (1 - fx) + x[:, y0c, x1c] * fx
    bottom = x[:, y1c, x0c] * (1 - fx) + x[:, y1c, x1c] * fx
    out = top * (1 - fy) + bottom * fy
    if fill is None:
        border = np.concatenate(
            [x[:, 0], x[:, -1], x[:, :, 0], x[:, :, -1]], axis=1
        )  # (N, 2W+2H, C)
        fill_v = border.mean(axis=1)[:, None, None, :]
    else:
        fill_v = np.full((n, 1, 1, c), fill, dtype=np.float32)
    return np.where(inside[None, :, :, None], out, fill_v).astype(np.float32)


def adjust(x01: np.ndarray, brightness: float = 1.0, contrast: float = 1.0) -> np.ndarray:
    """Multiplicative brightness (0.8 = 20% darker), then contrast about each image's mean."""
    x = np.asarray(x01, dtype=np.float32) * brightness
    if contrast != 1.0:
        m = x.mean(axis=(1, 2, 3), keepdims=True)
        x = (x - m) * contrast + m
    return np.clip(x, 0.0, 1.0)


def blur(x01: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur with edge padding."""
    x = np.asarray(x01, dtype=np.float32)
    if sigma <= 0:
        return x.copy()
    r = max(1, int(np.ceil(3 * sigma)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2).astype(np.float32)
    k /= k.sum()
    for axis in (1, 2):
        pad = [(0, 0)] * 4
        pad[axis] = (r, r)
        p = np.pad(x, pad, mode="edge")
        size = x.shape[axis]
        x = sum(k[i] * np.take(p, np.arange(i, i + size), axis=axis) for i in range(2 * r + 1))
    return np.clip(x, 0.0, 1.0).astype(np.float32)


def add_noise(x01: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    x = np.asarray(x01, dtype=np.float32)
    if std <= 0:
        return x.copy()
    return np.clip(x + rng.normal(0.0, std, x.shape).astype(np.float32), 0.0, 1.0)


@dataclass(frozen=True)
class Scenario:
    """One drift, active from `onset_hours` of simulated time on."""

    name: str = "none"
    onset_hours: float = 0.0
    rotation_deg: float = 0.0
    brightness: float = 1.0
    contrast: float = 1.0
    blur_sigma: float = 0.0
    noise_std: float = 0.0
    class_weights: tuple[float, ...] | None = None  # label drift: P(y) after onset
    label_map: tuple[int, ...] | None = None  # concept drift: true label = label_map[old]

    def active(self, hours: float) -> bool:
        return self.name != "none" and hours >= self.onset_hours

    def transform(self, x01: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        x = rotate(x01, self.rotation_deg)
        x = adjust(x, self.brightness, self.contrast)
        x = blur(x, self.blur_sigma)
        return add_noise(x, self.noise_std, rng)

    def draw(
        self, x01: np.ndarray, labels: np.ndarray, n: int, hours: float, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """n frames and their true labels as the field produces them at `hours`."""
        on = self.active(hours)
        if on and self.class_weights is not None:
            w = np.asarray(self.class_weights, dtype=np.float64)[labels]
            idx = rng.choice(len(labels), size=n, p=w / w.sum())
        else:
            idx = rng.integers(0, len(labels), size=n)
        x, y = x01[idx], np.asarray(labels)[idx]
        if not on:
            return x, y
        if self.label_map is not None:
            y = np.asarray(self.label_map)[y]
        return self.transform(x, rng), y


SCENARIO_NAMES = (
    "none",
    "rotation",
    "brightness",
    "contrast",
    "blur",
    "noise",
    "prior_shift",
    "concept_shift",
    "rotate_darken",
)


def make_scenario(name: str, onset_hours: float = 0.0, n_classes: int = 10) -> Scenario:
    """The named presets the CLI and the demo use (severities a field would plausibly show)."""
    if name not in SCENARIO_NAMES:
        raise ConfigError(f"unknown scenario {name!r}; choose one of {', '.join(SCENARIO_NAMES)}")
    presets: dict[str, dict[str, object]] = {
        "none": {},
        "rotation": {"rotation_deg": 15.0},
        "brightness": {"brightness": 0.8},
        "contrast": {"contrast": 0.6},
        "blur": {"blur_sigma": 1.0},
        "noise": {"noise_std": 0.08},
        "prior_shift": {
            "class_weights": tuple(
                8.0 if k < max(1, n_classes // 3) else 1.0 for k in range(n_classes)
            )
        },
        "concept_shift": {
            "label_map": tuple((k + 1) % n_classes if k < 2 else k for k in range(n_classes))
        },
        "rotate_darken": {"rotation_deg": 15.0, "brightness": 0.8},
    }
    return Scenario(name=name, onset_hours=onset_hours, **presets[name])  # type: ignore[arg-type]

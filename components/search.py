"""Accuracy-aware compression search on the VALIDATION split: per-layer sensitivity, a sensitivity-
guided structured plan, the Pareto front of the variants and the cheapest one per device profile.

NNCF's accuracy-aware quantisation and Olive's pass search work against a `max_drop` or goals;
here the goal is per device profile: among variants the profile can run within its budgets (bytes,
arena on its runtime, latency) and within `margin` of the best validation accuracy, the fewest
wire bytes, then the lowest latency. Nothing here reads the test split.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from components.conversion import Variant
    from components.keras import keras
    from components.profiles import DeviceProfile


def _val_accuracy(model: keras.Model, x: np.ndarray, y: np.ndarray) -> float:
    from components.conversion import keras_probs

    return float((keras_probs(model, x).argmax(axis=1) == y).mean())


def _validation(prepared: Any) -> tuple[np.ndarray, np.ndarray]:
    from components.conversion import model_inputs

    return model_inputs(prepared.x_val, prepared.spec), np.asarray(prepared.y_val)


def layer_sensitivity(
    model: keras.Model,
    prepared: Any,
    ratios: Iterable[float] = (0.25, 0.5, 0.75),
    clusters: Iterable[int] = (4, 16),
) -> list[dict[str, Any]]:
    """Validation-accuracy loss (points) when ONE layer is compressed and nothing is fine-tuned:
    its channels removed (structured, by ratio), its kernel magnitude-pruned (sparsity, by ratio)
    or its kernel shared to k values per output channel (clusters)."""
    from components.structured_pruning import channel_importance, plan, remove_channels

    x, y = _validation(prepared)
    base = _val_accuracy(model, x, y)
    rows: list[dict[str, Any]] = []
    for name in channel_importance(model):
        layer = model.get_layer(name)
        original = layer.get_weights()
        for r in ratios:
            keep = plan(model, {name: r})
            rows.append({"layer": name, "kind": "channels", "amount": r,
                         "drop_pts": 100 * (base - _val_accuracy(remove_channels(model, {name: keep[name]}), x, y))})
            k = original[0]
            thresh = np.quantile(np.abs(k), r)
            layer.set_weights([np.where(np.abs(k) < thresh, 0, k)] + original[1:])
            rows.append({"layer": name, "kind": "sparsity", "amount": r,
                         "drop_pts": 100 * (base - _val_accuracy(model, x, y))})
            layer.set_weights(original)
        for n in clusters:
            layer.set_weights([_share(original[0], n)] + original[1:])
            rows.append({"layer": name, "kind": "clusters", "amount": n,
                         "drop_pts": 100 * (base - _val_accuracy(model, x, y))})
            layer.set_weights(original)
    return rows


def _share(kernel: np.ndarray, n: int) -> np.ndarray:
    """Each output channel's weights snapped to n linearly spaced centroids (tfmot's LINEAR init)."""
    flat = kernel.reshape(-1, kernel.shape[-1])
    lo, hi = flat.min(axis=0), flat.max(axis=0)
    centroids = np.linspace(lo, hi, n)  # (n, channels)
    idx = np.abs(flat[None] - centroids[:, None, :]).argmin(axis=0)
    return np.take_along_axis(centroids, idx, axis=0).reshape(kernel.shape).astype(kernel.dtype)


def guided_ratios(sensitivity: list[dict[str, Any]], max_drop_pts: float, floor: float = 0.0) -> dict[str, float]:
    """Per layer, the largest channel ratio whose one-layer drop stays within max_drop_pts."""
    out: dict[str, float] = {}
    for row in sensitivity:
        if row["kind"] == "channels" and row["drop_pts"] <= max_drop_pts:
            out[row["layer"]] = max(out.get(row["layer"], floor), float(row["amount"]))
    for row in sensitivity:
        out.setdefault(row["layer"], floor)
    return out


@dataclass(frozen=True)
class Point:
    """One variant in the search: validation accuracy and what it costs."""

    name: str
    val_accuracy: float
    wire_bytes: int
    latency_ms: float

    @classmethod
    def of(cls, name: str, v: Variant) -> Point:
        m = v.measurement
        wire = m.wire_bytes if m and m.wire_bytes else v.bytes
        return cls(name, float(v.val_accuracy if v.val_accuracy is not None else float("nan")), int(wire),
                   float(m.host_latency_ms if m else float("inf")))


def pareto_front(points: Iterable[Point]) -> list[Point]:
    """Points no other point beats on validation accuracy, wire bytes and latency at once."""
    pts = [p for p in points if not np.isnan(p.val_accuracy)]

    def dominated(p: Point) -> bool:
        return any(
            q.val_accuracy >= p.val_accuracy and q.wire_bytes <= p.wire_bytes and q.latency_ms <= p.latency_ms
            and (q.val_accuracy, -q.wire_bytes, -q.latency_ms) != (p.val_accuracy, -p.wire_bytes, -p.latency_ms)
            for q in pts
        )

    return sorted((p for p in pts if not dominated(p)), key=lambda p: (p.wire_bytes, -p.val_accuracy))


def choose_for_profile(
    variants: Mapping[str, Variant], profile: DeviceProfile, margin: float, reference: float | None = None
) -> tuple[str | None, str]:
    """The fewest wire bytes (then lowest latency) among variants the profile can run within
    `margin` (absolute) of `reference` (the float parent's validation accuracy), or else of the
    best validation accuracy any of them reaches."""
    from components.blessing import constraint_reasons

    fit = {n: Point.of(n, v) for n, v in variants.items() if not constraint_reasons(v, profile)}
    fit = {n: p for n, p in fit.items() if not np.isnan(p.val_accuracy)}
    if not fit:
        return None, f"no variant fits profile {profile.name}"
    best = reference if reference is not None else max(p.val_accuracy for p in fit.values())
    ok = sorted((p.wire_bytes, p.latency_ms, n) for n, p in fit.items() if p.val_accuracy >= best - margin)
    if not ok:
        return None, f"no variant that fits {profile.name} is within {margin} of {best:.4f} on validation"
    name = ok[0][2]
    return name, (f"{name}: {fit[name].wire_bytes} wire bytes, validation {fit[name].val_accuracy:.4f} "
                  f"(best {best:.4f}, margin {margin}) among {len(fit)} that fit {profile.name}")

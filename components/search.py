"""Accuracy-aware compression search on the VALIDATION split: per-layer sensitivity, a sensitivity-
guided structured plan, the Pareto front of the variants and the cheapest one per device profile.

NNCF's accuracy-aware quantisation and Olive's pass search work against a `max_drop` or goals;
here the goal is per device profile: among variants the profile can run within its budgets (bytes,
arena on its runtime, estimated latency) and non-inferior within `margin` to the best validation
accuracy (paired), the fewest wire bytes, then the lowest latency (components.selection owns the
rule). Nothing here reads the test split.
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
    latency_ms: float  # host-measured, or the profile's estimate when one is given

    @classmethod
    def of(cls, name: str, v: Variant, profile: DeviceProfile | None = None) -> Point:
        m = v.measurement
        if m is None:
            latency = float("inf")
        else:
            latency = m.estimated_latency_ms(profile) if profile is not None else m.host_latency_ms
        return cls(name, float(v.val_accuracy if v.val_accuracy is not None else float("nan")), int(v.wire_bytes),
                   float(latency))


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


def profile_front(variants: Mapping[str, Variant], profile: DeviceProfile) -> list[Point]:
    """The Pareto front among the variants this profile can run, latency estimated for it."""
    from components.blessing import constraint_reasons

    return pareto_front(Point.of(n, v, profile) for n, v in variants.items() if not constraint_reasons(v, profile))


def choose_for_profile(
    variants: Mapping[str, Variant], profile: DeviceProfile, margin: float, alpha: float = 0.05,
    y_val: Any = None,
) -> tuple[str | None, str]:
    """The search's pick for a profile: selection's rule (components.selection.rank), the
    cheapest fitting variant non-inferior to the best on validation within `margin`."""
    from components.selection import choose

    return choose(dict(variants), profile, margin, alpha, y_val)

"""Compression with tfmot on tf_keras models: pruning, clustering, QAT and their combinations.

Every method starts from a copy of the float parent (tfmot wraps layers in place), fine-tunes it
with its own schedule (defaults lose 10-20 points on small nets: DEPENDENCIES.md), strips the
training wrappers and reports what it reached (measured sparsity, distinct weights per kernel).
The collaborative forms keep one gain through the next: sparsity-preserving clustering, PQAT
(pruning-preserving QAT) and PCQAT (sparsity- and cluster-preserving QAT).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from components.keras import keras
from edgeops.errors import TrainingError

if TYPE_CHECKING:
    from components.conversion import PreparedLike
    from edgeops.params import CompressParams

METHODS = ("prune", "cluster", "qat", "prune_cluster", "pqat", "pcqat")
# QAT parents carry fake-quant ops: only a full-integer conversion keeps their gain.
QAT_METHODS = frozenset({"qat", "pqat", "pcqat"})


@dataclass(frozen=True)
class Compressed:
    method: str
    model: keras.Model
    sparsity: float  # share of exact zeros in conv/dense kernels
    unique_weights: dict[
        str, int
    ]  # distinct values per kernel (tfmot leaves depthwise unclustered)
    history: dict[str, list[float]] = field(default_factory=dict)

    @property
    def targets(self) -> tuple[str, ...]:
        """Targets worth converting this parent to."""
        if self.method in QAT_METHODS:
            return ("tflite-int8",)
        return ("tflite-f32", "tflite-f16", "tflite-dynamic", "tflite-int8", "onnx")


def _tfmot() -> Any:
    import tensorflow_model_optimization as tfmot

    return tfmot


def _kernels(model: keras.Model) -> list[np.ndarray]:
    return [w.numpy() for w in model.trainable_weights if "kernel" in w.name and w.shape.rank > 1]


def sparsity(model: keras.Model) -> float:
    ks = _kernels(model)
    return float(sum((k == 0).sum() for k in ks) / max(1, sum(k.size for k in ks)))


def _copy(model: keras.Model) -> keras.Model:
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


def _fit(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    epochs: int,
    params: CompressParams,
    callbacks: list | None = None,
) -> dict[str, list[float]]:
    model.compile(
        optimizer=keras.optimizers.Adam(params.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    hist = model.fit(
        x, y, epochs=epochs, batch_size=params.batch_size, verbose=0, callbacks=callbacks or []
    )
    if not np.isfinite(hist.history["loss"][-1]):
        raise TrainingError(f"compression fine-tuning diverged (loss {hist.history['loss'][-1]})")
    return {k: [float(v) for v in vs] for k, vs in hist.history.items()}


def prune(
    model: keras.Model, x: np.ndarray, y: np.ndarray, params: CompressParams
) -> tuple[keras.Model, dict]:
    """Magnitude pruning to params.prune_sparsity on a polynomial schedule, then strip."""
    tfmot = _tfmot()
    steps = int(np.ceil(len(x) / params.batch_size)) * params.prune_epochs
    schedule = tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=0.0,
        final_sparsity=params.prune_sparsity,
        begin_step=0,
        end_step=max(1, int(steps * 0.7)),
        frequency=max(1, steps // 50),
    )
    wrapped = tfmot.sparsity.keras.prune_low_magnitude(_copy(model), pruning_schedule=schedule)
    hist = _fit(
        wrapped, x, y, params.prune_epochs, params, [tfmot.sparsity.keras.UpdatePruningStep()]
    )
    return tfmot.sparsity.keras.strip_pruning(wrapped), hist


def cluster(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    params: CompressParams,
    preserve_sparsity: bool = False,
) -> tuple[keras.Model, dict]:
    """Weight clustering to params.clusters shared values per kernel, fine-tuned, stripped.

    Linear centroid init: Deep Compression found it best, and k-means++ fails on kernels with
    fewer distinct negative or positive weights than clusters (sparsity-preserving mode).
    """
    tfmot = _tfmot()
    cl = tfmot.clustering.keras
    wrapped = cl.cluster_weights(
        _copy(model),
        number_of_clusters=params.clusters,
        cluster_centroids_init=cl.CentroidInitialization.LINEAR,
        preserve_sparsity=preserve_sparsity,
    )
    hist = _fit(wrapped, x, y, params.cluster_epochs, params)
    return cl.strip_clustering(wrapped), hist


def qat(
    model: keras.Model, x: np.ndarray, y: np.ndarray, params: CompressParams, preserve: str = "none"
) -> tuple[keras.Model, dict]:
    """Quantisation-aware fine-tuning; preserve 'sparsity' (PQAT) or 'clusters' (PCQAT)."""
    tfmot = _tfmot()
    q = tfmot.quantization.keras
    annotated = q.quantize_annotate_model(_copy(model))
    if preserve == "sparsity":
        scheme = tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme()
    elif preserve == "clusters":
        scheme = tfmot.experimental.combine.Default8BitClusterPreserveQuantizeScheme(
            preserve_sparsity=True
        )
    else:
        scheme = q.default_8bit.Default8BitQuantizeScheme()
    with q.quantize_scope():
        wrapped = q.quantize_apply(annotated, scheme)
    return wrapped, _fit(wrapped, x, y, params.qat_epochs, params)


def unique_weights(model: keras.Model) -> dict[str, int]:
    """Distinct values per conv/dense kernel, by layer: what clustering bought."""
    out = {}
    for layer in model.layers:
        for w in layer.trainable_weights:
            if "kernel" in w.name and w.shape.rank > 1:
                out[f"{layer.name}/{w.name.split('/')[-1].split(':')[0]}"] = len(
                    np.unique(w.numpy())
                )
    return out


def compress(
    model: keras.Model, prepared: PreparedLike, params: CompressParams
) -> dict[str, Compressed]:
    """Each method in params.methods from the float parent (combinations chain their stages)."""
    from components.conversion import model_inputs

    unknown = sorted(set(params.methods) - set(METHODS))
    if unknown:
        raise TrainingError(f"unknown compression methods {unknown}; known: {', '.join(METHODS)}")
    x, y = model_inputs(prepared.x_train, prepared.spec), np.asarray(prepared.y_train)
    out: dict[str, Compressed] = {}
    pruned: tuple[keras.Model, dict] | None = None
    for method in params.methods:
        if method in ("prune", "prune_cluster", "pqat", "pcqat") and pruned is None:
            pruned = prune(model, x, y, params)
        if method == "prune":
            m, hist = pruned
        elif method == "cluster":
            m, hist = cluster(model, x, y, params)
        elif method == "qat":
            m, hist = qat(model, x, y, params)
        elif method == "prune_cluster":
            m, hist = cluster(pruned[0], x, y, params, preserve_sparsity=True)
        elif method == "pqat":
            m, hist = qat(pruned[0], x, y, params, preserve="sparsity")
        else:  # pcqat
            pc = (
                out["prune_cluster"].model
                if "prune_cluster" in out
                else cluster(pruned[0], x, y, params, True)[0]
            )
            m, hist = qat(pc, x, y, params, preserve="clusters")
        out[method] = Compressed(method, m, sparsity(m), unique_weights(m), hist)
    return out

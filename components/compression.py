"""Compression with tfmot on tf_keras models: pruning, clustering, QAT and their combinations.

Every method starts from a copy of the float parent (tfmot wraps layers in place), fine-tunes it
with its own schedule (defaults lose 10-20 points on small nets: DEPENDENCIES.md), strips the
training wrappers and reports what it reached (measured sparsity, distinct weights per kernel).
The collaborative forms keep one gain through the next: sparsity-preserving clustering, PQAT
(pruning-preserving QAT) and PCQAT (sparsity- and cluster-preserving QAT).

Every fine-tune is distillation-aware (components.finetune): the student learns from the
teacher's soft targets (the float parent when no teacher is given) on the training augmentation,
with a cosine learning-rate schedule. "structured" removes whole conv channels
(components.structured_pruning): fewer parameters and MACs in every runtime. Clustering is
per output channel on a BatchNorm-folded copy, so the converter has nothing left to fold and
the int8 file keeps at most `clusters` distinct values per channel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from components.keras import keras
from edgeops.errors import TrainingError

if TYPE_CHECKING:
    from components.conversion import PreparedLike
    from components.finetune import Tuner
    from edgeops.params import AugmentParams, CompressParams

METHODS = ("prune", "cluster", "qat", "prune_cluster", "pqat", "pcqat", "structured")
# QAT parents carry fake-quant ops: only a full-integer conversion keeps their gain.
QAT_METHODS = frozenset({"qat", "pqat", "pcqat"})


@dataclass(frozen=True)
class Compressed:
    method: str
    model: keras.Model
    sparsity: float  # share of exact zeros in conv/dense kernels
    unique_weights: dict[str, int]  # most distinct values in one output channel, per kernel
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


def prune(model: keras.Model, tuner: Tuner, params: CompressParams) -> tuple[keras.Model, dict]:
    """Magnitude pruning to params.prune_sparsity on a polynomial schedule, then strip."""
    tfmot = _tfmot()
    steps = tuner.steps(params.prune_epochs)
    schedule = tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=0.0,
        final_sparsity=params.prune_sparsity,
        begin_step=0,
        end_step=max(1, int(steps * 0.7)),
        frequency=max(1, steps // 50),
    )
    wrapped = tfmot.sparsity.keras.prune_low_magnitude(_copy(model), pruning_schedule=schedule)
    hist = tuner.fit(wrapped, params.prune_epochs, [tfmot.sparsity.keras.UpdatePruningStep()])
    return tfmot.sparsity.keras.strip_pruning(wrapped), hist


def cluster(
    model: keras.Model, tuner: Tuner, params: CompressParams, preserve_sparsity: bool = False
) -> tuple[keras.Model, dict]:
    """Weight clustering to params.clusters shared values per kernel, fine-tuned, stripped.

    Linear centroid init: Deep Compression found it best, and k-means++ fails on kernels with
    fewer distinct negative or positive weights than clusters (sparsity-preserving mode).
    Per-channel clustering on a BatchNorm-folded copy (params.cluster_per_channel): BN folding
    at conversion would rescale each channel and its int8 per-channel scale would not keep the
    codebook; folded first, each output channel's int8 values are its centroids.
    """
    from components.structured_pruning import fold_batchnorm

    tfmot = _tfmot()
    cl = tfmot.clustering.keras
    base = fold_batchnorm(model) if params.cluster_per_channel else _copy(model)
    wrapped = cl.cluster_weights(
        base,
        number_of_clusters=params.clusters,
        cluster_centroids_init=cl.CentroidInitialization.LINEAR,
        preserve_sparsity=preserve_sparsity,
        # tfmot 0.8's per-channel init fails on an all-zero channel (sparsity-preserving mode):
        # per-tensor there; a folded kernel then still holds <= clusters values per channel.
        cluster_per_channel=params.cluster_per_channel and not preserve_sparsity,
    )
    hist = tuner.fit(wrapped, params.cluster_epochs)
    return cl.strip_clustering(wrapped), hist


def qat(
    model: keras.Model, tuner: Tuner, params: CompressParams, preserve: str = "none"
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
    if preserve == "clusters":
        _freeze_cluster_replaced_weights(wrapped)
    return wrapped, tuner.fit(wrapped, params.qat_epochs)


def _freeze_cluster_replaced_weights(model: keras.Model) -> list[str]:
    """Take the weights tfmot's cluster-preserving quantizer overwrites out of training.

    Where that quantizer keeps a layer's clusters (on our models, tfmot 0.8: the Dense logits;
    the conv wrappers came out without its variables), it trains its own copy of the weight
    (`ori_weights_vars_tf`) and the centroids, and each training step ASSIGNS the clustered
    result to the layer's weight: that weight is off the loss path, yet QuantizeWrapper lists it
    as trainable ("Gradients do not exist for variables ['logits/kernel:0']"), so the optimizer
    kept slots for it and Keras warned every epoch. It stays a (non-trainable) weight: the
    converter reads the clustered values from it. Returns the names of the weights moved."""
    moved = []
    for layer in model.layers:
        for weight, _quantizer, qvars in getattr(layer, "_weight_vars", ()):
            if isinstance(qvars, dict) and "ori_weights_vars_tf" in qvars:
                kept = [w for w in layer._trainable_weights if w is not weight]
                if len(kept) < len(layer._trainable_weights):
                    layer._trainable_weights = kept
                    layer._non_trainable_weights.append(weight)
                    moved.append(weight.name)
    return moved


def structured(model: keras.Model, tuner: Tuner, params: CompressParams) -> tuple[keras.Model, dict]:
    """Remove the least important share of every conv's channels, rebuild, fine-tune; in
    params.structured_rounds rounds (each removes the same share of the channels left, so the
    rounds compound to structured_ratio; importance is re-ranked on the fine-tuned network)."""
    from components.structured_pruning import plan, remove_channels

    rounds = params.structured_rounds
    final = plan(model, params.structured_ratio, params.structured_importance)
    per_round = 1.0 - (1.0 - params.structured_ratio) ** (1.0 / rounds)
    epochs = [params.structured_epochs // rounds + (i < params.structured_epochs % rounds) for i in range(rounds)]
    hist: dict[str, list[float]] = {}
    smaller = model
    for i in range(rounds):
        if i == 0 and rounds == 1:
            keep = final
        elif i == rounds - 1:  # the last round ends at one round's widths (channel counts are rounded)
            keep = _most_important(smaller, {name: len(k) for name, k in final.items()}, params.structured_importance)
        else:
            keep = plan(smaller, per_round, params.structured_importance)
        smaller = remove_channels(smaller, keep)
        if epochs[i]:
            for k, v in tuner.fit(smaller, epochs[i], learning_rate=params.structured_learning_rate).items():
                hist.setdefault(k, []).extend(v)
    return smaller, hist


def _most_important(model: keras.Model, widths: dict[str, int], method: str) -> dict[str, np.ndarray]:
    """Per prunable conv, the indices of its `widths[name]` most important channels (plan's order)."""
    from components.structured_pruning import channel_importance

    return {
        name: np.sort(np.argsort(-score, kind="stable")[: widths[name]])
        for name, score in channel_importance(model, method).items()
    }


def unique_weights(model: keras.Model) -> dict[str, int]:
    """Most distinct values in one output channel, per conv/dense kernel: what clustering bought
    (per-channel codebooks, and what an int8 per-channel file can keep)."""
    out = {}
    for layer in model.layers:
        for w in layer.trainable_weights:
            if "kernel" in w.name and w.shape.rank > 1:
                k = w.numpy()
                cols = k.reshape(-1, k.shape[-2] if "depthwise" in w.name else k.shape[-1])
                out[f"{layer.name}/{w.name.split('/')[-1].split(':')[0]}"] = max(
                    len(np.unique(cols[:, c])) for c in range(cols.shape[1])
                )
    return out


def _better_teacher(model: keras.Model, teacher: keras.Model | None, prepared: PreparedLike) -> keras.Model:
    """The teacher when it beats the float parent on validation (or there is no validation
    split to tell); otherwise the float parent: soft targets from a weaker model only hurt."""
    x_val = getattr(prepared, "x_val", None)
    if teacher is None or x_val is None or not len(x_val):
        return model if teacher is None else teacher
    from components.conversion import keras_probs, model_inputs

    x, y = model_inputs(x_val, prepared.spec), np.asarray(prepared.y_val)
    acc = {id(m): float((keras_probs(m, x).argmax(axis=1) == y).mean()) for m in (model, teacher)}
    return teacher if acc[id(teacher)] > acc[id(model)] else model


def compress(
    model: keras.Model,
    prepared: PreparedLike,
    params: CompressParams,
    teacher: keras.Model | None = None,
    augment: AugmentParams | None = None,
) -> dict[str, Compressed]:
    """Each method in params.methods from the float parent (combinations chain their stages).

    Fine-tunes learn from `teacher`'s soft targets (the float parent itself when None) on the
    training augmentation `augment` (the train stage's; defaults when None).
    """
    from components.finetune import Tuner

    unknown = sorted(set(params.methods) - set(METHODS))
    if unknown:
        raise TrainingError(f"unknown compression methods {unknown}; known: {', '.join(METHODS)}")
    tuner = Tuner.for_data(prepared, params, _better_teacher(model, teacher, prepared), augment)
    out: dict[str, Compressed] = {}
    pruned: tuple[keras.Model, dict] | None = None
    for method in params.methods:
        if method in ("prune", "prune_cluster", "pqat", "pcqat") and pruned is None:
            pruned = prune(model, tuner, params)
        if method == "prune":
            m, hist = pruned
        elif method == "structured":
            m, hist = structured(model, tuner, params)
        elif method == "cluster":
            m, hist = cluster(model, tuner, params)
        elif method == "qat":
            m, hist = qat(model, tuner, params)
        elif method == "prune_cluster":
            m, hist = cluster(pruned[0], tuner, params, preserve_sparsity=True)
        elif method == "pqat":
            m, hist = qat(pruned[0], tuner, params, preserve="sparsity")
        else:  # pcqat
            pc = (
                out["prune_cluster"].model
                if "prune_cluster" in out
                else cluster(pruned[0], tuner, params, True)[0]
            )
            m, hist = qat(pc, tuner, params, preserve="clusters")
        out[method] = Compressed(method, m, sparsity(m), unique_weights(m), hist)
    return out

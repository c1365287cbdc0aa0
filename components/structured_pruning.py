"""Structured pruning: rank conv filters by importance, remove them, rebuild the smaller network.

Unstructured sparsity leaves every tensor its shape, so a device pays the same bytes, arena and
latency unless the zeros are entropy-coded on the wire. Removing whole output channels of a
convolution (Li et al. 2017, "Pruning Filters for Efficient ConvNets"; Liu et al. 2017, "Network
Slimming") shrinks the conv, the BatchNorm and depthwise layers that follow it and the input of
the next conv or dense layer: fewer parameters and MACs in every runtime.

Works on chain-shaped tf-keras models (the project's MobileNet family; no residual adds).
Importance of a channel: "l1" is the L1 norm of its filter scaled by its BatchNorm factor
|gamma| / sqrt(var + eps), i.e. the filter as the converter folds it into the file; "bn" is
|gamma| alone. A removed channel is not simply dropped: the constant it would still deliver
(its BatchNorm beta through the activation) is folded into the next layer's bias or
BatchNorm mean, so removing a dead channel changes no output. Fine-tuning is the caller's
(components.compression, distillation-aware).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import numpy as np

from components.keras import keras
from edgeops.errors import TrainingError

# Layers that carry channels through unchanged and hold no weights.
_PASS = {
    "InputLayer", "ReLU", "Activation", "Dropout", "GlobalAveragePooling2D", "GlobalMaxPooling2D",
    "MaxPooling2D", "AveragePooling2D", "ZeroPadding2D", "LeakyReLU", "SpatialDropout2D",
}
_PER_CHANNEL = {"BatchNormalization", "DepthwiseConv2D"}
_CONSUMERS = {"Conv2D", "Dense"}
IMPORTANCE = ("l1", "bn")


def _kind(layer: keras.layers.Layer) -> str:
    return type(layer).__name__


def _chain(model: keras.Model) -> list[keras.layers.Layer]:
    """The model's layers in order; refuses graphs that are not a single chain."""
    layers = [layer for layer in model.layers if _kind(layer) != "InputLayer"]
    for layer in layers:
        kind = _kind(layer)
        if kind not in _PASS | _PER_CHANNEL | _CONSUMERS | {"Flatten", "Softmax"}:
            raise TrainingError(f"structured pruning cannot rebuild layer {layer.name} ({kind})")
        if kind == "Conv2D" and layer.groups != 1:
            raise TrainingError(f"structured pruning: grouped conv {layer.name} is not supported")
        if kind == "DepthwiseConv2D" and layer.depth_multiplier != 1:
            raise TrainingError(f"structured pruning: {layer.name} has depth_multiplier != 1")
    for entry in model.get_config().get("layers", []):  # functional: one input tensor each
        nodes = entry.get("inbound_nodes") or []
        if len(nodes) > 1 or (nodes and len(nodes[0]) > 1):
            raise TrainingError(f"structured pruning needs a chain; {entry['config']['name']} has several inputs")
    return layers


def _groups(layers: list[keras.layers.Layer]) -> dict[str, tuple[list[Any], Any]]:
    """Prunable conv -> (per-channel layers after it, its consumer): convs another conv or a
    dense layer reads through per-channel and pass-through layers only."""
    out: dict[str, tuple[list[Any], Any]] = {}
    for i, layer in enumerate(layers):
        if _kind(layer) != "Conv2D":
            continue
        between: list[Any] = []
        for nxt in layers[i + 1 :]:
            kind = _kind(nxt)
            if kind in _CONSUMERS:
                out[layer.name] = (between, nxt)
                break
            if kind in _PASS or kind in _PER_CHANNEL or kind == "Flatten":
                between.append(nxt)
                continue
            break
    return out


def _bn_factor(bn: keras.layers.Layer) -> np.ndarray:
    w = dict(zip(_names(bn), bn.get_weights(), strict=True))
    var = w.get("moving_variance")
    gamma = w.get("gamma", np.ones_like(var))
    return np.abs(gamma) / np.sqrt(var + bn.epsilon)


def channel_importance(model: keras.Model, method: str = "l1") -> dict[str, np.ndarray]:
    """Importance of each output channel of every prunable conv (higher = keep)."""
    if method not in IMPORTANCE:
        raise TrainingError(f"unknown channel importance {method!r}; known: {', '.join(IMPORTANCE)}")
    out = {}
    for name, (between, _) in _groups(_chain(model)).items():
        kernel = model.get_layer(name).get_weights()[0]
        bn = next((b for b in between if _kind(b) == "BatchNormalization"), None)
        factor = _bn_factor(bn) if bn is not None else np.ones(kernel.shape[-1])
        if method == "bn":
            out[name] = factor.astype(np.float64)
        else:
            out[name] = np.abs(kernel).reshape(-1, kernel.shape[-1]).sum(axis=0) * factor
    return out


def plan(
    model: keras.Model,
    ratios: float | Mapping[str, float],
    method: str = "l1",
    divisor: int = 4,
) -> dict[str, np.ndarray]:
    """Channels to keep per prunable conv: the most important (1 - ratio) share, rounded to a
    multiple of `divisor` (fast kernels), never fewer than `divisor`. A float applies to all."""
    keep = {}
    for name, score in channel_importance(model, method).items():
        r = ratios if isinstance(ratios, float | int) else ratios.get(name, 0.0)
        if not 0 <= r < 1:
            raise TrainingError(f"structured pruning ratio for {name} must be in [0, 1), got {r}")
        n = len(score)
        k = min(n, max(min(divisor, n), int(round((1 - r) * n / divisor)) * divisor))
        keep[name] = np.sort(np.argsort(-score, kind="stable")[:k])
    return keep


def _constant(layer: keras.layers.Layer, v: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """What a channel holding the constant `v` (at channels idx) becomes after `layer`."""
    kind = _kind(layer)
    if kind == "BatchNormalization":
        w = dict(zip(_names(layer), layer.get_weights(), strict=True))
        gamma = w.get("gamma", np.ones_like(w["moving_mean"]))[idx]
        beta = w.get("beta", np.zeros_like(w["moving_mean"]))[idx]
        return gamma * (v - w["moving_mean"][idx]) / np.sqrt(w["moving_variance"][idx] + layer.epsilon) + beta
    if kind == "DepthwiseConv2D":  # interior value; exact when v == 0 (zero padding agrees)
        ws = layer.get_weights()
        out = v * ws[0][:, :, idx, 0].sum(axis=(0, 1))
        return out + ws[1][idx] if layer.use_bias else out
    if kind in ("ReLU", "Activation", "LeakyReLU"):
        return np.asarray(layer(v.reshape(1, -1).astype(np.float32))).reshape(-1)
    return v  # pooling, dropout, padding: a constant stays a constant (interior)


def remove_channels(model: keras.Model, keep: Mapping[str, np.ndarray]) -> keras.Model:
    """The same architecture with only `keep` channels of each named conv, weights copied."""
    layers = _chain(model)
    groups = _groups(layers)
    unknown = sorted(set(keep) - set(groups))
    if unknown:
        raise TrainingError(f"structured pruning: {unknown} are not prunable convs")
    config = copy.deepcopy(model.get_config())
    for entry in config["layers"]:
        name = entry["config"].get("name")
        if name in keep:
            entry["config"]["filters"] = int(len(keep[name]))
    new = type(model).from_config(config)

    weights: dict[str, list[np.ndarray]] = {}
    cur: np.ndarray | None = None  # channels of the running tensor that survive
    carried: dict[str, Any] = {}  # removed channels' constants, to fold into the consumer
    pending: np.ndarray | None = None  # a bias-free consumer's share, for its BatchNorm
    for layer in layers:
        kind, ws = _kind(layer), layer.get_weights()
        if kind == "Conv2D":
            k = ws[0] if cur is None else ws[0][:, :, cur, :]
            out = np.asarray(keep.get(layer.name, np.arange(ws[0].shape[-1])))
            new_w = [k[..., out]] + ([ws[1][out]] if layer.use_bias else [])
            delta = _carried_delta(layer, carried, out)
            if delta is not None and layer.use_bias:
                new_w[1] = new_w[1] + delta
            elif delta is not None:
                pending = delta  # the BatchNorm after this conv absorbs it in its moving mean
            weights[layer.name] = new_w
            carried = {}
            if layer.name in keep:
                dropped = np.setdiff1d(np.arange(ws[0].shape[-1]), out)
                v = ws[1][dropped] if layer.use_bias else np.zeros(len(dropped), np.float32)
                carried = {"idx": dropped, "v": v.astype(np.float32), "channels": ws[0].shape[-1]}
            cur = out
        elif kind in _PER_CHANNEL:
            if carried:
                carried["v"] = _constant(layer, carried["v"], carried["idx"])
            sliced = [w[:, :, cur] if w.ndim == 4 else w[cur] for w in ws]
            if kind == "BatchNormalization" and pending is not None:
                i = _names(layer).index("moving_mean")
                sliced[i] = sliced[i] - pending
            pending = None  # only the BatchNorm right after a bias-free conv can absorb it
            weights[layer.name] = sliced
        elif kind == "Flatten" and cur is not None:
            shape = layer.input_shape[1:]
            channels, positions = int(shape[-1]), int(np.prod(shape[:-1]))
            base = np.arange(positions)[:, None] * channels
            if carried:
                carried["flat"] = (base + carried["idx"][None, :]).reshape(-1)
                carried["v"] = np.tile(carried["v"], positions)
            cur = (base + cur[None, :]).reshape(-1)
        elif kind == "Dense":
            k = ws[0] if cur is None else ws[0][cur]
            bias = ws[1].copy() if layer.use_bias else None
            if carried and bias is not None:
                rows = carried.get("flat", carried["idx"])
                bias += carried["v"] @ ws[0][rows]
            weights[layer.name] = [k] + ([bias] if bias is not None else [])
            carried, cur = {}, None
        elif carried and kind in _PASS:
            carried["v"] = _constant(layer, carried["v"], carried["idx"])
    for layer in new.layers:
        if layer.name in weights:
            layer.set_weights(weights[layer.name])
    return new


def _carried_delta(conv: keras.layers.Layer, carried: dict[str, Any], out: np.ndarray) -> np.ndarray | None:
    """What the removed input channels (holding constants) added to each kept output of `conv`
    (exact for 1x1 convs; interior value for larger kernels)."""
    if not carried or not np.any(carried["v"]):
        return None
    kernel = conv.get_weights()[0][:, :, carried["idx"], :][..., out]
    return np.einsum("c,hwco->o", carried["v"], kernel)


def _names(layer: keras.layers.Layer) -> list[str]:
    return [w.name.split("/")[-1].split(":")[0] for w in layer.weights]


def fold_batchnorm(model: keras.Model) -> keras.Model:
    """A copy of a chain model with every BatchNorm folded into the conv before it (bias on).

    What the TFLite converter does at export, done before clustering or QAT so the weights
    those train are the weights the file stores.
    """
    layers = _chain(model)
    inputs = keras.Input(model.input_shape[1:], name=model.layers[0].name if _kind(model.layers[0]) == "InputLayer" else None)
    x, folded, skip = inputs, {}, set()
    for i, layer in enumerate(layers):
        if layer.name in skip:
            continue
        kind, cfg = _kind(layer), layer.get_config()
        nxt = layers[i + 1] if i + 1 < len(layers) else None
        if kind in ("Conv2D", "DepthwiseConv2D") and nxt is not None and _kind(nxt) == "BatchNormalization":
            w = dict(zip(_names(nxt), nxt.get_weights(), strict=True))
            factor = _bn_factor(nxt) * np.sign(w.get("gamma", 1.0))
            ws = layer.get_weights()
            kernel = ws[0] * (factor if kind == "Conv2D" else factor[None, None, :, None])
            bias = ws[1] if layer.use_bias else np.zeros_like(factor)
            beta = w.get("beta", np.zeros_like(factor))
            folded[layer.name] = [kernel.astype(np.float32), ((bias - w["moving_mean"]) * factor + beta).astype(np.float32)]
            cfg = {**cfg, "use_bias": True, "bias_initializer": {"class_name": "Zeros", "config": {}}}
            skip.add(nxt.name)
        new = type(layer).from_config(cfg)
        x = new(x)
        folded.setdefault(new.name, layer.get_weights())
        if folded[new.name]:
            new.set_weights(folded[new.name])
    return keras.Model(inputs, x, name=model.name)

"""A MobileNet-style family (depthwise-separable blocks, width multiplier alpha, resolution rho).

Models end in a Dense layer named `logits` followed by a Softmax named `probs`: the released
model outputs probabilities, distillation reads the logits. Only plain Keras layers are used
so tfmot (pruning, clustering, QAT) and the TFLite/ONNX converters accept the model as is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from components.keras import keras

# (pointwise filters at alpha=1, stride) per depthwise-separable block
STUDENT_BLOCKS: tuple[tuple[int, int], ...] = ((32, 2), (64, 2), (64, 1), (128, 2))
TEACHER_BLOCKS: tuple[tuple[int, int], ...] = ((32, 2), (64, 1), (64, 2), (128, 1), (128, 2), (256, 1))


def _width(filters: int, alpha: float, divisor: int = 4) -> int:
    """Scale by alpha and round to a multiple of `divisor` (as MobileNet does, for fast kernels)."""
    return max(divisor, int(filters * alpha + divisor / 2) // divisor * divisor)


def build_mobilenet(
    input_shape: tuple[int, int, int],
    num_classes: int,
    alpha: float = 1.0,
    bn_momentum: float = 0.9,
    blocks: Sequence[tuple[int, int]] = STUDENT_BLOCKS,
    dropout: float = 0.1,
    name: str = "student",
) -> keras.Model:
    """Stem conv, depthwise-separable blocks, global pooling, logits, softmax.

    Inputs of 64 pixels or more get a stride-2 stem, so rho changes cost roughly quadratically
    as in MobileNet; small inputs keep full resolution in the stem.
    """
    inputs = keras.Input(shape=input_shape, name="image")
    stem_stride = 2 if min(input_shape[:2]) >= 64 else 1
    x = keras.layers.Conv2D(_width(16, alpha), 3, strides=stem_stride, padding="same", use_bias=False, name="stem")(inputs)
    x = keras.layers.BatchNormalization(momentum=bn_momentum, name="stem_bn")(x)
    x = keras.layers.ReLU(6.0, name="stem_relu")(x)
    for i, (filters, stride) in enumerate(blocks):
        x = keras.layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False, name=f"b{i}_dw")(x)
        x = keras.layers.BatchNormalization(momentum=bn_momentum, name=f"b{i}_dw_bn")(x)
        x = keras.layers.ReLU(6.0, name=f"b{i}_dw_relu")(x)
        x = keras.layers.Conv2D(_width(filters, alpha), 1, use_bias=False, name=f"b{i}_pw")(x)
        x = keras.layers.BatchNormalization(momentum=bn_momentum, name=f"b{i}_pw_bn")(x)
        x = keras.layers.ReLU(6.0, name=f"b{i}_pw_relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    if dropout > 0:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    logits = keras.layers.Dense(num_classes, name="logits")(x)
    probs = keras.layers.Softmax(name="probs")(logits)
    return keras.Model(inputs, probs, name=name)


def build_teacher(
    input_shape: tuple[int, int, int], num_classes: int, alpha: float = 2.0, bn_momentum: float = 0.9
) -> keras.Model:
    """The larger network distillation learns from: wider (alpha) and deeper than the student."""
    return build_mobilenet(
        input_shape, num_classes, alpha, bn_momentum, TEACHER_BLOCKS, dropout=0.2, name="teacher"
    )


def logits_model(model: keras.Model) -> keras.Model:
    """A view of `model` that outputs the pre-softmax logits (shares the weights)."""
    return keras.Model(model.inputs, model.get_layer("logits").output, name=f"{model.name}_logits")


@dataclass(frozen=True)
class ModelCost:
    """Parameters (all weights, BatchNorm included) and multiply-accumulates for one image."""

    params: int
    trainable_params: int
    macs: int


def _spatial(shape: tuple) -> int:
    return int(shape[1]) * int(shape[2])


def count_cost(model: keras.Model) -> ModelCost:
    """Count MACs of convolutions and dense layers (BatchNorm folds into them when converted)."""
    macs = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            kh, kw = layer.kernel_size
            cin = int(layer.input_shape[-1])
            macs += _spatial(layer.output_shape) * kh * kw * cin * layer.depth_multiplier
        elif isinstance(layer, keras.layers.Conv2D):
            kh, kw = layer.kernel_size
            cin = int(layer.input_shape[-1])
            macs += _spatial(layer.output_shape) * kh * kw * cin * layer.filters
        elif isinstance(layer, keras.layers.Dense):
            macs += int(layer.input_shape[-1]) * layer.units
    trainable = sum(int(w.shape.num_elements()) for w in model.trainable_weights)
    return ModelCost(params=int(model.count_params()), trainable_params=trainable, macs=macs)

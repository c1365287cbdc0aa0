"""tfmot on a tiny digits model: each method reaches what it promises and still converts."""

from __future__ import annotations

import numpy as np
import pytest
from fixtures_models import digits, digits_model  # noqa: F401

from components.compression import compress, sparsity
from components.conversion import convert_and_verify
from edgeops.errors import TrainingError
from edgeops.params import CompressParams, ConvertParams

FAST = CompressParams(
    methods=["prune", "cluster", "pqat"],
    prune_sparsity=0.8,
    prune_epochs=2,
    clusters=8,
    cluster_epochs=1,
    qat_epochs=1,
    learning_rate=5e-4,
    # hard labels, no augmentation: 3 epochs are too short for soft targets on this logit-less
    # fixture; distillation-aware fine-tuning is tested in test_structured_pruning/test_finetune
    distill=False,
    augment=False,
)


@pytest.fixture(scope="module")
def compressed(digits, digits_model):  # noqa: F811
    return compress(digits_model, digits, FAST)


def test_pruning_reaches_the_sparsity_and_leaves_the_parent(compressed, digits_model) -> None:  # noqa: F811
    pr = compressed["prune"]
    assert pr.sparsity == pytest.approx(0.8, abs=0.03)
    assert sparsity(digits_model) < 0.01  # tfmot wraps layers in place: we work on a copy
    assert not any("prune" in w.name for w in pr.model.weights)  # stripped


def test_clustering_limits_distinct_weights(compressed) -> None:
    uniq = compressed["cluster"].unique_weights
    clustered = {k: n for k, n in uniq.items() if "depthwise" not in k}
    assert clustered and all(n <= 8 for n in clustered.values())


def test_pqat_keeps_sparsity_and_converts_to_full_int8(compressed, digits, tmp_path) -> None:  # noqa: F811
    pq = compressed["pqat"]
    assert pq.targets == ("tflite-int8",)
    assert pq.sparsity >= 0.75
    v = convert_and_verify(
        pq.model, "tflite-int8", digits, ConvertParams(min_agreement=0.9), tmp_path, measure=False
    )
    assert v.input_dtype == "int8" and "float32" not in v.tensor_dtypes
    assert v.accuracy > 0.7
    dense = compressed["prune"].model.layers[-2].get_weights()[0]
    assert (dense == 0).mean() >= 0.75 and np.isfinite(dense).all()


def test_unknown_method_is_refused(digits, digits_model) -> None:  # noqa: F811
    with pytest.raises(TrainingError, match="unknown compression methods"):
        compress(digits_model, digits, FAST.model_copy(update={"methods": ["zip"]}))


def test_pcqat_trains_every_trainable_weight_and_keeps_the_logits_codebook(digits) -> None:  # noqa: F811
    """tfmot's cluster-preserving quantizer overwrites the logits kernel from its own copy each
    step: that kernel is off the loss path and must not be listed as trainable (it was: Keras
    warned "Gradients do not exist for variables ['logits/kernel:0']" every PCQAT epoch)."""
    from components.architectures import build_mobilenet
    from components.keras import tf
    from device.preprocessing import normalize

    tf.random.set_seed(0)
    model = build_mobilenet((8, 8, 1), 10, alpha=0.5)
    params = FAST.model_copy(update={"methods": ["prune", "prune_cluster", "pcqat"], "prune_epochs": 1})
    pcqat = compress(model, digits, params)["pcqat"].model
    x, y = normalize(digits.x_train[:64], digits.spec), digits.y_train[:64]
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(y, pcqat(x, training=True)))
    grads = tape.gradient(loss, pcqat.trainable_variables)
    assert [v.name for v, g in zip(pcqat.trainable_variables, grads, strict=True) if g is None] == []
    logits = next(layer for layer in pcqat.layers if layer.name.endswith("logits"))
    kernel = next(w for w in logits.weights if w.name.endswith("logits/kernel:0"))
    assert any(w is kernel for w in logits.non_trainable_weights)
    assert len(np.unique(kernel.numpy())) <= params.clusters  # still written with the clustered values

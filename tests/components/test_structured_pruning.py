"""Structured pruning removes whole channels and keeps the rebuilt model's outputs; BN folding is
exact; per-channel clustering survives int8 conversion."""

from __future__ import annotations

import numpy as np
import pytest
from fixtures_models import digits  # noqa: F401

from components.architectures import build_mobilenet, count_cost
from components.structured_pruning import channel_importance, fold_batchnorm, plan, remove_channels
from edgeops.errors import TrainingError


def _randomised(seed: int = 0):
    """A small MobileNet with non-trivial BatchNorm statistics (as after training)."""
    rng = np.random.default_rng(seed)
    model = build_mobilenet((16, 16, 3), 5, alpha=1.0)
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            n = layer.get_weights()[0].shape
            layer.set_weights([
                rng.uniform(0.5, 1.5, n).astype("f"), rng.normal(0, 0.3, n).astype("f"),
                rng.normal(0, 0.3, n).astype("f"), rng.uniform(0.5, 2.0, n).astype("f"),
            ])
    return model, rng


def test_removing_dead_channels_keeps_outputs_and_cuts_cost() -> None:
    model, rng = _randomised()
    dead = {}
    for name in channel_importance(model):
        bn = model.get_layer(f"{name}_bn")
        g, b, mu, var = bn.get_weights()
        idx = rng.choice(len(g), len(g) // 4, replace=False)
        g[idx] = 0.0  # the channel carries only its beta: a constant the next layer absorbs
        bn.set_weights([g, b, mu, var])
        dead[name] = idx
    keep = plan(model, 0.25)
    for name, kept in keep.items():
        assert not set(dead[name]) & set(kept.tolist()), name  # the dead ones were ranked last
    smaller = remove_channels(model, keep)
    x = rng.normal(size=(8, 16, 16, 3)).astype("f")
    before, after = np.asarray(model(x)), np.asarray(smaller(x))
    assert np.abs(before - after).max() < 1e-3
    assert smaller.get_layer("b3_pw").filters == 96  # 128 - 25%
    cost, small_cost = count_cost(model), count_cost(smaller)
    assert small_cost.params < 0.7 * cost.params and small_cost.macs < 0.7 * cost.macs


def test_removing_live_channels_changes_outputs() -> None:
    """The closeness above is earned: pruning live channels moves the outputs."""
    model, rng = _randomised(1)
    smaller = remove_channels(model, plan(model, 0.5))
    x = rng.normal(size=(8, 16, 16, 3)).astype("f")
    assert np.abs(np.asarray(model(x)) - np.asarray(smaller(x))).max() > 1e-3


def test_fold_batchnorm_is_exact_and_removes_bn() -> None:
    model, rng = _randomised(2)
    folded = fold_batchnorm(model)
    assert not any(type(layer).__name__ == "BatchNormalization" for layer in folded.layers)
    x = rng.normal(size=(4, 16, 16, 3)).astype("f")
    assert np.abs(np.asarray(model(x)) - np.asarray(folded(x))).max() < 1e-5


def test_bad_ratio_and_branching_graph_are_refused() -> None:
    from components.keras import keras

    model, _ = _randomised(3)
    with pytest.raises(TrainingError, match="ratio"):
        plan(model, 1.0)
    inp = keras.Input((8, 8, 1))
    a = keras.layers.Conv2D(4, 3, padding="same")(inp)
    b = keras.layers.Conv2D(4, 3, padding="same")(inp)
    branchy = keras.Model(inp, keras.layers.Add()([a, b]))
    with pytest.raises(TrainingError, match="structured pruning"):
        plan(branchy, 0.5)


@pytest.mark.slow
def test_clustered_int8_file_keeps_the_codebook_per_channel(digits, tmp_path) -> None:  # noqa: F811
    """Per-channel clustering on a BN-folded copy: the int8 file holds <= clusters values per
    output channel (BN folding at conversion used to spread them to 52-140)."""
    import dataclasses

    from components.compression import compress
    from components.conversion import convert_and_verify
    from components.measure import codebook_sizes
    from device.preprocessing import normalize
    from edgeops.params import CompressParams, ConvertParams

    # the file's structure is under test, not accuracy: 400 training images are enough
    digits = dataclasses.replace(digits, x_train=digits.x_train[:400], y_train=digits.y_train[:400])
    model = build_mobilenet((8, 8, 1), 10, alpha=1.0)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(normalize(digits.x_train, digits.spec), digits.y_train, epochs=1, verbose=0)
    params = CompressParams(methods=["cluster", "structured"], clusters=4, cluster_epochs=1,
                            structured_epochs=1, structured_ratio=0.5)
    out = compress(model, digits, params)
    v = convert_and_verify(out["cluster"].model, "tflite-int8", digits, ConvertParams(min_agreement=0.0),
                           tmp_path / "c", measure=False)
    sizes = codebook_sizes(v.path.read_bytes())
    pointwise = {k: n for k, n in sizes.items() if "dw" not in k}
    assert pointwise and max(pointwise.values()) <= 4, sizes
    s = convert_and_verify(out["structured"].model, "tflite-int8", digits, ConvertParams(min_agreement=0.0),
                           tmp_path / "s", measure=False)
    assert count_cost(out["structured"].model).macs < 0.6 * count_cost(model).macs
    assert s.bytes < v.bytes


def test_structured_rounds_compound_to_the_configured_ratio(digits) -> None:  # noqa: F811
    """Two prune-then-fine-tune rounds end with the same channel counts as one round (the last
    round aims at the overall ratio), and both rounds fine-tune (one epoch each)."""
    import dataclasses

    from components.compression import compress
    from device.preprocessing import normalize
    from edgeops.params import CompressParams

    digits = dataclasses.replace(digits, x_train=digits.x_train[:200], y_train=digits.y_train[:200])
    model = build_mobilenet((8, 8, 1), 10, alpha=1.0)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(normalize(digits.x_train, digits.spec), digits.y_train, epochs=1, verbose=0)
    base = CompressParams(methods=["structured"], structured_epochs=2, structured_ratio=0.5, distill=False,
                          structured_learning_rate=1e-3)
    one = compress(model, digits, base)["structured"]
    two = compress(model, digits, base.model_copy(update={"structured_rounds": 2}))["structured"]
    widths = {name: len(score) for name, score in channel_importance(one.model).items()}
    assert widths == {name: len(score) for name, score in channel_importance(two.model).items()}
    full = {name: len(score) for name, score in channel_importance(model).items()}
    assert all(widths[n] < full[n] for n in full if full[n] > 4), (widths, full)
    assert len(one.history["loss"]) == len(two.history["loss"]) == 2

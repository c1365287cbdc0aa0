from __future__ import annotations

import numpy as np
import pytest

from device.scenarios import SCENARIO_NAMES, adjust, blur, make_scenario, rotate
from edgeops.errors import ConfigError


def test_rotate_identity_and_inverse(digits16):
    x, _ = digits16
    assert np.array_equal(rotate(x[:3], 0), x[:3])
    back = rotate(rotate(x[:3], 15, fill=0.0), -15, fill=0.0)
    # bilinear twice smooths; the centre keeps the image
    assert np.abs(back[:, 6:10, 6:10] - x[:3, 6:10, 6:10]).mean() < 0.15
    r90 = rotate(x[:1], 90, fill=0.0)[0, ..., 0]
    assert np.allclose(r90, np.rot90(x[0, ..., 0], k=-1), atol=1e-5) or np.allclose(
        r90, np.rot90(x[0, ..., 0], k=1), atol=1e-5
    )


def test_brightness_contrast_blur():
    x = np.random.default_rng(0).random((4, 8, 8, 1)).astype(np.float32)
    assert np.allclose(adjust(x, brightness=0.8), x * 0.8)
    assert adjust(x, contrast=0.5).std() < x.std()
    assert blur(x, 1.0).std() < x.std()
    assert blur(x, 1.0).shape == x.shape


def test_scenario_onset_prior_and_concept_shift(digits16):
    x, y = digits16
    rng = np.random.default_rng(1)
    s = make_scenario("rotation", onset_hours=2.0)
    before, yb = s.draw(x, y, 50, 1.0, rng)
    assert any(np.array_equal(before[0], xi) for xi in x[y == yb[0]])
    after, _ = s.draw(x, y, 50, 3.0, rng)
    assert not any(np.array_equal(after[0], xi) for xi in x)

    prior = make_scenario("prior_shift", 0.0, n_classes=10)
    _, yp = prior.draw(x, y, 2000, 0.0, rng)
    assert np.isin(yp, [0, 1, 2]).mean() > 0.6  # 3 boosted classes of 10

    concept = make_scenario("concept_shift", 0.0, n_classes=10)
    xc, yc = concept.draw(x, y, 500, 0.0, rng)
    assert not np.isin(yc, [0]).any()  # class 0 now means 1


def test_every_preset_builds_and_unknown_fails():
    for name in SCENARIO_NAMES:
        make_scenario(name, 1.0)
    with pytest.raises(ConfigError, match="unknown scenario"):
        make_scenario("earthquake")

from __future__ import annotations

import numpy as np
from scipy.stats import ks_2samp

from device.features import FEATURE_NAMES, summary_features
from device.scenarios import adjust, rotate


def _drifted_share(a: np.ndarray, b: np.ndarray) -> float:
    fa, fb = summary_features(a), summary_features(b)
    p = np.array([ks_2samp(fa[:, i], fb[:, i]).pvalue for i in range(fa.shape[1])])
    return float((p < 0.01).mean())


def test_shape_names_and_dtype(digits16):
    x, _ = digits16
    f = summary_features(x[:7])
    assert f.shape == (7, len(FEATURE_NAMES)) and f.dtype == np.float32
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    assert np.isfinite(f).all()
    assert summary_features(x[:0]).shape == (0, len(FEATURE_NAMES))


def test_known_values_on_constant_and_rgb_images():
    x = np.full((2, 8, 8, 3), 0.25, np.float32)
    f = dict(zip(FEATURE_NAMES, summary_features(x)[0], strict=True))
    assert f["brightness"] == np.float32(0.25) and f["contrast"] == 0
    assert f["gradient_energy"] == 0 and f["laplacian_var"] == 0
    assert abs(f["centroid_x"] - 0.5) < 1e-6 and abs(f["centroid_y"] - 0.5) < 1e-6


def test_orientation_follows_rotation():
    bar = np.zeros((1, 32, 32, 1), np.float32)
    bar[0, 4:28, 15:17] = 1.0  # vertical bar
    i_c, i_s = FEATURE_NAMES.index("orientation_cos"), FEATURE_NAMES.index("orientation_sin")
    f0 = summary_features(bar)[0]
    f45 = summary_features(rotate(bar, 45, fill=0.0))[0]
    assert f0[i_c] < -0.9  # vertical: mu02 >> mu20
    assert abs(f45[i_c]) < 0.2 and abs(f45[i_s]) > 0.7


def test_no_drift_is_stable_and_drift_is_detected(digits16):
    x, _ = digits16
    perm = np.random.default_rng(0).permutation(len(x))
    ref, cur = x[perm[:800]], x[perm[800:]]
    assert _drifted_share(ref, cur) <= 0.1
    assert _drifted_share(ref, rotate(cur, 15)) >= 0.3
    assert _drifted_share(ref, adjust(cur, brightness=0.8)) >= 0.3

"""Server cohorts: the SavedModel variant registered in MLflow, served by MLflow's scoring server on
loopback, stable and canary answering real HTTP requests in the configured shares."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from registry.mlflow_models import Lineage, register_variant, set_cohort_alias
from registry.serving import Backend, ServingError, ShareRouter, serve_cohort, share_tag

COHORT = "inference-servers"


def _savedmodel(tmp: Path, seed: int, x: np.ndarray, y: np.ndarray) -> Path:
    import components  # noqa: F401  (legacy Keras before tensorflow)
    from components.convert.savedmodel import to_savedmodel
    from components.keras import keras, tf

    tf.random.set_seed(seed)
    model = keras.Sequential([keras.layers.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=seed, verbose=0)  # two versions that answer differently
    return to_savedmodel(model, tmp / f"sm{seed}", name="digits", version=seed)


def _post(url: str, x: np.ndarray, rid: str) -> tuple[np.ndarray, str, str]:
    body = json.dumps({"inputs": x.tolist()}).encode()
    req = urllib.request.Request(f"{url}/invocations", data=body, method="POST",
                                 headers={"Content-Type": "application/json", "X-Request-Id": rid})
    with urllib.request.urlopen(req, timeout=60) as r:
        out = json.loads(r.read())
        return np.asarray(out["predictions"], np.float32), r.headers["X-Edgeops-Version"], r.headers["X-Edgeops-Role"]


@pytest.mark.slow
def test_server_cohort_answers_http_with_stable_and_canary_in_shares(
    mlflow_client, experiment_run, tiny_tflite, tmp_path
) -> None:
    from sklearn.datasets import load_digits

    from components.convert.savedmodel import SavedModelRunner

    _, spec, x = tiny_tflite
    y = load_digits().target[: len(x)]
    exports = {seed: _savedmodel(tmp_path, seed, x, y) for seed in (1, 2)}
    versions = {}
    for seed, export in exports.items():
        lineage = Lineage("data", "commit", f"release-{seed}", "models:/m-1")
        mv = register_variant(mlflow_client, experiment_run, export, spec, x[:2], model_name="digits",
                              target="savedmodel", lineage=lineage, releasable=False)
        versions[seed] = str(mv.version)
    name = "digits-savedmodel"
    assert mlflow_client.get_model_version(name, versions[1]).tags["target"] == "savedmodel"
    set_cohort_alias(mlflow_client, name, COHORT, "stable", versions[1])
    set_cohort_alias(mlflow_client, name, COHORT, "canary", versions[2])
    mlflow_client.set_model_version_tag(name, versions[2], share_tag(COHORT), "30")

    expected = {versions[s]: SavedModelRunner(e).predict(x[:3]) for s, e in exports.items()}
    tracking = mlflow_client.tracking_uri
    with serve_cohort(mlflow_client, tracking, name, COHORT) as service:
        seen = {"stable": 0, "canary": 0}
        for i in range(60):
            probs, version, role = _post(service.url, x[:3], f"r{i}")
            seen[role] += 1
            assert version == (versions[1] if role == "stable" else versions[2])
            np.testing.assert_allclose(probs, expected[version], atol=1e-5)  # the version's own output
        # 30% of requests by hashed request id: 18 expected of 60; binomial 99.9% band
        assert 6 <= seen["canary"] <= 32 and seen["stable"] + seen["canary"] == 60
        assert service.router.counts == seen
        # a retried request (same id) lands on the same version
        assert _post(service.url, x[:1], "r7")[1] == _post(service.url, x[:1], "r7")[1]


def test_share_router_split_and_bad_input(mlflow_client) -> None:
    router = ShareRouter(Backend("stable", "1", "http://s"), Backend("canary", "2", "http://c"), 10.0)
    picks = [router.pick(f"id-{i}").role for i in range(5000)]
    assert 400 <= picks.count("canary") <= 600  # 10% of requests
    assert all(ShareRouter(Backend("stable", "1", "http://s")).pick(str(i)).role == "stable" for i in range(50))
    with pytest.raises(ServingError, match="cohort inference-servers: no registered model digits-savedmodel"):
        serve_cohort(mlflow_client, mlflow_client.tracking_uri, "digits-savedmodel", COHORT)


@pytest.mark.slow
def test_model_server_that_cannot_start_is_one_readable_line(mlflow_client) -> None:
    from registry.serving import start_model_servers

    with pytest.raises(ServingError, match="the model server exited") as exc:
        start_model_servers(["models:/nothing-here/1"], mlflow_client.tracking_uri, timeout_s=120)
    assert "\n" not in str(exc.value)

"""Server cohorts: the SavedModel variant registered in MLflow, served by MLflow's scoring server on
loopback, stable and canary answering real HTTP requests in the configured shares."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from registry.mlflow_models import Lineage, register_variant, set_cohort_alias
from registry.serving import Backend, ServingError, ShareRouter, serve_cohort

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


def _post_labelled(url: str, x: np.ndarray, labels: np.ndarray, rid: str) -> str:
    body = json.dumps({"inputs": x.tolist()}).encode()
    req = urllib.request.Request(f"{url}/invocations", data=body, method="POST",
                                 headers={"Content-Type": "application/json", "X-Request-Id": rid,
                                          "X-Edgeops-Labels": ",".join(str(int(v)) for v in labels)})
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.headers["X-Edgeops-Role"]


@pytest.mark.slow
def test_server_cohort_answers_http_with_stable_and_canary_in_shares_before_and_after_a_step(
    mlflow_client, experiment_run, tiny_tflite, tmp_path
) -> None:
    from datetime import UTC, datetime, timedelta

    from sklearn.datasets import load_digits

    from components.convert.savedmodel import SavedModelRunner
    from components.profiles import DeviceCatalog
    from device.store import open_store
    from flows.serving import control_server_cohorts
    from registry.controller import GateThresholds
    from registry.serving import RequestLog
    from registry.share_rollout import SharePlan, start_share_rollout

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
    # the gates' own checks are tested on logged rows (test_share_rollout); here the two versions
    # differ on purpose (1 vs 2 epochs), so only the stepping and the routing are under test
    plan = SharePlan(steps=(20.0, 60.0, 100.0), min_dwell_s=0, min_count=50, margin=0.5,
                     thresholds=GateThresholds(max_prediction_shift=1.0, max_confidence_drop=1.0,
                                               max_accuracy_drop=1.0, max_p95_latency_ratio=100.0))
    start_share_rollout(mlflow_client, name, COHORT, versions[2], datetime.now(UTC) - timedelta(seconds=2), plan)
    catalog = DeviceCatalog.model_validate({
        "profiles": {"server": {"targets": ["savedmodel"], "runs_on": "server", "max_model_bytes": 10**9,
                                "arena_bytes": 10**9, "latency_budget_ms": 10, "throughput_macs_per_s": 1e11}},
        "cohorts": {COHORT: {"profile": "server"}}})
    store = open_store(str(tmp_path / "store"))

    expected = {versions[s]: SavedModelRunner(e).predict(x[:3]) for s, e in exports.items()}
    tracking = mlflow_client.tracking_uri
    with serve_cohort(mlflow_client, tracking, name, COHORT, log=RequestLog(store, COHORT), timeout_s=900) as service:
        seen = {"stable": 0, "canary": 0}
        for i in range(60):
            probs, version, role = _post(service.url, x[:3], f"r{i}")
            seen[role] += 1
            assert version == (versions[1] if role == "stable" else versions[2])
            np.testing.assert_allclose(probs, expected[version], atol=1e-5)  # the version's own output
        # 20% of requests by hashed request id: 12 expected of 60; binomial 99.9% band
        assert 2 <= seen["canary"] <= 25 and seen["stable"] + seen["canary"] == 60
        assert service.router.counts == seen
        # a retried request (same id) lands on the same version
        assert _post(service.url, x[:1], "r7")[1] == _post(service.url, x[:1], "r7")[1]

        # scored requests (labels sent along) until the canary answered 50 inputs; then a controller pass
        i = 0
        while service.router.counts.get("canary", 0) < 20:
            k = (5 * i) % (len(x) - 5)
            _post_labelled(service.url, x[k:k + 5], y[k:k + 5], f"s{i}")
            i += 1
        service.router.log.flush()
        decision = control_server_cohorts(mlflow_client, store, catalog, datetime.now(UTC) + timedelta(seconds=2))
        assert decision[COHORT]["action"] == "advance", decision
        assert service.refresh() == (versions[1], versions[2], 60.0)
        before = dict(service.router.counts)
        for j in range(100):
            _post(service.url, x[:1], f"after-{j}")
        canary = service.router.counts["canary"] - before["canary"]
        assert 40 <= canary <= 80  # 60 expected of 100 at the new share; binomial 99.9% band


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


def test_a_server_variant_is_judged_against_the_cohorts_registered_stable(
    mlflow_client, experiment_run, tiny_tflite, tmp_path
) -> None:
    """The release's paired test gets the predictions of what the server cohort serves now
    (its `<cohort>-stable` version), on the same test images, through that version's own spec."""
    from sklearn.datasets import load_digits

    from components.convert.savedmodel import SavedModelRunner
    from device.preprocessing import normalize
    from flows.serving import registered_stable_predictions

    _, spec, xn = tiny_tflite
    d = load_digits()
    x01, y = (d.images[200:260] / 16.0).astype(np.float32)[..., None], d.target[200:260]
    export = _savedmodel(tmp_path, 2, xn, d.target[:200])
    mv = register_variant(mlflow_client, experiment_run, export, spec, xn[:2], model_name="digits",
                          target="savedmodel", lineage=Lineage("data", "c", "release-1", "models:/m-1"))
    assert registered_stable_predictions(mlflow_client, [COHORT], x01, y) == []  # first release: no stable
    set_cohort_alias(mlflow_client, "digits-savedmodel", COHORT, "stable", mv.version)
    [(accuracy, pred)] = registered_stable_predictions(mlflow_client, [COHORT, "nobody"], x01, y)
    want = SavedModelRunner(export).predict(normalize(x01, spec)).argmax(axis=1)
    np.testing.assert_array_equal(pred, want)
    assert accuracy == pytest.approx(float((want == y).mean()))

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest

from device.agent import AgentConfig, DeviceAgent, NoModelError
from device.capabilities import DeviceCaps
from device.sampling import SamplingPolicy
from device.store import LocalStore, open_store
from device.telemetry import read_batch
from edgeops.errors import StoreError

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class FlakyStore:
    """A real store behind a switch: while `down`, every call raises StoreError."""

    def __init__(self, inner) -> None:
        self.inner, self.down = inner, False
        self.url = inner.url

    def __getattr__(self, name):
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def call(*a, **kw):
            if self.down:
                raise StoreError(f"injected outage on {name}")
            return attr(*a, **kw)

        return call


def _agent(release, tmp_path: Path, store=None, clock=None, caps=None, device="dev-1", **kw):
    cfg = AgentConfig(
        device_id=device,
        cohort="pi",
        state_dir=tmp_path / device,
        trusted_root=release.root,
        caps=caps or DeviceCaps(),
        policy=SamplingPolicy(sample_rate=1.0, buffer_size=64),
        **kw,
    )
    return DeviceAgent(cfg, store or release.store, clock=clock or Clock())


def _frames(tiny_models, n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    return np.round(tiny_models.x_test[:n] * 255).astype(np.uint8), tiny_models.y_test[:n]


def _telemetry(store, cohort="pi"):
    rows = [read_batch(store.get(k)) for k in store.list(f"telemetry/raw/{cohort}/")]
    import pyarrow as pa

    return pa.concat_tables(rows) if rows else None


def test_installs_serves_and_uploads(release, tiny_models, tmp_path):
    ref = release.publish(tiny_models.f32, tiny_models.spec, "1")
    release.point("pi", ref)
    agent = _agent(release, tmp_path)
    with pytest.raises(NoModelError):
        agent.infer(_frames(tiny_models)[0])
    assert agent.sync().action == "installed"
    assert agent.sync().action == "unchanged"
    x, y = _frames(tiny_models, 200)
    labels = np.where(np.arange(len(y)) % 4 == 0, y, -1)
    pred = agent.infer(x, labels)
    assert (pred.top1 == y).mean() > 0.8 and pred.model_version == "1"
    agent.flush()
    t = _telemetry(release.store)
    assert t.num_rows == 64 + 1  # reservoir bound + the swap event
    inf = t.filter(pc.equal(t.column("event"), "inference"))
    assert inf.column("f_brightness").null_count == 0
    assert set(inf.column("bundle_id").to_pylist()) == {ref.bundle_id}
    assert min(inf.column("latency_ms").to_pylist()) > 0
    # privacy: a thumbnail leaves the device only with a labelled record (SamplingPolicy default)
    pairs = zip(inf.column("thumb").to_pylist(), inf.column("label").to_pylist(), strict=True)
    assert all(len(b) == 64 if lab is not None else b is None for b, lab in pairs)
    assert inf.column("label").null_count < inf.num_rows  # some corrections came along
    assert agent.evicted == 200 - 64


def test_flipped_byte_bundle_is_refused_and_model_kept(release, tiny_models, tmp_path):
    v1 = release.publish(tiny_models.f32, tiny_models.spec, "1")
    release.point("pi", v1)
    agent = _agent(release, tmp_path)
    agent.sync()
    v2 = release.publish(tiny_models.int8, tiny_models.spec, "2", target="tflite-int8")
    [key] = [k for k in release.store.list(f"tuf/targets/bundles/{v2.bundle_id}/") if k.endswith(".model.tflite")]
    data = bytearray(release.store.get(key))
    data[len(data) // 2] ^= 0x01
    release.store.put(key, bytes(data))
    release.point("pi", v2)
    res = agent.sync()
    assert res.action == "refused" and "model.tflite" in res.reason and "hash" in res.reason
    assert agent.model.bundle_id == v1.bundle_id
    agent.infer(_frames(tiny_models)[0])  # still serving
    assert (
        agent.sync().action == "refused" and agent.stats.refusals == 1
    )  # remembered, not re-fetched
    agent.flush()
    t = _telemetry(release.store)
    refusal = t.filter(pc.equal(t.column("event"), "refusal")).to_pylist()
    assert len(refusal) == 1 and refusal[0]["bundle_id"] == v2.bundle_id
    assert "LengthOrHashMismatchError" in refusal[0]["error"]


def test_expired_and_replayed_older_channel_refused(release, tiny_models, tmp_path):
    from registry.tuf_repo import Lifetimes

    v1 = release.publish(tiny_models.f32, tiny_models.spec, "1")
    release.point("pi", v1)
    old_bytes = release.store.get("tuf/metadata/timestamp.json")
    v2 = release.publish(tiny_models.int8, tiny_models.spec, "2", target="tflite-int8")
    release.point("pi", v2)
    agent = _agent(release, tmp_path)
    assert agent.sync().action == "installed" and agent.model.metadata.model_version == "2"
    release.store.put("tuf/metadata/timestamp.json", old_bytes)  # replay of an older state
    res = agent.sync()
    assert res.action == "refused" and "timestamp" in res.reason and "version" in res.reason
    assert agent.model.metadata.model_version == "2"

    release.repo.clock = lambda: datetime.now(UTC) - timedelta(days=2)
    release.repo.lifetimes = Lifetimes(timestamp=timedelta(hours=1))
    release.point("pi", v1)  # signed by the key, but its timestamp expired long ago
    res = agent.sync()
    assert res.action == "refused" and "xpired" in res.reason
    assert agent.model.metadata.model_version == "2"
    refusals = agent.stats.refusals
    assert agent.sync().action == "refused" and agent.stats.refusals == refusals  # reported once

    from dataclasses import replace

    release.repo.clock, release.repo.lifetimes = (lambda: datetime.now(UTC)), Lifetimes()
    release.point("pi", replace(v1, model_version="9"))  # signed channel, wrong version for the bundle
    res = agent.sync()
    assert res.action == "refused" and "channel names v9" in res.reason


def test_fall_back_to_previous_model(release, tiny_models, tmp_path):
    v1 = release.publish(tiny_models.f32, tiny_models.spec, "1")
    release.point("pi", v1)
    agent = _agent(release, tmp_path)
    agent.sync()
    v2 = release.publish(tiny_models.int8, tiny_models.spec, "2", target="tflite-int8")
    release.point("pi", v2)
    agent.sync()
    assert agent.fall_back("v2 crashed at run time")
    assert agent.model.bundle_id == v1.bundle_id
    assert agent.slots.ref("current") == v1 and agent.slots.ref("previous") == v2
    res = agent.sync()  # the manifest still names v2: not reinstalled
    assert res.action == "refused" and "failed at run time" in res.reason
    assert agent.model.bundle_id == v1.bundle_id
    assert (agent.infer(_frames(tiny_models, 50)[0]).top1 == tiny_models.y_test[:50]).mean() > 0.8


def test_profile_and_encryption_checks(release, tiny_models, tmp_path):
    int8_only = DeviceCaps(name="coral", targets=("tflite-int8",), int8_only=True)
    f32 = release.publish(tiny_models.f32, tiny_models.spec, "1")
    release.point("pi", f32)
    agent = _agent(release, tmp_path, caps=int8_only)
    res = agent.sync()
    assert res.action == "refused" and "runs tflite-int8, not tflite-f32" in res.reason
    assert agent.model is None

    tiny = DeviceCaps(name="mcu", targets=("tflite-int8",), int8_only=True, arena_bytes=1000)
    i8 = release.publish(tiny_models.int8, tiny_models.spec, "2", target="tflite-int8")
    release.point("pi", i8)
    assert "memory" in _agent(release, tmp_path, caps=tiny, device="d2").sync().reason
    assert _agent(release, tmp_path, caps=int8_only, device="d3").sync().action == "installed"

    key = bytes(range(32))
    from device.protocol import encryption_key_id

    enc = release.publish(
        tiny_models.int8, tiny_models.spec, "3", target="tflite-int8", encryption_key=key
    )
    release.point("pi", enc)
    assert "not provisioned" in _agent(release, tmp_path, device="d4").sync().reason
    a5 = _agent(release, tmp_path, device="d5", model_keys={encryption_key_id(key): key})
    assert a5.sync().action == "installed"
    x, y = _frames(tiny_models, 100)
    assert (a5.infer(x).top1 == y).mean() > 0.8
    from registry.bundles import bundle_file

    assert b"TFL3" not in bundle_file(release.store, enc.bundle_id, "model.tflite.enc")[:16]


def test_outage_backs_off_keeps_serving_and_loses_nothing(release, tiny_models, tmp_path):
    release.point("pi", release.publish(tiny_models.f32, tiny_models.spec, "1"))
    flaky = FlakyStore(release.store)
    clock = Clock()
    agent = _agent(release, tmp_path, store=flaky, clock=clock, upload_interval_s=600)
    agent.tick()
    x, _ = _frames(tiny_models, 30)
    flaky.down = True
    for _ in range(12):  # two simulated hours of outage
        agent.infer(x)
        agent.tick()
        clock.now += timedelta(minutes=10)
    assert agent.uploader.pending() and agent.stats.store_errors > 0
    assert agent.sync().action == "unreachable" and agent.model is not None
    flaky.down = False
    for _ in range(12):
        clock.now += timedelta(minutes=30)
        agent.tick()
    assert not agent.uploader.pending()
    t = _telemetry(release.store)
    seqs = t.column("seq").to_pylist()
    assert (
        len(seqs) == len(set(seqs)) == agent.stats.spooled_records == agent.stats.uploaded_records
    )
    # events: 1 swap, and 1 "offline" error for the whole outage (said once, not per poll)
    assert agent.stats.sampled == agent.stats.spooled_records - 2 + agent.evicted
    offline = t.filter(pc.equal(t.column("event"), "error")).column("error").to_pylist()
    assert len(offline) == 1 and offline[0].startswith("offline:")


def test_restart_restores_model_offline_and_detects_tamper(release, tiny_models, tmp_path):
    v1 = release.publish(tiny_models.f32, tiny_models.spec, "1")
    release.point("pi", v1)
    a = _agent(release, tmp_path)
    a.sync()
    v2 = release.publish(tiny_models.int8, tiny_models.spec, "2", target="tflite-int8")
    release.point("pi", v2)
    a.sync()
    a.infer(_frames(tiny_models)[0])
    a.flush()
    down = FlakyStore(release.store)
    down.down = True  # the store is unreachable when the device starts
    b = _agent(release, tmp_path, store=down)
    assert b.model.bundle_id == v2.bundle_id  # restored from disk without the store
    assert b._seq >= a._seq
    assert b.sync().action == "unreachable" and b.sync().action == "unreachable"
    assert (b.infer(_frames(tiny_models, 50)[0]).top1 == tiny_models.y_test[:50]).mean() > 0.8
    offline = [e for e in b.events.drain() if e.event == "error" and "offline" in (e.error or "")]
    assert len(offline) == 1 and v2.bundle_id[:12] in offline[0].error  # said once, naming it
    model_file = tmp_path / "dev-1" / "models" / v2.bundle_id / "model.tflite"
    model_file.write_bytes(model_file.read_bytes()[:-1] + b"\x00")
    c = _agent(release, tmp_path, store=LocalStore(tmp_path / "other"))
    assert c.model.bundle_id == v1.bundle_id  # tampered at rest: fell back to previous
    assert [e.event for e in c.events.drain()] == ["refusal"]


def test_canary_bucket_picks_candidate(release, tiny_models, tmp_path):
    v1 = release.publish(tiny_models.f32, tiny_models.spec, "1")
    v2 = release.publish(tiny_models.int8, tiny_models.spec, "2", target="tflite-int8")
    m = release.point("pi", v1, candidate=v2, percentage=50)
    from device.protocol import choose

    got = []
    for i in range(8):
        ag = _agent(release, tmp_path, device=f"d{i}")
        ag.sync()
        got.append(ag.model.bundle_id)
        assert ag.model.bundle_id == choose(m, f"d{i}").bundle_id
    assert len(set(got)) == 2


def test_agent_cli_against_s3(s3_env, tiny_models, tmp_path, capsys, make_release):
    """The documented path: config JSON, a provisioned root, an S3 store (moto on loopback)."""
    import json

    from device.cli import main

    store = open_store(s3_env["EDGEOPS_STORE_URL"], endpoint_url=s3_env["AWS_ENDPOINT_URL"])
    rel = make_release(store)
    rel.point("pi", rel.publish(tiny_models.f32, tiny_models.spec, "1"))
    cfg = tmp_path / "agent.json"
    (tmp_path / "root.json").write_bytes(rel.root)
    cfg.write_text(
        json.dumps(
            {
                "store_url": s3_env["EDGEOPS_STORE_URL"],
                "endpoint_url": s3_env["AWS_ENDPOINT_URL"],
                "device_id": "pi-kiosk-1",
                "cohort": "pi",
                "state_dir": str(tmp_path / "state"),
                "trusted_root_file": str(tmp_path / "root.json"),
                "profile": {"name": "raspberry-pi-4", "targets": ["tflite-f32"]},
                "sampling": {"sample_rate": 1.0},
                "upload_interval_s": 0,
            }
        )
    )
    assert main(["--config", str(cfg), "sync"]) == 0
    assert json.loads(capsys.readouterr().out)["action"] == "installed"
    frames = tmp_path / "frames.npy"
    np.save(frames, _frames(tiny_models, 5)[0])
    assert main(["--config", str(cfg), "infer", str(frames)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["predictions"]) == 5 and out["model_version"] == "1"
    inbox = tmp_path / "state" / "inbox"
    inbox.mkdir()
    np.save(inbox / "f1.npy", _frames(tiny_models, 3)[0])
    assert main(["--config", str(cfg), "run", "--once"]) == 0
    assert json.loads((tmp_path / "state" / "outbox" / "f1.json").read_text())["predictions"]
    assert main(["--config", str(cfg), "status"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["model_version"] == "1" and status["pending_records"] == 0
    assert len(status["telemetry_key_id"]) == 16 and status["telemetry_public_key"]
    t = _telemetry(store)
    assert (
        t.filter(pc.equal(t.column("event"), "inference")).num_rows == 8
    )  # 5 + 3 frames, all sampled
    # started with the store unreachable: serves the last verified model
    offline = json.loads(cfg.read_text()) | {"endpoint_url": "http://127.0.0.1:9"}
    cfg.write_text(json.dumps(offline))
    assert main(["--config", str(cfg), "infer", str(frames)]) == 0
    assert json.loads(capsys.readouterr().out)["model_version"] == "1"
    # a device provisioned with another channel's root refuses this one's metadata
    from registry.tuf_keys import Keystore
    from registry.tuf_repo import TufRepository

    foreign = TufRepository(LocalStore(tmp_path / "foreign"), Keystore(tmp_path / "foreign-keys"))
    foreign.init(["pi"])
    (tmp_path / "foreign-root.json").write_bytes(foreign.export_root())
    bad = offline | {
        "endpoint_url": s3_env["AWS_ENDPOINT_URL"],
        "trusted_root_file": str(tmp_path / "foreign-root.json"),
        "state_dir": str(tmp_path / "state2"),
    }
    cfg.write_text(json.dumps(bad))
    assert main(["--config", str(cfg), "sync"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["action"] == "refused" and "timestamp" in res["reason"]


def test_late_labels_reach_their_inference_by_id(release, tiny_models, tmp_path):
    """A label given after the inference: in the buffer it labels the waiting record (which then
    takes priority); after the upload a `label` event names the inference; ids stay unique
    across a restart; a label for an inference never sampled is counted, not sent."""
    release.point("pi", release.publish(tiny_models.f32, tiny_models.spec, "1"))
    agent = _agent(release, tmp_path)
    agent.sync()
    x, _ = _frames(tiny_models, 6)
    first = agent.infer(x[:3])
    assert list(first.inference_ids) == [0, 1, 2]
    assert agent.label(int(first.inference_ids[1]), 7)  # still in the buffer
    agent.flush()
    assert agent.label(int(first.inference_ids[2]), 4)  # uploaded: a label event
    agent.flush()
    t = _telemetry(release.store).to_pandas()
    inf = t[t["event"] == "inference"].set_index("inference_id")
    assert inf.loc[1, "label"] == 7 and np.isnan(inf.loc[0, "label"])
    assert inf.loc[1, "thumb"] is not None and inf.loc[0, "thumb"] is None  # labelled: thumbnail
    (ev,) = t[t["event"] == "label"].itertuples()
    assert (ev.inference_id, ev.label, ev.model_version) == (2, 4, "1")
    assert not agent.label(10_000, 3) and agent.stats.labels_unmatched == 1
    agent.close()
    again = _agent(release, tmp_path)  # restart: new ids never reuse old ones
    assert again.infer(x[:1]).first_id >= 3


def test_labelled_frames_are_always_offered(release, tiny_models, tmp_path):
    release.point("pi", release.publish(tiny_models.f32, tiny_models.spec, "1"))
    cfg = AgentConfig("dev-l", "pi", tmp_path / "dev-l", release.root,
                      policy=SamplingPolicy(sample_rate=0.01, buffer_size=64))
    agent = DeviceAgent(cfg, release.store, clock=Clock())
    agent.sync()
    x, y = _frames(tiny_models, 40)
    labels = np.full(40, -1)
    labels[::4] = y[::4]
    agent.infer(x, labels)
    agent.flush()
    t = _telemetry(release.store).to_pandas()
    inf = t[t["event"] == "inference"]
    assert inf["label"].notna().sum() == 10

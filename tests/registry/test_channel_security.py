"""The update channel against an attacker who can write to the bucket but holds no key, and
against faults: moto's S3 server on loopback, the release CLI and real device agents.

Every change such an attacker can make (rollout state, index, planted keys, old metadata,
mixed-and-matched metadata, a root of their own) must leave devices on what the key holders
decided, with a readable refusal; root rotation works across two versions; a revoked key stays
revoked; a rollback interrupted by a store failure at any write is repaired by re-running it.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata, Timestamp
from typer.testing import CliRunner

from device.agent import AgentConfig, DeviceAgent
from device.channel import ChannelClient, rollout_path, target_key
from device.protocol import BundleRef
from device.store import ObjectStore, open_store
from edgeops.errors import IntegrityError, StoreError
from registry.bundles import find_bundle, publish_bundle
from registry.channels import set_stable
from registry.rollout_state import RolloutPlan
from registry.rollouts import RolloutManager
from registry.tuf_keys import Keystore
from registry.tuf_repo import TufRepository
from registry.tuf_rotation import rotate

pytestmark = pytest.mark.slow  # moto + TFLite interpreters + the CLI: about a minute
COHORT = "pi-fleet-eu"
META = "tuf/metadata/"


@dataclass
class World:
    store: ObjectStore
    repo: TufRepository
    mgr: RolloutManager
    v1: BundleRef
    v2: BundleRef
    root_v1: bytes
    old_ts: bytes  # a timestamp from before the rollout, as an attacker watching the bucket keeps
    tmp: Path


def _world(store: ObjectStore, tmp: Path, tiny_tflite, bad_tflite, catalog) -> World:
    path, spec, _ = tiny_tflite
    repo = TufRepository(store, Keystore(tmp / "keys"))
    repo.init(sorted(catalog.cohorts), bin_bits=1)
    v1 = publish_bundle(repo, path, spec, model_name="digits", model_version="1", target="tflite-f32")
    v2 = publish_bundle(repo, bad_tflite, spec, model_name="digits", model_version="2", target="tflite-f32")
    set_stable(repo, COHORT, v1)
    old_ts = store.get(f"{META}timestamp.json")
    mgr = RolloutManager(repo, catalog)
    plan = RolloutPlan("digits-tflite-f32", "digits", "2", "tflite-f32", v2, steps=(50.0, 100.0))
    mgr.plan_resolved(COHORT, plan, actor="alice")
    mgr.start(COHORT, actor="alice")
    return World(store, repo, mgr, v1, v2, repo.export_root(), old_ts, tmp)


def _agents(w: World, name: str, n: int = 6) -> list[DeviceAgent]:
    out = []
    for i in range(n):
        cfg = AgentConfig(
            device_id=f"pi-{i:03d}", cohort=COHORT, state_dir=w.tmp / name / str(i), trusted_root=w.root_v1
        )
        out.append(DeviceAgent(cfg, w.store))
    return out


def _running(agents: list[DeviceAgent]) -> dict[str, str]:
    return {a.config.device_id: a.model.metadata.model_version for a in agents if a.model}


@pytest.fixture
def world(s3_env, tmp_path, tiny_tflite, bad_tflite, catalog) -> World:
    store = open_store(s3_env["EDGEOPS_STORE_URL"], s3_env["AWS_ENDPOINT_URL"])
    return _world(store, tmp_path, tiny_tflite, bad_tflite, catalog)


@pytest.fixture
def cli(world: World, tmp_path, catalog, mlflow_client, monkeypatch, s3_env):
    devices = tmp_path / "devices.yaml"
    devices.write_text(
        yaml.safe_dump(
            catalog.model_dump(exclude={"profiles": {"__all__": {"name"}}, "cohorts": {"__all__": {"name"}}})
        )
    )
    for k, v in {
        "EDGEOPS_HOME": str(tmp_path / "home"),
        "EDGEOPS_STORE_URL": s3_env["EDGEOPS_STORE_URL"],
        "EDGEOPS_KEYS_DIR": str(tmp_path / "keys"),
        "EDGEOPS_DEVICES": str(devices),
        "MLFLOW_TRACKING_URI": mlflow_client.tracking_uri,
        "EDGEOPS_ACTOR": "mallory-test",
    }.items():
        monkeypatch.setenv(k, v)
    from edgeops.cli.release import release_app

    def run(*args: str):
        return CliRunner().invoke(release_app, list(args))

    return run


def _attacker_timestamp(w: World, signer: CryptoSigner, version_bump: int = 10) -> bytes:
    md = Metadata.from_bytes(w.store.get(f"{META}timestamp.json"))
    assert isinstance(md.signed, Timestamp)
    md.signed.version += version_bump
    md.signed.expires = datetime.now(UTC) + timedelta(days=9)
    md.sign(signer)
    return md.to_bytes()


def test_bucket_writer_without_keys_cannot_change_what_devices_run(world: World, cli) -> None:
    w = world
    agents = _agents(w, "fleet")
    for a in agents:
        assert a.sync().action == "installed"
    decided = _running(agents)
    assert set(decided.values()) == {"1", "2"}  # a 50% canary, as the key holders decided

    def devices_hold(expect_refusal: str | None) -> None:
        for a in agents:
            res = a.sync()
            if expect_refusal is not None:
                assert res.action == "refused" and expect_refusal in (res.reason or ""), res
        assert _running(agents) == decided

    # 1. the rollout state, edited in the bucket to name the bad bundle at 100%: the release
    #    side refuses to read it (its hash is pinned by the signed cohort role), devices ignore it
    info = w.repo.begin().target_info(rollout_path(COHORT))
    key = target_key(rollout_path(COHORT), info.hashes["sha256"])
    honest = w.store.get(key)
    forged = json.loads(honest)
    forged["plan"]["steps"], forged["step_index"] = [100.0], 0
    w.store.put(key, json.dumps(forged).encode())
    out = cli("advance", COHORT)
    assert out.exit_code == IntegrityError.exit_code and "rollout.json" in out.output
    assert len(out.output.strip().splitlines()) == 1 and "Traceback" not in out.output
    devices_hold(None)
    w.store.put(key, honest)

    # 2. an index entry planted for a version that was never published, and a real one edited
    planted = target_key("index/digits/9/tflite-f32.json", "0" * 64)
    w.store.put(planted, json.dumps(w.v2.to_dict()).encode())
    with pytest.raises(Exception, match="no bundle published for digits version 9"):
        find_bundle(w.repo, "digits", "9", "tflite-f32")
    assert find_bundle(w.repo, "digits", "1", "tflite-f32") == w.v1

    # 3. planted keys: a public key under keys/, a manifest of the old protocol, and a timestamp
    #    and a root of the attacker's own signing
    mallory = CryptoSigner.generate_ed25519()
    w.store.put("keys/mallory.pub", b"-----BEGIN PUBLIC KEY-----\n")
    w.store.put(f"manifests/{COHORT}.json", b'{"signed": {"percentage": 100}}')
    honest_ts = w.store.get(f"{META}timestamp.json")
    w.store.put(f"{META}timestamp.json", _attacker_timestamp(w, mallory))
    devices_hold("timestamp")
    out = cli("status", COHORT, "--json")
    assert out.exit_code == IntegrityError.exit_code and "timestamp" in out.output
    w.store.put(f"{META}timestamp.json", honest_ts)
    evil_root = Metadata.from_bytes(w.root_v1)
    evil_root.signed.version = 2
    evil_root.signed.add_key(mallory.public_key, "timestamp")
    evil_root.sign(mallory)
    w.store.put(f"{META}2.root.json", evil_root.to_bytes())
    fresh = _agents(w, "fresh", 1)[0]
    res = fresh.sync()
    assert res.action == "refused" and "root" in res.reason and fresh.model is None
    out = cli("status", COHORT)
    assert out.exit_code == IntegrityError.exit_code and "root" in out.output
    w.store.delete(f"{META}2.root.json")

    # 4. old metadata: a replayed timestamp from before the rollout started
    w.store.put(f"{META}timestamp.json", w.old_ts)
    devices_hold("timestamp")
    assert cli("status", COHORT, "--json").exit_code == 0  # the release side builds on what it saw

    # 5. mix and match: an older, genuinely signed cohort role copied over the current one
    current = w.repo.begin().targets(f"cohort-{COHORT}").signed.version
    w.repo.refresh()  # key holders renew; the honest timestamp is back
    for a in agents:
        a.sync()
    assert _running(agents) == decided
    cur_key = f"{META}{current}.cohort-{COHORT}.json"
    honest_role = w.store.get(cur_key)
    w.store.put(cur_key, w.store.get(f"{META}1.cohort-{COHORT}.json"))
    mixed = _agents(w, "mixed", 2)
    for a in mixed:
        res = a.sync()
        assert res.action == "refused" and f"cohort-{COHORT}" in res.reason and a.model is None
    w.store.put(cur_key, honest_role)

    # what the key holders decide still goes through, and every device follows
    out = cli("rollback", COHORT, "-r", "attack drill over")
    assert out.exit_code == 0, out.output
    for a in agents:
        a.sync()
    assert set(_running(agents).values()) == {"1"}


def test_root_rotation_across_two_versions_and_a_revoked_key_stays_revoked(world: World) -> None:
    w = world
    old_ts_key = next((w.tmp / "keys" / "tuf" / "timestamp").glob("*.pem"))
    stolen = CryptoSigner(load_pem_private_key(old_ts_key.read_bytes(), None))  # a copy leaked
    assert "root is now v2" in rotate(w.repo, "root")
    assert "root is now v3" in rotate(w.repo, "timestamp")  # revokes the stolen key
    assert not old_ts_key.exists()
    a = _agents(w, "rotated", 1)[0]  # provisioned with root v1
    assert a.sync().action == "installed"
    root = json.loads((a.config.state_dir / "tuf" / "root.json").read_bytes())
    assert root["signed"]["version"] == 3
    exported = json.loads(w.repo.export_root())
    assert exported["signed"]["version"] == 3
    # the thief signs a fresh timestamp with the revoked key: refused
    honest = w.store.get(f"{META}timestamp.json")
    w.store.put(f"{META}timestamp.json", _attacker_timestamp(w, stolen))
    res = a.sync()
    assert res.action == "refused" and "timestamp" in res.reason
    # ... and re-uploading the root that still listed it changes nothing
    w.store.put(f"{META}1.root.json", w.root_v1)
    res = _agents(w, "late", 1)[0].sync()
    assert res.action == "refused" and "timestamp" in res.reason
    w.store.put(f"{META}timestamp.json", honest)
    assert a.sync().action in ("unchanged", "installed")
    # the release key too: every delegated role is re-signed, devices keep every bundle
    assert "re-signed" in rotate(w.repo, "release")
    assert a.sync().action in ("unchanged", "installed") and a.model is not None
    b = _agents(w, "after-release-rotation", 6)
    assert all(x.sync().action == "installed" for x in b)


class FailingStore:
    """A real store that fails the n-th write: before it reaches the store, or after (the
    write landed but the reply was lost)."""

    def __init__(self, inner: ObjectStore, fail_at: int, after: bool = False) -> None:
        self.inner, self.fail_at, self.after, self.writes = inner, fail_at, after, 0
        self.url = inner.url

    def __getattr__(self, name):
        attr = getattr(self.inner, name)
        if name not in ("put", "put_if_match"):
            return attr

        def write(*a, **kw):
            self.writes += 1
            if self.writes == self.fail_at and not self.after:
                raise StoreError(f"injected failure at write {self.writes}")
            out = attr(*a, **kw)
            if self.writes == self.fail_at:
                raise StoreError(f"injected lost reply at write {self.writes}")
            return out

        return write


@pytest.mark.parametrize("after", [False, True], ids=["before-write", "lost-reply"])
def test_rollback_interrupted_at_each_write_is_repaired(
    s3_env, tmp_path, tiny_tflite, bad_tflite, catalog, after
) -> None:
    base = open_store(s3_env["EDGEOPS_STORE_URL"], s3_env["AWS_ENDPOINT_URL"])
    probe = FailingStore(base, fail_at=0)
    w = _world(base, tmp_path / "probe", tiny_tflite, bad_tflite, catalog)
    RolloutManager(TufRepository(probe, w.repo.keystore), catalog).rollback(COHORT, actor="ops")
    writes = probe.writes
    assert writes >= 4  # state, channel, cohort role, snapshot, timestamp
    for n in range(1, writes + 1):
        store = open_store(f"{s3_env['EDGEOPS_STORE_URL']}-{n}{int(after)}", s3_env["AWS_ENDPOINT_URL"])
        w = _world(store, tmp_path / f"w{n}{int(after)}", tiny_tflite, bad_tflite, catalog)
        agents = _agents(w, "fleet", 4)
        for a in agents:
            a.sync()
        failing = FailingStore(store, fail_at=n, after=after)
        broken = RolloutManager(TufRepository(failing, w.repo.keystore), catalog)
        with pytest.raises(StoreError, match="injected"):
            broken.rollback(COHORT, actor="ops", reason=f"fail at write {n}")
        state = w.mgr.state(COHORT)
        channel = w.mgr.channel(COHORT)
        # never half done: state and channel moved together or not at all
        assert (state.status == "rolled_back") == (channel.candidate is None)
        again = w.mgr.rollback(COHORT, actor="ops", reason="re-run after the failure")
        assert again.status == "rolled_back"
        assert w.mgr.channel(COHORT).candidate is None and w.mgr.channel(COHORT).stable == w.v1
        assert [t.action for t in again.history].count("rollback") == 1
        assert w.mgr.rollback(COHORT, actor="ops").history == again.history  # idempotent
        for a in agents:
            a.sync()
        assert set(_running(agents).values()) == {"1"}
        shutil.rmtree(tmp_path / f"w{n}{int(after)}", ignore_errors=True)


def test_controller_repairs_a_channel_that_disagrees_with_its_state(world: World) -> None:
    """A channel rewritten with the release key but without its state (a half-done manual
    fix): the controller's reconcile brings it back in line with the rollout state."""
    from flows.controller import reconcile_all

    w = world
    w.mgr.rollback(COHORT, actor="ops")
    set_stable(w.repo, COHORT, w.v2)  # the channel alone moved to the bad bundle
    assert w.mgr.channel(COHORT).stable == w.v2
    assert reconcile_all(w.mgr) == [COHORT]
    assert w.mgr.channel(COHORT).stable == w.v1 and reconcile_all(w.mgr) == []
    client = ChannelClient(w.store, w.tmp / "check", w.root_v1)
    assert client.session().channel(COHORT).stable == w.v1

"""The agent in the field: a torn state.json is recovered, a bad inbox file is set aside."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from device.agent import AgentConfig, DeviceAgent
from device.inbox import serve_inbox
from device.state import RECOVERY_SEQ_JUMP, read_state, write_state
from device.store import LocalStore
from device.updater import ModelSlots


def _agent(tmp_path: Path) -> DeviceAgent:
    cfg = AgentConfig(device_id="d1", cohort="c", state_dir=tmp_path / "state", trusted_root=b"")
    return DeviceAgent(cfg, LocalStore(tmp_path / "store"))


def test_state_writes_keep_the_previous_copy(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    write_state(path, {"seq_reserved": 10})
    write_state(path, {"seq_reserved": 20})
    assert json.loads(path.read_text()) == {"seq_reserved": 20}
    assert json.loads((tmp_path / "state.json.prev").read_text()) == {"seq_reserved": 10}
    assert read_state(path, {"x": 1}).state == {"x": 1, "seq_reserved": 20}


def test_torn_state_recovers_and_jumps_the_sequence(tmp_path: Path) -> None:
    slots = ModelSlots(tmp_path / "state")
    slots.state["seq_reserved"] = 500
    slots.save()
    slots.state["seq_reserved"] = 900
    slots.save()
    (tmp_path / "state" / "state.json").write_bytes(b'{"current": null, "seq_res')  # torn
    agent = _agent(tmp_path)  # must not crash
    assert agent.slots.recovered and "recovered from the previous state" in agent.slots.recovered
    # the backup reserved 500; the lost write may have handed out up to 900: jump past both
    assert agent._seq == 500 + RECOVERY_SEQ_JUMP > 900
    assert (tmp_path / "state" / "state.json.corrupt").exists()
    events = agent.events.drain()
    assert [e.event for e in events] == ["error"] and "state.json" in (events[0].error or "")
    agent.slots.save()  # and the next write is a good one
    assert ModelSlots(tmp_path / "state").recovered is None


def test_missing_state_after_a_crash_between_renames(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    write_state(path, {"seq_reserved": 3})
    write_state(path, {"seq_reserved": 7})
    os.replace(path, tmp_path / ".state.json.tmp")  # as if the crash hit between the renames
    loaded = read_state(path, {})
    assert loaded.state["seq_reserved"] == 7 and "last write" in (loaded.recovered or "")


def test_bad_inbox_file_is_quarantined_and_the_loop_goes_on(tmp_path: Path) -> None:
    agent = _agent(tmp_path)
    inbox, outbox = tmp_path / "inbox", tmp_path / "outbox"
    inbox.mkdir()
    outbox.mkdir()
    np.save(inbox / "a.npy", np.ones((2, 4, 4), np.uint8))
    full = (inbox / "a.npy").read_bytes()
    (inbox / "b.npy").write_bytes(full[: len(full) // 2])  # cut off mid-write
    np.save(inbox / "c.npy", np.full((4, 4), 3, np.uint8))
    old = time.time() - 60
    for f in inbox.glob("*.npy"):
        os.utime(f, (old, old))

    def serve(agent, name, frames):
        return {"input": name, "sum": int(frames.sum())}

    first = serve_inbox(agent, inbox, outbox, serve)
    assert (first.served, first.quarantined, first.waiting) == (2, 1, 0)
    assert json.loads((outbox / "c.json").read_text()) == {"input": "c.npy", "sum": 48}
    assert (inbox / "quarantine" / "b.npy").exists()
    assert "b.npy" not in {f.name for f in inbox.glob("*.npy")}
    assert "quarantined" in (agent.events.drain()[-1].error or "")
    # a failing file that is still young waits for the next pass instead
    (inbox / "d.npy").write_bytes(full[:10])
    assert serve_inbox(agent, inbox, outbox, serve).waiting == 1
    assert (inbox / "d.npy").exists()

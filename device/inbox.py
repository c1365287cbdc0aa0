"""The inbox a camera application drops frames into (.npy files), served one file at a time.

A file that cannot be read or served (cut off mid-write, not an array, the wrong shape) is moved
to `inbox/quarantine/` with a `.reason.txt` beside it, recorded as an `error` event in telemetry,
and the loop goes on with the next file. A file modified within the last `settle_s` seconds may
still be being written, so a failure on it is retried on the next pass before it is set aside
(camera applications should still write to a temporary name and rename into the inbox).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from device.agent import DeviceAgent

QUARANTINE = "quarantine"
Serve = Callable[["DeviceAgent", str, np.ndarray], dict[str, Any]]


@dataclass(frozen=True)
class InboxPass:
    served: int
    quarantined: int
    waiting: int  # failed while young: retried next pass


def _quarantine(path: Path, reason: str) -> None:
    q = path.parent / QUARANTINE
    q.mkdir(exist_ok=True)
    os.replace(path, q / path.name)
    (q / f"{path.name}.reason.txt").write_text(reason + "\n")


def serve_inbox(
    agent: DeviceAgent, inbox: Path, outbox: Path, serve: Serve, settle_s: float = 2.0
) -> InboxPass:
    """One pass over `inbox/*.npy`, oldest name first; results as `outbox/<stem>.json`."""
    from device.agent import NoModelError

    served = quarantined = waiting = 0
    for f in sorted(inbox.glob("*.npy")):
        try:
            frames = np.load(f, allow_pickle=False)
            out = serve(agent, f.name, frames)
        except NoModelError:
            raise
        except Exception as exc:  # noqa: BLE001 - any bad file must not stop the loop
            reason = f"{type(exc).__name__}: {exc}"[:500]
            try:
                young = time.time() - f.stat().st_mtime < settle_s
            except OSError:
                continue  # gone meanwhile
            if young:
                waiting += 1
                continue
            _quarantine(f, reason)
            agent.report_error(f"inbox file {f.name} quarantined: {reason}")
            quarantined += 1
            continue
        tmp = outbox / f".{f.stem}.json.tmp"
        tmp.write_text(json.dumps(out))
        os.replace(tmp, outbox / f"{f.stem}.json")
        f.unlink()
        served += 1
    return InboxPass(served, quarantined, waiting)

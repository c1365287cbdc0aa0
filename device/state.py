"""The agent's small JSON state on disk: written durably, recovered when torn.

A write goes to a temporary file that is fsynced, the current file becomes `<name>.prev`, the
temporary one takes its name, and the directory is fsynced, so after a power cut there is
always one complete state: the new one, or the one before it. A state file that does not parse
(a torn write on a file system without ordered data, a bad sector) is moved aside and the
previous one is used; the telemetry sequence reservation then jumps ahead, because the lost
write may have reserved numbers that were already used.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SEQ_KEY = "seq_reserved"
RECOVERY_SEQ_JUMP = 1_000_000  # sequence gaps cost nothing; reused numbers lose rows


@dataclass(frozen=True)
class Loaded:
    state: dict[str, Any]
    recovered: str | None  # why the state came from the backup or the defaults, if it did


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # some platforms cannot open directories; the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_state(path: Path, state: dict[str, Any]) -> None:
    """tmp + fsync, current -> .prev, tmp -> current, fsync the directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(json.dumps(state, sort_keys=True).encode())
        fh.flush()
        os.fsync(fh.fileno())
    if path.exists():
        os.replace(path, path.with_name(f"{path.name}.prev"))
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        obj = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def read_state(path: Path, defaults: dict[str, Any]) -> Loaded:
    """The state at `path` over `defaults`; a torn file falls back to `.prev`, then defaults."""
    prev = path.with_name(f"{path.name}.prev")
    if not path.exists() and not prev.exists():
        return Loaded(dict(defaults), None)
    current = _read(path) if path.exists() else None
    if current is not None:
        return Loaded({**defaults, **current}, None)
    what = "unreadable" if path.exists() else "missing"
    if path.exists():
        os.replace(path, path.with_name(f"{path.name}.corrupt"))
    newest = _read(path.with_name(f".{path.name}.tmp"))  # fsynced before any rename
    if newest is not None:
        return Loaded(
            {**defaults, **newest}, f"{path.name} was {what}; recovered from its last write"
        )
    backup = _read(prev)
    state = {**defaults, **(backup or {})}
    try:
        reserved = int(state.get(SEQ_KEY) or 0)
    except (TypeError, ValueError):
        reserved = 0
    state[SEQ_KEY] = reserved + RECOVERY_SEQ_JUMP
    source = "the previous state" if backup is not None else "defaults"
    return Loaded(state, f"{path.name} was {what}; recovered from {source}")

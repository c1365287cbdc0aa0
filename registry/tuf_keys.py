"""The keystore of the update channel: private keys per TUF key group and the trusted root.

Key groups: `root` and `targets` are offline keys (they sign rarely: a new cohort, a key
rotation) and may live in a separate directory (removable media, an HSM export); `snapshot`,
`timestamp` and `release` (the delegated cohort, bundles and bin roles) are online keys that
the release machine and the controller use. Keys are Ed25519, PKCS#8 PEM, mode 0600, under
`<keys_dir>/tuf/<group>/<keyid>.pem` (or `<offline_dir>/<group>/...`).

`<keys_dir>/tuf/root.json` is this machine's trust anchor: the newest root it has verified
(by the chain from the one it started with). Nothing here is ever read from the object store,
and nothing creates a key except `generate` (called by `edgeops keys init` / `rotate`).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.serialization import load_pem_private_key
from securesystemslib.signer import CryptoSigner

from edgeops.errors import ConfigError

OFFLINE = ("root", "targets")
ONLINE = ("snapshot", "timestamp", "release")
GROUPS = OFFLINE + ONLINE


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


@dataclass(frozen=True)
class Keystore:
    keys_dir: Path
    offline_dir: Path | None = None

    @property
    def tuf_dir(self) -> Path:
        return Path(self.keys_dir) / "tuf"

    def group_dir(self, group: str) -> Path:
        if group not in GROUPS:
            raise ConfigError(f"unknown key group {group!r}; groups: {', '.join(GROUPS)}")
        base = Path(self.offline_dir) if group in OFFLINE and self.offline_dir else self.tuf_dir
        return base / group

    def signers(self, group: str, *, required: bool = True) -> list[CryptoSigner]:
        """Every private key of a group held here; none -> one readable line (or [])."""
        folder = self.group_dir(group)
        out = []
        for pem in sorted(folder.glob("*.pem")) if folder.is_dir() else []:
            try:
                out.append(CryptoSigner(load_pem_private_key(pem.read_bytes(), None)))
            except ValueError as exc:
                raise ConfigError(f"unreadable {group} key: {exc}", where=str(pem)) from exc
        if not out and required:
            raise ConfigError(
                f"no {group} signing key on this machine (looked in {folder}); this command signs "
                f"with it: run it where the {group} key is kept"
                + (" (--offline-dir)" if group in OFFLINE else ""),
            )
        return out

    def generate(self, group: str) -> CryptoSigner:
        signer = CryptoSigner.generate_ed25519()
        _write_private(self.group_dir(group) / f"{signer.public_key.keyid}.pem", signer.private_bytes)
        return signer

    def retire(self, group: str, keyid: str) -> None:
        """Delete a private key that a rotation revoked (it must never sign again)."""
        (self.group_dir(group) / f"{keyid}.pem").unlink(missing_ok=True)

    # --- the trust anchor --------------------------------------------------------------
    @property
    def root_path(self) -> Path:
        return self.tuf_dir / "root.json"

    def trusted_root(self) -> bytes:
        try:
            return self.root_path.read_bytes()
        except FileNotFoundError:
            raise ConfigError(
                "no trusted update-channel root on this machine: run `edgeops keys init` to "
                "create a channel, or `edgeops keys trust ROOT.json` with a root exported by "
                "its key holders",
                where=str(self.root_path),
            ) from None

    def has_root(self) -> bool:
        return self.root_path.is_file()

    def save_root(self, data: bytes) -> None:
        self.tuf_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".root-", dir=self.tuf_dir)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, self.root_path)

    # --- high-water marks: refuse a repository older than one already seen ------------
    def seen(self, scope: str) -> dict[str, int]:
        """Versions of timestamp and snapshot this machine saw last, per repository (store URL)."""
        try:
            marks = json.loads((self.tuf_dir / "seen.json").read_text())
        except FileNotFoundError:
            return {}
        return {k: int(v) for k, v in marks.get(scope, {}).items()}

    def save_seen(self, scope: str, seen: dict[str, int], *, reset: bool = False) -> None:
        """Merge (max per role; `reset` replaces, for a new repository) and write atomically;
        several processes may share a keystore."""
        current = self.seen(scope)
        if not reset and all(current.get(k, -1) >= v for k, v in seen.items()):
            return
        merged = dict(seen) if reset else {k: max(v, current.get(k, v)) for k, v in {**current, **seen}.items()}
        try:
            marks = json.loads((self.tuf_dir / "seen.json").read_text())
        except FileNotFoundError:
            marks = {}
        marks[scope] = merged
        self.tuf_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".seen-", dir=self.tuf_dir)
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(marks, sort_keys=True))
        os.replace(tmp, self.tuf_dir / "seen.json")

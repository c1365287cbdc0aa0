"""The update channel: a TUF repository in the object store, written with python-tuf.

Roles: `root`, `targets` (offline keys), `snapshot`, `timestamp` (online keys), and delegated
targets roles signed by the online `release` key: one `cohort-<name>` per cohort (paths
`cohorts/<name>/*`: the cohort's channel and rollout state), and `bundles` (paths
`bundles/*/*`, `index/*/*/*`) which hands the bundle files to hash bins `bins-<xx>` (PEP 458's succinct
delegation), so metadata per refresh stays small as bundles accumulate.

Layout: `tuf/metadata/<v>.<role>.json` (consistent snapshots), `tuf/metadata/timestamp.json`,
targets at `tuf/targets/<dir>/<sha256>.<name>`. Every write is a transaction: the roles it
changes get new version files (written only if absent), then a new snapshot, then the
timestamp is replaced by compare-and-swap on the ETag read at the start. That swap is the one
commit point: a crash or a lost race before it changes nothing a client can see, and the loser
re-runs its change on the new state. The release side verifies everything it reads from the
root in its own keystore (registry.tuf_keys), exactly as a device does.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from tuf.api.exceptions import LengthOrHashMismatchError, UnsignedMetadataError
from tuf.api.metadata import (
    DelegatedRole,
    Delegations,
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    SuccinctRoles,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization import DeserializationError
from tuf.api.serialization.json import JSONSerializer

from device.channel import META_PREFIX, channel_path, cohort_role, target_key
from device.protocol import utcnow
from device.store import MissingKeyError, ObjectStore
from edgeops.errors import ConfigError, ConflictError, IntegrityError
from registry.tuf_keys import GROUPS, Keystore

BUNDLES = "bundles"
BINS = "bins"
TOP = ("root", "targets", "snapshot", "timestamp")
T = TypeVar("T")
_COMPACT = JSONSerializer(compact=True)


@dataclass(frozen=True)
class Lifetimes:
    root: timedelta = timedelta(days=365)
    targets: timedelta = timedelta(days=365)
    delegated: timedelta = timedelta(days=30)  # cohort, bundles and bin roles (online key)
    snapshot: timedelta = timedelta(days=7)
    timestamp: timedelta = timedelta(days=1)  # renewed by the channel-refresh deployment

    def of(self, role: str) -> timedelta:
        return getattr(self, role) if role in TOP else self.delegated


def key_group(role: str) -> str:
    return role if role in TOP else "release"


def parse(data: bytes, role: str, typ: type) -> Metadata[Any]:
    try:
        md = Metadata.from_bytes(data)
    except DeserializationError as exc:
        raise IntegrityError(f"{role} metadata is malformed: {exc}") from exc
    if not isinstance(md.signed, typ):
        raise IntegrityError(f"{role} metadata is of type {md.signed.type}, not {typ.type}")
    return md


def verify(delegator: Root | Targets, role: str, md: Metadata[Any]) -> None:
    try:
        delegator.verify_delegate(role, md.signed_bytes, md.signatures)
    except (UnsignedMetadataError, ValueError) as exc:
        raise IntegrityError(f"{role} metadata refused: {exc}") from exc


@dataclass
class Txn:
    """A verified view of the repository, and the changes one transaction makes to it."""

    repo: TufRepository
    root: Metadata[Root]
    timestamp: Metadata[Timestamp]
    ts_etag: str | None
    snapshot: Metadata[Snapshot]
    stale_timestamp: bool = False
    roles: dict[str, Metadata[Targets]] = field(default_factory=dict)
    dirty: list[str] = field(default_factory=list)
    force_snapshot: bool = False
    force_timestamp: bool = False
    versions: dict[str, int] = field(default_factory=dict)

    @property
    def store(self) -> ObjectStore:
        return self.repo.store

    def role_names(self) -> list[str]:
        return [k.removesuffix(".json") for k in self.snapshot.signed.meta]

    def has_role(self, role: str) -> bool:
        return f"{role}.json" in self.snapshot.signed.meta or role in self.roles

    def targets(self, role: str) -> Metadata[Targets]:
        """A targets role at the version the snapshot names, verified by its delegator."""
        if role in self.roles:
            return self.roles[role]
        info = self.snapshot.signed.meta.get(f"{role}.json")
        if info is None:
            hint = (
                " (a cohort added to devices.yaml after `edgeops keys init` is delegated by "
                "`edgeops keys add-cohorts` or the next publish)"
                if role.startswith("cohort-")
                else ""
            )
            raise IntegrityError(f"role {role} is not in the channel's snapshot{hint}")
        try:
            data = self.store.get(f"{META_PREFIX}{info.version}.{role}.json")
        except MissingKeyError:
            raise IntegrityError(f"{role} version {info.version} is missing from the store") from None
        md = parse(data, role, Targets)
        verify(self._delegator(role), role, md)
        if md.signed.version != info.version:
            raise IntegrityError(
                f"{role} file holds version {md.signed.version}, snapshot says {info.version}"
            )
        self.roles[role] = md
        return md

    def _delegator(self, role: str) -> Root | Targets:
        if role == "targets":
            return self.root.signed
        if role.startswith(f"{BINS}-"):
            return self.targets(BUNDLES).signed
        return self.targets("targets").signed

    def edit(self, role: str) -> Targets:
        md = self.targets(role)
        if role not in self.dirty:
            self.dirty.append(role)
        return md.signed

    def bin_for(self, path: str) -> str:
        succinct = self.targets(BUNDLES).signed.delegations.succinct_roles  # type: ignore[union-attr]
        return succinct.get_role_for_target(path)

    def role_for(self, path: str) -> str:
        if path.startswith(("bundles/", "index/")):
            return self.bin_for(path)
        cohort = path.split("/")[1]
        return cohort_role(cohort)

    def put_target(self, path: str, data: bytes, custom: Any = None) -> TargetFile:
        """Upload a target (content-addressed, so re-uploading is harmless) and list it."""
        info = TargetFile.from_data(path, data, ["sha256"])
        if custom is not None:
            info.unrecognized_fields["custom"] = custom
        key = target_key(path, info.hashes["sha256"])
        if not self.store.exists(key):
            self.store.put(key, data)
        role = self.edit(self.role_for(path))
        role.targets[path] = info
        return info

    def target_info(self, path: str) -> TargetFile | None:
        return self.targets(self.role_for(path)).signed.targets.get(path)

    def read_target(self, path: str) -> bytes | None:
        """A target's bytes, checked against the signed length and hash; None if unlisted."""
        info = self.target_info(path)
        if info is None:
            return None
        data = self.store.get(target_key(path, info.hashes["sha256"]))
        try:
            info.verify_length_and_hashes(data)
        except LengthOrHashMismatchError as exc:
            raise IntegrityError(f"target {path}: {exc}") from exc
        return data

    def channel_custom(self, cohort: str) -> dict[str, Any] | None:
        info = self.targets(cohort_role(cohort)).signed.targets.get(channel_path(cohort))
        return dict(info.custom["edgeops"]) if info is not None and info.custom else None

    def next_version(self, role: str) -> int:
        """The first version above the current one with no file yet (a crashed writer may
        have left an uncommitted one behind; it is never referenced and never reused)."""
        if role in self.versions:
            return self.versions[role]
        if role == "snapshot":
            current = self.snapshot.signed.version
        elif f"{role}.json" not in self.snapshot.signed.meta:
            current = 0  # a role this transaction creates
        else:
            current = self.targets(role).signed.version
        v = current + 1
        while self.store.exists(f"{META_PREFIX}{v}.{role}.json"):
            v += 1
        self.versions[role] = v
        return v

    def commit(self) -> bool:
        if not (self.dirty or self.force_snapshot or self.force_timestamp or self.stale_timestamp):
            return False
        repo, now = self.repo, self.repo.clock()
        snap = self.snapshot.signed
        if self.dirty or self.force_snapshot:
            for role in self.dirty:
                md = self.roles[role]
                md.signed.version = self.next_version(role)
                md.signed.expires = now + repo.lifetimes.of(role)
                repo.write_new(role, md)
                snap.meta[f"{role}.json"] = MetaFile(version=md.signed.version)
            snap.version = self.next_version("snapshot")
            snap.expires = now + repo.lifetimes.snapshot
            repo.write_new("snapshot", self.snapshot)
        ts = self.timestamp.signed
        ts.snapshot_meta = MetaFile(version=snap.version)
        ts.version = max(ts.version, repo.keystore.seen(repo.store.url).get("timestamp", 0)) + 1
        ts.expires = now + repo.lifetimes.timestamp
        repo.sign(self.timestamp, "timestamp")
        self.store.put_if_match(
            f"{META_PREFIX}timestamp.json", self.timestamp.to_bytes(_COMPACT), self.ts_etag
        )
        repo.keystore.save_seen(repo.store.url, {"timestamp": ts.version, "snapshot": snap.version})
        return True


@dataclass
class TufRepository:
    store: ObjectStore
    keystore: Keystore
    clock: Callable[[], datetime] = utcnow
    lifetimes: Lifetimes = Lifetimes()
    retries: int = 60

    # --- signing and writing ----------------------------------------------------------
    def sign(self, md: Metadata[Any], group: str) -> None:
        signers = self.keystore.signers(group)
        md.signatures.clear()
        for signer in signers:
            md.sign(signer, append=True)

    def write_new(self, role: str, md: Metadata[Any]) -> None:
        """Sign and write `<v>.<role>.json`, only if no such file exists (ConflictError)."""
        self.sign(md, key_group(role))
        self.store.put_if_match(
            f"{META_PREFIX}{md.signed.version}.{role}.json", md.to_bytes(_COMPACT), None
        )

    # --- reading: the root chain, then timestamp and snapshot -------------------------
    def root(self) -> Metadata[Root]:
        """The newest root reachable from this machine's trusted one, each step verified by
        the previous root's threshold and its own (TUF's root rotation)."""
        trusted = parse(self.keystore.trusted_root(), "root", Root)
        while True:
            v = trusted.signed.version + 1
            try:
                data = self.store.get(f"{META_PREFIX}{v}.root.json")
            except MissingKeyError:
                return trusted
            new = parse(data, "root", Root)
            verify(trusted.signed, "root", new)
            verify(new.signed, "root", new)
            if new.signed.version != v:
                raise IntegrityError(f"root file {v} holds version {new.signed.version}")
            trusted = new
            self.keystore.save_root(data)

    def begin(self, root: Metadata[Root] | None = None) -> Txn:
        root = root or self.root()
        seen = self.keystore.seen(self.store.url)
        try:
            data, etag = self.store.get_with_etag(f"{META_PREFIX}timestamp.json")
        except MissingKeyError:
            raise ConfigError(
                "the store holds no update channel (tuf/metadata/timestamp.json); "
                "run `edgeops keys init`", where=self.store.url
            ) from None
        ts = parse(data, "timestamp", Timestamp)
        verify(root.signed, "timestamp", ts)
        snap_v = ts.signed.snapshot_meta.version
        stale = ts.signed.version < seen.get("timestamp", 0) or snap_v < seen.get("snapshot", 0)
        if stale:  # a replayed old timestamp: build on the newest snapshot this machine saw
            snap_v = max(snap_v, seen.get("snapshot", 0))
        try:
            sdata = self.store.get(f"{META_PREFIX}{snap_v}.snapshot.json")
        except MissingKeyError:
            raise IntegrityError(f"snapshot version {snap_v} is missing from the store") from None
        snap = parse(sdata, "snapshot", Snapshot)
        verify(root.signed, "snapshot", snap)
        if snap.signed.version != snap_v:
            raise IntegrityError(f"snapshot file {snap_v} holds version {snap.signed.version}")
        return Txn(self, root, ts, etag, snap, stale_timestamp=stale)

    def transact(self, change: Callable[[Txn], T]) -> T:
        """Run `change` on a fresh verified view and commit; on a lost race, run it again."""
        for attempt in range(self.retries):
            txn = self.begin()
            result = change(txn)
            try:
                txn.commit()
                return result
            except ConflictError:
                time.sleep(random.uniform(0, 0.01 * (attempt + 1)))
        raise ConflictError(f"update channel kept changing under us {self.retries} times", where=self.store.url)

    def exists(self) -> bool:
        return self.store.exists(f"{META_PREFIX}1.root.json")

    # --- creating a channel --------------------------------------------------------------
    def init(
        self,
        cohorts: list[str],
        *,
        counts: dict[str, int] | None = None,
        thresholds: dict[str, int] | None = None,
        bin_bits: int = 5,
    ) -> None:
        """Root v1 and every role at version 1; keys of a group are generated only when this
        keystore holds none. Refuses a store that already has a channel."""
        if self.exists():
            raise ConfigError("the store already holds an update channel", where=self.store.url)
        counts, thresholds = counts or {}, thresholds or {}
        keys = {}
        for group in GROUPS:
            signers = self.keystore.signers(group, required=False)
            if not signers:
                signers = [self.keystore.generate(group) for _ in range(counts.get(group, 1))]
            if thresholds.get(group, 1) > len(signers):
                raise ConfigError(f"{group} threshold {thresholds[group]} exceeds its {len(signers)} keys")
            keys[group] = [s.public_key for s in signers]
        now, lt = self.clock(), self.lifetimes
        root = Metadata(Root(expires=now + lt.root, consistent_snapshot=True))
        for role in TOP:
            for key in keys[role]:
                root.signed.add_key(key, role)
            root.signed.roles[role].threshold = thresholds.get(role, 1)
        release = {k.keyid: k for k in keys["release"]}
        rt = thresholds.get("release", 1)
        targets = Metadata(Targets(expires=now + lt.targets))
        roles = {
            cohort_role(c): DelegatedRole(cohort_role(c), list(release), rt, True, [f"cohorts/{c}/*"])
            for c in sorted(cohorts)
        }
        roles[BUNDLES] = DelegatedRole(BUNDLES, list(release), rt, True, ["bundles/*/*", "index/*/*/*"])
        targets.signed.delegations = Delegations(dict(release), roles=roles)
        bundles = Metadata(Targets(expires=now + lt.delegated))
        succinct = SuccinctRoles(list(release), rt, bin_bits, BINS)
        bundles.signed.delegations = Delegations(dict(release), succinct_roles=succinct)
        delegated = {name: Metadata(Targets(expires=now + lt.delegated)) for name in roles}
        delegated[BUNDLES] = bundles
        delegated.update({b: Metadata(Targets(expires=now + lt.delegated)) for b in succinct.get_roles()})
        self.write_new("root", root)  # the lock: a second init loses here
        self.keystore.save_root(root.to_bytes(_COMPACT))
        self.write_new("targets", targets)
        snapshot = Metadata(Snapshot(expires=now + lt.snapshot))
        for name, md in delegated.items():
            self.write_new(name, md)
            snapshot.signed.meta[f"{name}.json"] = MetaFile(version=1)
        self.write_new("snapshot", snapshot)
        ts = Metadata(Timestamp(expires=now + lt.timestamp, snapshot_meta=MetaFile(version=1)))
        self.sign(ts, "timestamp")
        self.store.put_if_match(f"{META_PREFIX}timestamp.json", ts.to_bytes(_COMPACT), None)
        self.keystore.save_seen(self.store.url, {"timestamp": 1, "snapshot": 1}, reset=True)

    def add_cohorts(self, cohorts: list[str]) -> list[str]:
        """Delegate new cohorts (signs targets: the offline targets key must be here)."""

        def change(txn: Txn) -> list[str]:
            delegations = txn.targets("targets").signed.delegations
            assert delegations is not None and delegations.roles is not None
            new = [c for c in cohorts if cohort_role(c) not in delegations.roles]
            if not new:
                return []
            template = delegations.roles[BUNDLES]
            targets = txn.edit("targets")
            roles = dict(delegations.roles)
            bundles = roles.pop(BUNDLES)
            for c in new:
                roles[cohort_role(c)] = DelegatedRole(
                    cohort_role(c), list(template.keyids), template.threshold, True, [f"cohorts/{c}/*"]
                )
                md = Metadata(Targets(expires=self.clock()))  # new: version 1 at commit
                txn.roles[cohort_role(c)] = md
                txn.dirty.append(cohort_role(c))
            roles[BUNDLES] = bundles
            targets.delegations = Delegations(delegations.keys, roles=roles)
            return new

        return self.transact(change)

    def cohorts(self, txn: Txn) -> list[str]:
        return sorted(r.removeprefix("cohort-") for r in txn.role_names() if r.startswith("cohort-"))

    def refresh(self, within: timedelta | None = None) -> dict[str, Any]:
        """Renew the timestamp, and every online-signed role expiring within `within`
        (default: half its lifetime). Offline roles close to expiry are reported."""

        def change(txn: Txn) -> dict[str, Any]:
            now = self.clock()
            renewed, warn = [], []
            for role in txn.role_names():
                margin = within if within is not None else self.lifetimes.of(role) / 2
                if txn.targets(role).signed.expires - now > margin:
                    continue
                if role == "targets":
                    warn.append("targets (offline key: renew it where the targets key is kept)")
                else:
                    txn.edit(role)
                    renewed.append(role)
            margin = within if within is not None else self.lifetimes.snapshot / 2
            txn.force_snapshot = txn.snapshot.signed.expires - now <= margin
            txn.force_timestamp = True
            if txn.root.signed.expires - now <= (within or self.lifetimes.root / 4):
                warn.append("root (offline key)")
            return {"renewed": renewed, "snapshot": txn.force_snapshot, "expiring_offline": warn}

        out = self.transact(change)
        txn = self.begin()
        out["timestamp_version"] = txn.timestamp.signed.version
        out["timestamp_expires"] = txn.timestamp.signed.expires.isoformat()
        return out

    def export_root(self) -> bytes:
        """The newest verified root: what a device (or any TUF client) starts trusting."""
        return self.root().to_bytes(_COMPACT)

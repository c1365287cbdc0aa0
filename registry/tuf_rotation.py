"""Key rotation in the update channel, the TUF way.

- `root`: root v+1 lists new root keys and is signed by the old root keys (their threshold)
  and the new ones; a device holding any older root reaches the newest through the chain.
- `targets`, `snapshot`, `timestamp`: root v+1 replaces the group's keys (signed by root), then
  the role is re-signed with the new key in one channel transaction.
- `release`: targets (offline key) delegates the cohort, bundles and bin roles to the new key,
  and every one of them is re-signed in the same transaction, so devices that trust only the
  new key keep every bundle.

The revoked private keys are deleted from this keystore. A revoked key stays revoked: only
signed root or targets metadata names keys, and no client accepts an older version of either.
"""

from __future__ import annotations

from copy import deepcopy

from tuf.api.metadata import Metadata, Root

from edgeops.errors import ConfigError, ConflictError
from registry.tuf_keys import GROUPS
from registry.tuf_repo import BUNDLES, TOP, TufRepository, Txn


def _new_root(repo: TufRepository, old: Metadata[Root], group: str) -> tuple[Metadata[Root], list[str]]:
    md: Metadata[Root] = deepcopy(old)
    root = md.signed
    old_ids = list(root.roles[group].keyids)
    new = [repo.keystore.generate(group) for _ in old_ids]
    for keyid in old_ids:
        root.revoke_key(keyid, group)
    for signer in new:
        root.add_key(signer.public_key, group)
    root.version += 1
    root.expires = repo.clock() + repo.lifetimes.root
    repo.write_new("root", md)  # signed by every root key held here: old and new
    repo.keystore.save_root(md.to_bytes())
    return md, old_ids


def _resign(repo: TufRepository, verify_root: Metadata[Root], change) -> None:  # type: ignore[no-untyped-def]
    for _ in range(repo.retries):
        txn = repo.begin(verify_root)
        change(txn)
        try:
            txn.commit()
            return
        except ConflictError:
            continue
    raise ConflictError("the channel kept changing during key rotation; re-run it", where=repo.store.url)


def rotate(repo: TufRepository, group: str) -> str:
    if group not in GROUPS:
        raise ConfigError(f"unknown key group {group!r}; groups: {', '.join(GROUPS)}")
    repo.keystore.signers("root" if group in TOP else "targets")  # fail early, one line
    old_root = repo.root()
    if group in TOP:
        new_root, revoked = _new_root(repo, old_root, group)
        for keyid in revoked:
            repo.keystore.retire(group, keyid)
        if group != "root":

            def change(txn: Txn) -> None:
                if group == "targets":
                    txn.edit("targets")
                txn.force_snapshot = True
                txn.force_timestamp = True

            _resign(repo, old_root, change)
        return f"{group}: revoked {len(revoked)} key(s); root is now v{new_root.signed.version}"
    return _rotate_release(repo)


def _rotate_release(repo: TufRepository) -> str:
    old = [s.public_key.keyid for s in repo.keystore.signers("release")]
    new = [repo.keystore.generate("release") for _ in old]
    keys = {s.public_key.keyid: s.public_key for s in new}

    def change(txn: Txn) -> None:
        names = [r for r in txn.role_names() if r != "targets"]
        for role in [BUNDLES, *names]:  # load (verify) with the old delegations first
            txn.targets(role)
        delegations = txn.edit("targets").delegations
        assert delegations is not None and delegations.roles is not None
        delegations.keys = dict(keys)
        for role in delegations.roles.values():
            role.keyids = list(keys)
        bundles = txn.edit(BUNDLES).delegations
        assert bundles is not None and bundles.succinct_roles is not None
        bundles.keys = dict(keys)
        bundles.succinct_roles.keyids = list(keys)
        for role in names:
            txn.edit(role)

    for keyid in old:  # sign only with the new key from here on
        repo.keystore.retire("release", keyid)
    repo.transact(change)
    return f"release: {len(old)} key(s) revoked, every delegated role re-signed"

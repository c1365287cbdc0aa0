"""Cohort manifests: read and verify, and update through a compare-and-swap loop.

Every update re-reads the signed manifest with its ETag, applies the caller's change, bumps the
revision by one, stamps a fresh expiry, signs, and writes with `put_if_match`. Two release
managers (or the controller and a human) acting at once both succeed in turn; neither update is
lost. After `retries` lost races the caller gets `ConflictError`.
"""

from __future__ import annotations

import random
import secrets
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from device.protocol import (
    BundleRef,
    Manifest,
    canonical_json,
    format_time,
    utcnow,
    verify_manifest,
)
from device.store import MissingKeyError, ObjectStore
from edgeops.errors import ConflictError
from registry.keys import SigningKey, load_trusted_keys

DEFAULT_TTL = timedelta(days=30)
Clock = Callable[[], datetime]


def manifest_key(cohort: str) -> str:
    return f"manifests/{cohort}.json"


def _trusted(store: ObjectStore, signing_key: SigningKey | None) -> dict[str, Ed25519PublicKey]:
    trusted = load_trusted_keys(store)
    if signing_key is not None:
        trusted[signing_key.key_id] = signing_key.public_key
    return trusted


def read_manifest_with_etag(
    store: ObjectStore,
    cohort: str,
    trusted: dict[str, Ed25519PublicKey],
    *,
    now: datetime | None = None,
    allow_expired: bool = False,
) -> tuple[Manifest | None, str | None]:
    """(manifest, etag), or (None, None) when the cohort has none yet. Signature always checked;
    expiry too unless `allow_expired` (the registry may renew an expired manifest)."""
    try:
        data, etag = store.get_with_etag(manifest_key(cohort))
    except MissingKeyError:
        return None, None
    if allow_expired:
        now = datetime.min.replace(tzinfo=(now or utcnow()).tzinfo)
    return verify_manifest(data, trusted, cohort=cohort, now=now), etag


def read_manifest(
    store: ObjectStore,
    cohort: str,
    trusted: dict[str, Ed25519PublicKey],
    *,
    now: datetime | None = None,
) -> Manifest | None:
    return read_manifest_with_etag(store, cohort, trusted, now=now)[0]


def update_manifest(
    store: ObjectStore,
    cohort: str,
    mutate: Callable[[Manifest | None], Manifest | None],
    signing_key: SigningKey,
    *,
    ttl: timedelta = DEFAULT_TTL,
    clock: Clock = utcnow,
    retries: int = 10,
    trusted: dict[str, Ed25519PublicKey] | None = None,
) -> Manifest | None:
    """Apply `mutate` to the current manifest (None when there is none) and write revision + 1.

    `mutate` is called once per attempt, after the read, so it must derive its answer from its
    argument (or from state it re-reads itself). Returning None leaves the manifest as it is
    (and returns the current one, None if the cohort has none).
    """
    trusted = trusted if trusted is not None else _trusted(store, signing_key)
    for attempt in range(retries):
        current, etag = read_manifest_with_etag(store, cohort, trusted, allow_expired=True)
        changed = mutate(current)
        if changed is None:
            return current
        now = clock()
        new = replace(
            changed,
            cohort=cohort,
            revision=(current.revision if current else 0) + 1,
            issued_at=format_time(now),
            expires_at=format_time(now + ttl),
        )
        try:
            store.put_if_match(
                manifest_key(cohort), canonical_json(signing_key.sign(new.to_dict())), etag
            )
            return new
        except ConflictError:
            time.sleep(random.uniform(0, 0.02 * (attempt + 1)))
    raise ConflictError(
        f"manifest for cohort {cohort!r} changed under us {retries} times; re-read and retry",
        where=store.url,
    )


def empty_manifest(cohort: str) -> Manifest:
    return Manifest(cohort=cohort, revision=0, issued_at="", expires_at="", salt=new_salt())


def new_salt() -> str:
    return secrets.token_hex(8)


def set_stable(
    store: ObjectStore, cohort: str, ref: BundleRef, signing_key: SigningKey, **kwargs: object
) -> Manifest:
    """Point the cohort at `ref` as stable and clear any candidate (first publish, completion)."""

    def mutate(m: Manifest | None) -> Manifest:
        base = m or empty_manifest(cohort)
        return replace(base, stable=ref, candidate=None, percentage=0.0)

    manifest = update_manifest(store, cohort, mutate, signing_key, **kwargs)  # type: ignore[arg-type]
    assert manifest is not None  # mutate always returns a manifest
    return manifest

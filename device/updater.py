"""Fetching, verifying, opening and installing bundles: every check before a model may serve.

Order matters: TUF (device/channel.py) verifies the channel and every file it downloads
(signatures, versions, expiry, length capped while streaming, sha256); then the bundle's
metadata.json must hash to the bundle id the channel named, the channel's version and target
must match the metadata's, every file's size and sha256 the metadata's; decryption with the
provisioned key and the plaintext hash; the model file is inflated from zstd (device.wire) only
up to the size its signed entry names and this device's model cap, and must hash to the signed
content sha256 where the metadata carries one; the preprocessing spec's hash; the interpreter loads;
the device's profile can run it; a smoke inference. Only then is it written to disk and
swapped in, with the previous model kept as the fallback slot. A bundle on disk is
re-verified from its id alone (content address), so a device can serve it offline.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from device.capabilities import CapabilityError, DeviceCaps, check_capabilities, load_runner
from device.channel import ChannelSession
from device.encryption import open_model
from device.preprocessing import PreprocessingSpec, normalize
from device.protocol import (
    BundleMetadata,
    BundleRef,
    check_file,
    verify_bundle_metadata,
)
from device.runtime import RuntimeLoadError, TFLiteRunner
from device.state import read_state, write_state
from device.wire import decode
from edgeops.errors import DataError, IntegrityError

PREPROCESSING_FILE = "preprocessing.json"
METADATA_FILE = "metadata.json"

@dataclass(frozen=True)
class VerifiedBundle:
    """A bundle whose id (sha256 of metadata.json) and file hashes checked out."""

    bundle_id: str
    metadata: BundleMetadata
    metadata_json: bytes
    files: dict[str, bytes]


@dataclass(frozen=True)
class LoadedModel:
    """A bundle ready to serve on this device."""

    bundle_id: str
    metadata: BundleMetadata
    spec: PreprocessingSpec
    runner: TFLiteRunner
    memory_bytes: int
    model_size: int


def verify_bundle(metadata_json: bytes, files: Mapping[str, bytes], ref: BundleRef) -> VerifiedBundle:
    meta = verify_bundle_metadata(metadata_json, ref.bundle_id)
    if (meta.model_version, meta.target) != (ref.model_version, ref.target):
        raise IntegrityError(
            f"channel names v{ref.model_version} {ref.target}, bundle holds v{meta.model_version} {meta.target}"
        )
    for name in (meta.model_file, PREPROCESSING_FILE):
        if name not in meta.files:
            raise IntegrityError(f"bundle metadata lists no {name}")
    for name in meta.files:
        if name not in files:
            raise IntegrityError(f"bundle file {name} is missing")
        check_file(meta, name, files[name])
    pre = hashlib.sha256(files[PREPROCESSING_FILE]).hexdigest()
    if pre != meta.preprocessing_sha256:
        raise IntegrityError(f"preprocessing spec hash {pre[:12]} differs from the metadata's")
    return VerifiedBundle(ref.bundle_id, meta, metadata_json, {n: files[n] for n in meta.files})


def fetch_bundle(session: ChannelSession, ref: BundleRef) -> VerifiedBundle:
    """Download through TUF; metadata.json first, so nothing unlisted is ever fetched."""
    prefix = f"bundles/{ref.bundle_id}"
    metadata_json = session.download(f"{prefix}/{METADATA_FILE}")
    meta = verify_bundle_metadata(metadata_json, ref.bundle_id)
    files = {name: session.download(f"{prefix}/{name}") for name in meta.files}
    return verify_bundle(metadata_json, files, ref)


def open_bundle(
    vb: VerifiedBundle,
    caps: DeviceCaps,
    model_keys: Mapping[str, bytes],
    num_threads: int = 1,
    runners: MutableMapping[str, tuple[TFLiteRunner, tuple[int, int]]] | None = None,
) -> LoadedModel:
    """Decrypt, inflate, load the interpreter, check the profile, run once. `runners` lets a
    simulator share one interpreter among devices on the same bundle (each still verifies its
    copy). Bundles stay compressed (and sealed) at rest: re-verified from the id alone."""
    meta = vb.metadata
    model = vb.files[meta.model_file]
    if meta.encrypted:
        # unwrap the bundle's data key with the provisioned cohort key (device.encryption)
        model = open_model(model, model_keys, meta.encryption_key_id, meta.plaintext_sha256)
    # zstd on the wire: inflated under this device's model cap (a zip bomb never allocates); a
    # signed model that is simply too big for this profile is a capability refusal, not tampering
    declared = meta.files[meta.model_file].get("content_size")
    if isinstance(declared, int) and declared > caps.max_model_bytes:
        raise CapabilityError(f"model is {declared} bytes, profile {caps.name} allows {caps.max_model_bytes}",
                              where=f"bundle {meta.model_name} v{meta.model_version} {meta.target}")
    model = decode(model, meta.files[meta.model_file], caps.max_model_bytes, f"bundle {vb.bundle_id[:12]}")
    try:
        spec = PreprocessingSpec.from_json(vb.files[PREPROCESSING_FILE])
    except DataError as exc:
        raise IntegrityError(f"bad preprocessing spec in bundle: {exc}") from exc
    cached = runners.get(vb.bundle_id) if runners is not None else None
    try:
        runner, (arena, memory) = cached or load_runner(caps, meta.target, model, num_threads)
    except (RuntimeLoadError, ValueError, RuntimeError) as exc:
        raise IntegrityError(f"interpreter cannot load the model: {exc}") from exc
    check_capabilities(caps, meta, runner, spec, len(model), arena)
    probs = runner.predict(normalize(np.full((1, *runner.input_shape), 0.5, np.float32), spec))
    if probs.shape != (1, len(spec.labels)) or not np.isfinite(probs).all():
        raise IntegrityError(
            f"smoke inference gave shape {probs.shape} for {len(spec.labels)} labels, or non-finite values"
        )
    if runners is not None:
        runners[vb.bundle_id] = (runner, (arena, memory))
    return LoadedModel(vb.bundle_id, meta, spec, runner, memory, len(model))


class ModelSlots:
    """On-disk state: verified bundles in `models/<id>/`, the current and previous slot, the
    last manifest revision seen and the telemetry sequence high-water mark (state.json)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.models = self.root / "models"
        self._path = self.root / "state.json"
        self.state: dict[str, Any] = {
            "current": None,
            "previous": None,
            "revision": None,
            "seq_reserved": 0,
        }
        loaded = read_state(self._path, self.state)  # a torn file is recovered (device.state)
        self.state, self.recovered = loaded.state, loaded.recovered

    def save(self) -> None:
        write_state(self._path, self.state)  # tmp + fsync + rename + directory fsync

    def write(self, vb: VerifiedBundle) -> None:
        """Write a verified bundle to its own directory (complete before it becomes visible)."""
        final = self.models / vb.bundle_id
        if final.exists():
            return
        tmp = self.models / f".tmp-{vb.bundle_id}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        (tmp / METADATA_FILE).write_bytes(vb.metadata_json)
        for name, data in vb.files.items():
            (tmp / name).write_bytes(data)
        os.replace(tmp, final)

    def ref(self, slot: str) -> BundleRef | None:
        return BundleRef.from_dict(self.state[slot])

    def activate(self, ref: BundleRef) -> None:
        """The swap: one atomic state write; everything but current and previous is pruned."""
        current = self.ref("current")
        if current != ref:
            self.state["previous"], self.state["current"] = self.state["current"], ref.to_dict()
        self.save()
        keep = {r.bundle_id for r in (self.ref("current"), self.ref("previous")) if r}
        for d in self.models.glob("*") if self.models.exists() else []:
            if d.name not in keep and not d.name.startswith(".tmp-"):
                shutil.rmtree(d, ignore_errors=True)

    def read(self, ref: BundleRef) -> VerifiedBundle:
        """Re-verify a stored bundle against its id (a file changed on disk is refused like a
        download); needs no network and no keys, so it serves offline."""
        bundle_id = ref.bundle_id
        d = self.models / bundle_id
        try:
            metadata_json = (d / METADATA_FILE).read_bytes()
            files = {p.name: p.read_bytes() for p in d.iterdir() if p.name != METADATA_FILE}
        except OSError as exc:
            raise IntegrityError(f"stored bundle {bundle_id[:12]} unreadable: {exc}") from exc
        return verify_bundle(metadata_json, files, ref)

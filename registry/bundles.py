"""Bundles: what a device downloads, content-addressed and listed in the TUF channel.

A bundle is the TUF targets `bundles/<bundle_id>/<name>`: the model file, preprocessing.json,
labels.json and metadata.json (`BundleMetadata`: sha256 and size of every other file). The
bundle id is the sha256 of metadata.json, so the id pins every byte. All files and the index
entry `index/<model>/<version>/<target>[@enc].json` (which bundle a registry version was
published as) are added in one channel transaction: devices and the release side see a bundle
whole or not at all, and only through signed metadata. Re-publishing the same inputs returns
the same bundle (idempotent): nothing in the metadata depends on the wall clock unless the
caller passes `created_at`; an encrypted variant (sealed with a random data key,
device.encryption) is found by its index and reused.

The model file is stored and downloaded zstd-compressed (device.wire), sealed after compressing
for an encrypted cohort (ciphertext does not compress); its signed entry names the coding and
the inflated size (and the inflated sha256 when not encrypted), so what a device downloads is
the wire bytes selection ranked and every byte of it is covered by the signed hashes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from device.channel import target_key
from device.encryption import kek_id, open_model, seal
from device.preprocessing import PreprocessingSpec
from device.protocol import (
    BundleMetadata,
    BundleRef,
    bundle_id_of,
    canonical_json,
    check_file,
    encryption_key_id,
    verify_bundle_metadata,
)
from device.store import MissingKeyError, ObjectStore
from device.wire import DEFAULT_MAX_BYTES, content_entry, decode
from device.wire import compress as wire_compress
from edgeops.errors import IntegrityError, RegistryError
from registry.tuf_repo import TufRepository, Txn

MIN_AGENT_VERSION = "0.1.0"
_MODEL_FILES = {"onnx": "model.onnx"}


@dataclass(frozen=True)
class Bundle:
    ref: BundleRef
    metadata: BundleMetadata
    files: dict[str, bytes]

    @property
    def model_bytes(self) -> bytes:
        """The model as a runtime loads it (decrypted and inflated by read_bundle)."""
        return self.files[self.metadata.model_file]

    @property
    def wire_bytes(self) -> int:
        """What a device downloads for the model file (compressed, sealed when encrypted)."""
        return int(self.metadata.files[self.metadata.model_file]["size"])


def model_file_name(target: str, encrypted: bool) -> str:
    name = _MODEL_FILES.get(target, "model.tflite")
    return f"{name}.enc" if encrypted else name


def io_spec(model: bytes, target: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Input and output tensor specs (shape, dtype, quantisation) read from the model itself."""
    if target.startswith("tflite"):
        from device.runtime import TFLiteRunner

        runner = TFLiteRunner(model)

        def spec(d: dict[str, Any]) -> dict[str, Any]:
            scale, zero = d["quantization"]
            return {
                "name": d["name"],
                "shape": [int(v) for v in d["shape"]],
                "dtype": d["dtype"].__name__ if isinstance(d["dtype"], type) else str(d["dtype"]),
                "scale": float(scale),
                "zero_point": int(zero),
            }

        return spec(runner.input_details[0]), spec(runner.output_details[0])
    if target == "onnx":
        import onnx

        graph = onnx.load_from_string(model).graph

        def onnx_spec(v: Any) -> dict[str, Any]:
            t = v.type.tensor_type
            shape = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
            return {
                "name": v.name,
                "shape": shape,
                "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name,
            }

        return onnx_spec(graph.input[0]), onnx_spec(graph.output[0])
    return {}, {}


def _index_key(model_name: str, model_version: str, target: str, enc_id: str | None) -> str:
    suffix = f"@{enc_id}" if enc_id else ""
    return f"index/{model_name}/{model_version}/{target}{suffix}.json"


def publish_bundle(
    repo: TufRepository,
    model_path: Path | str,
    spec: PreprocessingSpec,
    *,
    model_name: str,
    model_version: str | int,
    target: str,
    min_agent_version: str = MIN_AGENT_VERSION,
    encryption_key: bytes | None = None,
    created_at: str | None = None,
    wire_level: int | None = None,
) -> BundleRef:
    """Sign and upload one variant, its model file zstd-compressed (`wire_level`, default
    device.wire's); returns the ref a manifest names. Idempotent."""
    model_version = str(model_version)
    if encryption_key is not None:  # sealing is random: a published variant is reused
        try:
            return find_bundle(repo, model_name, model_version, target, encryption_key)
        except RegistryError:
            pass
    plaintext = Path(model_path).read_bytes()
    input_spec, output_spec = io_spec(plaintext, target)
    enc_id = encryption_key_id(encryption_key) if encryption_key else None
    packed = wire_compress(plaintext) if wire_level is None else wire_compress(plaintext, wire_level)
    # a random data key per bundle, wrapped with the cohort key (device.encryption)
    model_blob = seal(packed, encryption_key) if encryption_key else packed
    model_file = model_file_name(target, encrypted=encryption_key is not None)
    files = {
        model_file: model_blob,
        "preprocessing.json": spec.to_json().encode(),
        "labels.json": json.dumps(list(spec.labels)).encode(),
    }
    if target == "onnx":  # the page that runs it in a browser (the web cohort; components.web_target)
        from components.web_target import PAGE_FILE, page

        files[PAGE_FILE] = page()
    metadata = BundleMetadata(
        model_name=model_name,
        model_version=model_version,
        target=target,
        files={
            n: {"sha256": hashlib.sha256(b).hexdigest(), "size": len(b)}
            | (content_entry(plaintext, with_hash=encryption_key is None) if n == model_file else {})
            for n, b in files.items()
        },
        model_file=model_file,
        input_spec=input_spec,
        output_spec=output_spec,
        preprocessing_sha256=hashlib.sha256(files["preprocessing.json"]).hexdigest(),
        min_agent_version=min_agent_version,
        encrypted=encryption_key is not None,
        encryption_key_id=enc_id,
        # never in clear for an encrypted model: the AEAD tag and the signed file hash cover it
        plaintext_sha256=None if encryption_key else hashlib.sha256(plaintext).hexdigest(),
        created_at=created_at or "",
    )
    meta_json = canonical_json(metadata.to_dict())
    ref = BundleRef(bundle_id_of(meta_json), model_version, target)
    index = _index_key(model_name, model_version, target, enc_id)
    files["metadata.json"] = meta_json

    def change(txn: Txn) -> None:
        for name, data in files.items():
            path = f"bundles/{ref.bundle_id}/{name}"
            if txn.target_info(path) is None:
                txn.put_target(path, data)
        info = txn.target_info(index)
        if info is None or (info.custom or {}).get("edgeops") != ref.to_dict():
            txn.put_target(index, canonical_json(ref.to_dict()), {"edgeops": ref.to_dict()})

    repo.transact(change)
    return ref


def find_bundle(
    repo: TufRepository,
    model_name: str,
    model_version: str | int,
    target: str,
    encryption_key: bytes | None = None,
    txn: Txn | None = None,
) -> BundleRef:
    """The bundle published for a registry version, from the signed index (what a rollout
    plan resolves); an index entry planted in the store without the release key is refused."""
    enc_id = encryption_key_id(encryption_key) if encryption_key else None
    path = _index_key(model_name, str(model_version), target, enc_id)
    txn = txn or repo.begin()
    info = txn.target_info(path)
    if info is None:
        raise RegistryError(
            f"no bundle published for {model_name} version {model_version} ({target}"
            f"{', encrypted' if enc_id else ''})",
            where=repo.store.url,
        )
    ref = BundleRef.from_dict((info.custom or {}).get("edgeops"))
    if ref is None:
        raise IntegrityError(f"index entry {path} names no bundle")
    return ref


def bundle_metadata(store: ObjectStore, bundle_id: str) -> BundleMetadata:
    """A bundle's metadata by id alone: metadata.json is stored under its own sha256, which is
    the id, so whoever holds a verified id verifies the metadata (and through it every file)."""
    try:
        data = store.get(target_key(f"bundles/{bundle_id}/metadata.json", bundle_id))
    except MissingKeyError:
        raise RegistryError(f"no bundle {bundle_id[:12]} in the store", where=store.url) from None
    return verify_bundle_metadata(data, bundle_id)


def bundle_file(store: ObjectStore, bundle_id: str, name: str) -> bytes:
    """One file of a bundle, checked against the metadata's size and sha256."""
    meta = bundle_metadata(store, bundle_id)
    info = meta.files.get(name)
    if info is None:
        raise IntegrityError(f"bundle {bundle_id[:12]} has no file {name}")
    data = store.get(target_key(f"bundles/{bundle_id}/{name}", str(info["sha256"])))
    check_file(meta, name, data)
    return data


def read_bundle(
    repo: TufRepository,
    ref: BundleRef | str,
    *,
    encryption_key: bytes | None = None,
    txn: Txn | None = None,
    max_model_bytes: int = DEFAULT_MAX_BYTES,
) -> Bundle:
    """Download and verify a bundle through the channel; decrypts the model when keyed and
    inflates it (device.wire: the signed size under `max_model_bytes`, the signed hash)."""
    bundle_id = ref if isinstance(ref, str) else ref.bundle_id
    txn = txn or repo.begin()
    data = txn.read_target(f"bundles/{bundle_id}/metadata.json")
    if data is None:
        raise IntegrityError(f"the channel lists no bundle {bundle_id[:12]}")
    metadata = verify_bundle_metadata(data, bundle_id)
    files = {}
    for name in metadata.files:
        blob = txn.read_target(f"bundles/{bundle_id}/{name}")
        if blob is None:
            raise IntegrityError(f"the channel lists no file {name} of bundle {bundle_id[:12]}")
        check_file(metadata, name, blob)
        files[name] = blob
    if metadata.encrypted:
        if encryption_key is None:
            raise IntegrityError(
                f"bundle {bundle_id[:12]} is encrypted and no cohort key was given"
            )
        plain = open_model(
            files[metadata.model_file],
            {kek_id(encryption_key): encryption_key},
            metadata.encryption_key_id,
            metadata.plaintext_sha256,
        )
        files[metadata.model_file] = plain
    model_file = metadata.model_file
    where = f"bundle {bundle_id[:12]} {model_file}"
    files[model_file] = decode(files[model_file], metadata.files[model_file], max_model_bytes, where)
    return Bundle(BundleRef(bundle_id, metadata.model_version, metadata.target), metadata, files)

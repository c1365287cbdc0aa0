"""Bundles: what a device downloads, content-addressed and signed.

`bundles/<bundle_id>/` holds the model file, preprocessing.json, labels.json and metadata.json
(a signed `BundleMetadata` envelope with sha256 and size of every file). The bundle id is the
sha256 of the canonical signed metadata, so the id names the content. metadata.json is written
last: a bundle without it is incomplete and devices never see it (manifests only name finished
bundles). Re-publishing the same inputs returns the same bundle (idempotent): nothing in the
signed metadata depends on the wall clock unless the caller passes `created_at`; an encrypted
variant (sealed with a random data key, device.encryption) is found by its index and reused.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

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
from edgeops.errors import IntegrityError, RegistryError
from registry.keys import SigningKey

MIN_AGENT_VERSION = "0.1.0"
_MODEL_FILES = {"onnx": "model.onnx"}


@dataclass(frozen=True)
class Bundle:
    ref: BundleRef
    metadata: BundleMetadata
    files: dict[str, bytes]

    @property
    def model_bytes(self) -> bytes:
        return self.files[self.metadata.model_file]


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
    store: ObjectStore,
    signing_key: SigningKey,
    model_path: Path | str,
    spec: PreprocessingSpec,
    *,
    model_name: str,
    model_version: str | int,
    target: str,
    min_agent_version: str = MIN_AGENT_VERSION,
    encryption_key: bytes | None = None,
    created_at: str | None = None,
) -> BundleRef:
    """Sign and upload one variant; returns the ref a manifest names. Idempotent."""
    model_version = str(model_version)
    if encryption_key is not None:  # sealing is random: a published variant is reused
        try:
            return find_bundle(store, model_name, model_version, target, encryption_key)
        except RegistryError:
            pass
    plaintext = Path(model_path).read_bytes()
    input_spec, output_spec = io_spec(plaintext, target)
    enc_id = encryption_key_id(encryption_key) if encryption_key else None
    # a random data key per bundle, wrapped with the cohort key (device.encryption)
    model_blob = seal(plaintext, encryption_key) if encryption_key else plaintext
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
            n: {"sha256": hashlib.sha256(b).hexdigest(), "size": len(b)} for n, b in files.items()
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
    envelope = signing_key.sign(metadata.to_dict())
    bundle_id = bundle_id_of(envelope)
    ref = BundleRef(bundle_id, model_version, target)
    prefix = f"bundles/{bundle_id}"
    if not store.exists(f"{prefix}/metadata.json"):
        for name, data in files.items():
            store.put(f"{prefix}/{name}", data)
        store.put(f"{prefix}/metadata.json", canonical_json(envelope))
    store.put(_index_key(model_name, model_version, target, enc_id), canonical_json(ref.to_dict()))
    return ref


def find_bundle(
    store: ObjectStore,
    model_name: str,
    model_version: str | int,
    target: str,
    encryption_key: bytes | None = None,
) -> BundleRef:
    """The bundle published for a registry version (what a rollout plan resolves)."""
    enc_id = encryption_key_id(encryption_key) if encryption_key else None
    key = _index_key(model_name, str(model_version), target, enc_id)
    try:
        ref = BundleRef.from_dict(json.loads(store.get(key)))
    except MissingKeyError:
        raise RegistryError(
            f"no bundle published for {model_name} version {model_version} ({target}"
            f"{', encrypted' if enc_id else ''})",
            where=store.url,
        ) from None
    assert ref is not None
    return ref


def read_bundle(
    store: ObjectStore,
    ref: BundleRef | str,
    trusted: dict[str, Ed25519PublicKey],
    *,
    encryption_key: bytes | None = None,
) -> Bundle:
    """Download and verify a bundle exactly as a device does; decrypts the model when keyed."""
    bundle_id = ref if isinstance(ref, str) else ref.bundle_id
    prefix = f"bundles/{bundle_id}"
    metadata = verify_bundle_metadata(store.get(f"{prefix}/metadata.json"), trusted, bundle_id)
    files = {}
    for name in metadata.files:
        data = store.get(f"{prefix}/{name}")
        check_file(metadata, name, data)
        files[name] = data
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
    return Bundle(BundleRef(bundle_id, metadata.model_version, metadata.target), metadata, files)

"""Register every verified variant in MLflow and publish the chosen one per cohort.

Registration: one registered model per target (`<model>-<target>`), a version per release with
lineage tags; `releasable=true` only with a passing blessing (the registry refuses otherwise).
Publishing: a signed bundle per (variant, cohort encryption), then per cohort either the first
stable manifest or, when the cohort already runs a stable, a staged rollout whose first step is
a canary. Nothing unblessed is published.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from flows.tracking import log_batch

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from components.conversion import Variant
    from components.prepare import PreparedData
    from components.profiles import DeviceCatalog
    from edgeops.params import PipelineParams
    from edgeops.settings import Settings
    from registry.data_versions import DataVersion


def register(
    client: MlflowClient,
    stage_run_id: str,
    parent_run_id: str,
    model_name: str,
    variants: dict[str, Variant],
    selection: dict[str, Any],
    prepared: PreparedData,
    data_version: DataVersion,
    float_model_uri: str,
    git_commit: str,
) -> dict[str, dict[str, Any]]:
    """Register each TFLite variant; returns {target: {name, version, blessed_for}}."""
    from components.blessing import Blessing
    from device.preprocessing import normalize
    from flows.report import version_notes
    from registry.mlflow_models import Lineage, loggable, register_variant

    lineage = Lineage(data_version=data_version.md5, git_commit=git_commit, run_id=parent_run_id,
                      parent_model=float_model_uri)
    example = normalize(prepared.x_test[:2], prepared.spec)
    registered: dict[str, dict[str, Any]] = {}
    for key, variant in variants.items():
        target = variant.target
        if not loggable(target):
            continue  # a directory format (SavedModel, OpenVINO IR): kept as a run artifact
        blessed_for = sorted(p for p, b in selection["blessings"].get(key, {}).items() if b["blessed"])
        first = selection["blessings"].get(key, {})
        blessing = None
        if first:
            name, b = next(((p, b) for p, b in first.items() if b["blessed"]), next(iter(first.items())))
            blessing = Blessing(b["blessed"], target, name, tuple(b["reasons"]), b["metrics"])
        mv = register_variant(
            client, stage_run_id, variant.path, prepared.spec, example,
            model_name=variant_model_name(model_name, key), target=target, lineage=lineage, blessing=blessing,
            releasable=bool(blessed_for),
            extra_tags={"blessed_for": ",".join(blessed_for) or "none", "accuracy": f"{variant.accuracy:.6f}",
                        "bytes": str(variant.bytes), **evidence_tags(variant, selection["blessings"].get(key, {}))},
            description=version_notes(key, variant, data_version, selection["blessings"].get(key, {}),
                                      _previous_data_version(client, variant_model_name(model_name, key), target)),
        )
        registered[key] = {"name": mv.name, "version": mv.version, "blessed_for": blessed_for,
                           "accuracy": variant.accuracy, "model_name": variant_model_name(model_name, key),
                           "target": target}
    log_batch(client, stage_run_id, tags={f"registered.{t}": f"{r['name']}/{r['version']}"
                                          for t, r in registered.items()})
    return registered


def publish(
    client: MlflowClient,
    stage_run_id: str,
    settings: Settings,
    catalog: DeviceCatalog,
    model_name: str,
    registered: dict[str, dict[str, Any]],
    selection: dict[str, Any],
    prepared: PreparedData,
    variants: dict[str, Variant],
    params: PipelineParams,
    rollout: bool,
) -> dict[str, dict[str, Any]]:
    """Per cohort: sign and upload the chosen variant's bundle, then stable or canary."""
    from flows.rollout import release_to_cohort
    from flows.serving import release_by_alias, takes_registered_version
    from registry.bundles import bundle_metadata, publish_bundle
    from registry.channel_access import ensure_channel
    from registry.keys import load_or_create_cohort_key
    from registry.mlflow_models import set_bundle_id

    store = settings.store()
    repo = ensure_channel(settings, catalog)
    out: dict[str, dict[str, Any]] = {}
    replaced: dict[str, dict[str, str] | None] = {}  # the stable each cohort's release replaces
    for cohort_name, cohort in catalog.cohorts.items():
        choice = selection["per_profile"].get(cohort.profile, {})
        chosen = choice.get("target")  # the chosen variant's name
        if not chosen or chosen not in registered:
            out[cohort_name] = {"published": False, "profile": cohort.profile,
                                "reason": choice.get("reason", "no blessed variant")}
            continue
        reg = registered[chosen]
        target = reg["target"]
        if takes_registered_version(catalog.profiles[cohort.profile], variants[chosen].path):
            runs_on = catalog.profiles[cohort.profile].runs_on  # a server splits requests; a host does not
            out[cohort_name] = {**release_by_alias(client, cohort_name, reg, rollout, runs_on), "variant": chosen,
                                "profile": cohort.profile, "why": choice.get("reason", "")}
            continue  # no device bundle: a model server or host loads the registered version
        enc_key = load_or_create_cohort_key(settings.keys_dir, cohort_name) if cohort.encrypt else None
        spec = _calibrated_spec(variants[chosen].path, prepared)  # temperature ships in the bundle
        ref = publish_bundle(repo, variants[chosen].path, spec, model_name=reg["model_name"],
                             model_version=reg["version"], target=target, encryption_key=enc_key)
        set_bundle_id(client, reg["name"], reg["version"], ref.bundle_id, cohort_name)
        meta = bundle_metadata(store, ref.bundle_id)  # the model file as stored: zstd (device.wire)
        wire_bytes = int(meta.files[meta.model_file]["size"])
        # stable at once (first release, no rollout, or a retried publish: recorded in the rollout
        # history, aliases moved) or a canary at the first step; with the stable it replaces
        released = release_to_cohort(client, settings, catalog, cohort_name, reg, ref, rollout)
        role, replaced[cohort_name] = released["role"], released["replaces"]
        _save_reference(store, ref.bundle_id, variants[chosen].path, prepared, enc_key)
        out[cohort_name] = {"published": True, "role": role, "target": target, "variant": chosen,
                            "profile": cohort.profile, "why": choice.get("reason", ""),
                            "bundle_id": ref.bundle_id, "registered": f"{reg['name']}/{reg['version']}",
                            "wire_bytes": wire_bytes, "file_bytes": variants[chosen].bytes}
    for c, stable in replaced.items():
        out[c]["replaces"] = stable
    log_batch(client, stage_run_id, tags={f"cohort.{c}": (f"{o['role']} {o['registered']}" if o["published"]
                                                          else f"not published: {o['reason']}")
                                          for c, o in out.items()},
              metrics={f"wire_bytes.{c}": float(o["wire_bytes"]) for c, o in out.items() if "wire_bytes" in o})
    return out


def _previous_data_version(client: MlflowClient, model_name: str, target: str) -> str | None:
    """The data version of the latest version registered before this one, if any."""
    from mlflow.exceptions import MlflowException

    try:
        versions = client.search_model_versions(f"name='{model_name}-{target}'")
    except MlflowException:
        return None
    latest = max(versions, key=lambda v: int(v.version), default=None)
    return latest.tags.get("data_version") if latest else None


def _test_interval(variant: Variant) -> str:
    from components.evidence import wilson

    k = round(variant.accuracy * variant.n_test)
    low, high = wilson(k, variant.n_test)
    return f"{variant.accuracy:.4f} (95% CI {low:.4f}-{high:.4f}, {k}/{variant.n_test} test images)"


def evidence_tags(variant: Variant, blessings: dict[str, Any]) -> dict[str, str]:
    """Registry tags a release manager sees (`edgeops release plan`): the interval and each
    profile's verdict with its paired test."""
    from flows.selection import verdict_line

    judged = {p: b for p, b in sorted(blessings.items()) if b.get("outcome") != "not chosen"}
    line = "; ".join(f"{p}: {verdict_line(b)}" for p, b in judged.items()) or "not chosen for any profile"
    return {"accuracy_ci": _test_interval(variant), "evidence": line[:4000]}


def variant_model_name(model_name: str, variant: str) -> str:
    """`digits` for the float model's variants, `digits-prune` for a compressed parent's."""
    from flows.stages import variant_method

    method = variant_method(variant)
    return model_name if method == "float" else f"{model_name}-{method}"


def _save_reference(
    store: Any, bundle_id: str, model_path: Path, prepared: PreparedData, key: bytes | None = None
) -> None:
    """The monitoring reference of this variant: the held-out validation split (not the training
    data) through the same features and the shipped model."""
    from device.runtime import runner_for_file
    from monitoring.reference import build_reference, save_reference

    reference = build_reference(prepared.x_val, prepared.y_val, runner_for_file(model_path), prepared.spec)
    save_reference(store, bundle_id, reference, key)  # sealed for an encrypted cohort


def _calibrated_spec(model_path: Path, prepared: PreparedData) -> Any:
    """The preprocessing spec with this variant's temperature, fitted on the validation split."""
    from dataclasses import replace

    from device.runtime import runner_for_file
    from monitoring.reference import fit_variant_temperature

    t = fit_variant_temperature(runner_for_file(model_path), prepared.x_val, prepared.y_val, prepared.spec)
    return replace(prepared.spec, temperature=t.temperature)

"""Blessing every (variant, profile) pair and picking the variant per profile, with MLflow logging.

The verdicts and the choice come from components (blessing, selection); this adapter adds the
baseline each cohort runs now (from the registry aliases) and writes the candidate table and
the size-against-accuracy plots where a reviewer finds them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flows.tracking import log_artifact, log_batch

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from components.conversion import Variant
    from components.profiles import DeviceCatalog
    from edgeops.params import EvaluateParams
    from edgeops.settings import Settings


def stable_accuracy(settings: Settings, cohorts: list[str], x01: Any, y: Any) -> float | None:
    """Accuracy of what these cohorts run now, measured on THIS release's test split.

    The stable bundle is downloaded and verified as a device would, and run through its own
    preprocessing spec, so the new variant and the incumbent are judged on the same images
    (a retrain's test split holds field feedback the old model never saw). Lowest if several.
    """
    import numpy as np

    from device.preprocessing import PreprocessingSpec, normalize
    from device.runtime import TFLiteRunner
    from registry.bundles import read_bundle
    from registry.keys import load_or_create_cohort_key, load_trusted_keys
    from registry.manifests import read_manifest

    store = settings.store()
    trusted = load_trusted_keys(store)
    found = []
    for cohort in cohorts:
        manifest = read_manifest(store, cohort, trusted) if trusted else None
        if manifest is None or manifest.stable is None:
            continue
        key = None
        if _encrypted(store, manifest.stable.bundle_id):
            key = load_or_create_cohort_key(settings.keys_dir, cohort)
        bundle = read_bundle(store, manifest.stable, trusted, encryption_key=key)
        spec = PreprocessingSpec.from_json(bundle.files["preprocessing.json"].decode())
        if (spec.height, spec.width, spec.channels) != tuple(x01.shape[1:]):
            continue  # a different input shape: not comparable on these arrays
        probs = TFLiteRunner(bundle.model_bytes).predict(normalize(x01, spec))
        found.append(float((probs.argmax(axis=1) == np.asarray(y)).mean()))
    return min(found) if found else None


def _encrypted(store: Any, bundle_id: str) -> bool:
    import json

    return bool(json.loads(store.get(f"bundles/{bundle_id}/metadata.json"))["signed"].get("encrypted"))


def evaluate(variants: dict[str, Variant], float_accuracy: float, catalog: DeviceCatalog,
             params: EvaluateParams, baselines: dict[str, float | None], out_dir: Path) -> dict[str, Any]:
    """Blessings per (target, profile), the choice per profile, tables and plots under out_dir."""
    from components.blessing import bless
    from components.selection import candidate_table, plot_size_vs_accuracy, select

    out_dir.mkdir(parents=True, exist_ok=True)
    blessings = {t: {p: bless(v, prof, float_accuracy, baselines.get(p), params)
                     for p, prof in catalog.profiles.items()} for t, v in variants.items()}
    per_profile: dict[str, Any] = {}
    for name, profile in catalog.profiles.items():
        candidates = {t: blessings[t][name] for t in variants}
        per_profile[name] = select(variants, candidates, profile).to_dict()
        table = candidate_table(variants, candidates, profile)
        table.to_csv(out_dir / f"candidates-{name}.csv", index=False)
        plot_size_vs_accuracy(variants, candidates, profile, out_dir / f"size_vs_accuracy-{name}.png")
    result = {"blessings": {t: {p: b.to_dict() for p, b in bs.items()} for t, bs in blessings.items()},
              "per_profile": per_profile}
    (out_dir / "selection.json").write_text(json.dumps(result, indent=2, default=str))
    return result


def bless_and_select(client: MlflowClient, run_id: str, variants: dict[str, Variant], float_accuracy: float,
                     catalog: DeviceCatalog, params: EvaluateParams, settings: Settings, prepared: Any,
                     out_dir: Path) -> dict[str, Any]:
    cohorts_of = {p: [c for c, co in catalog.cohorts.items() if co.profile == p] for p in catalog.profiles}
    baselines = {p: stable_accuracy(settings, cs, prepared.x_test, prepared.y_test) if cs else None
                 for p, cs in cohorts_of.items()}
    result = evaluate(variants, float_accuracy, catalog, params, baselines, out_dir)
    metrics = {f"blessed.{t}.{p}": float(b["blessed"]) for t, bs in result["blessings"].items()
               for p, b in bs.items()}
    tags = {f"selected.{p}": (c.get("target") or f"none: {c.get('reason', '')}")
            for p, c in result["per_profile"].items()}
    metrics.update({f"stable_accuracy.{p}": b for p, b in baselines.items() if b is not None})
    log_batch(client, run_id, metrics=metrics, tags=tags)
    log_artifact(client, run_id, out_dir, "blessing")
    return result


def evaluate_variants(variants_json: Path, catalog: DeviceCatalog, params: EvaluateParams,
                      out_dir: Path) -> dict[str, Any]:
    """The DVC `evaluate` stage: the same blessing and selection from the convert stage's output."""
    from components.conversion import Variant

    raw = json.loads(Path(variants_json).read_text())
    variants = {t: Variant.from_dict(d) for t, d in raw.items()}
    float_accuracy = next(iter(variants.values())).float_accuracy
    result = evaluate(variants, float_accuracy, catalog, params, {}, out_dir)
    return result["per_profile"]

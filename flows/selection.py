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


def stable_accuracy(client: MlflowClient, model_name: str, cohorts: list[str]) -> float | None:
    """Accuracy of what these cohorts run now (their `<cohort>-stable` alias), lowest if several."""
    from mlflow.exceptions import MlflowException

    found = []
    for rm in client.search_registered_models(filter_string=f"name LIKE '{model_name}-%'"):
        for cohort in cohorts:
            try:
                mv = client.get_model_version_by_alias(rm.name, f"{cohort}-stable")
            except MlflowException:
                continue
            if "accuracy" in mv.tags:
                found.append(float(mv.tags["accuracy"]))
    return min(found) if found else None


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
                     catalog: DeviceCatalog, params: EvaluateParams, settings: Settings, model_name: str,
                     out_dir: Path) -> dict[str, Any]:
    cohorts_of = {p: [c for c, co in catalog.cohorts.items() if co.profile == p] for p in catalog.profiles}
    baselines = {p: stable_accuracy(client, model_name, cs) if cs else None for p, cs in cohorts_of.items()}
    result = evaluate(variants, float_accuracy, catalog, params, baselines, out_dir)
    metrics = {f"blessed.{t}.{p}": float(b["blessed"]) for t, bs in result["blessings"].items()
               for p, b in bs.items()}
    tags = {f"selected.{p}": (c.get("target") or f"none: {c.get('reason', '')}")
            for p, c in result["per_profile"].items()}
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

"""Choosing the variant per profile on validation and blessing it on test, with MLflow logging.

The choice and the verdicts come from components (selection, blessing); this adapter adds the
predictions of what each cohort runs now (its stable bundle, on this release's test split, for
the paired test) and writes the candidate table, the verdict with its interval and p-values,
and the size-against-accuracy plots where a reviewer finds them.
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


def stable_predictions(settings: Settings, cohorts: list[str], x01: Any, y: Any) -> Any:
    """Top-1 of what these cohorts run now on THIS release's test split (None: no stable yet).

    The stable bundle is downloaded and verified as a device would, and run through its own
    preprocessing spec, so the new variant and the incumbent are judged image by image on the
    same images; the split rule keeps every image the stable trained on out of this test split
    (components.splits). The least accurate stable if several.
    """
    found = _stables(settings, cohorts, x01, y)
    return min(found, key=lambda f: f[0])[1] if found else None


def stable_point(settings: Settings, cohorts: list[str], x01: Any, y: Any) -> tuple[str, int, float] | None:
    """(label, wire bytes, accuracy on these images) of the least accurate stable bundle these
    cohorts run: where the incumbent sits on a profile's size-vs-accuracy plot (validation)."""
    found = [f for f in _stables(settings, cohorts, x01, y) if f[2] is not None]
    if not found:
        return None
    acc, _, wire, label = min(found, key=lambda f: f[0])
    return label, wire, acc


def _stables(settings: Settings, cohorts: list[str], x01: Any, y: Any) -> list[tuple[float, Any, int | None, str]]:
    """(accuracy, top-1, wire bytes or None, label) of each cohort's stable on these images."""
    import numpy as np

    from device.preprocessing import PreprocessingSpec, normalize
    from device.runtime import open_runner
    from registry.bundles import bundle_metadata, read_bundle
    from registry.channel_access import channel_repository
    from registry.channels import read_channel
    from registry.keys import load_or_create_cohort_key

    repo = channel_repository(settings)
    if not repo.keystore.has_root() or not repo.exists():
        return []  # no channel yet: nothing runs anywhere
    txn = repo.begin()
    delegated = set(repo.cohorts(txn))
    found, by_alias = [], []
    for cohort in cohorts:
        manifest = read_channel(txn, cohort) if cohort in delegated else None
        if manifest is None or manifest.stable is None:
            by_alias.append(cohort)  # a server or host cohort: its stable is a registry alias
            continue
        key = None
        if bundle_metadata(repo.store, manifest.stable.bundle_id).encrypted:
            key = load_or_create_cohort_key(settings.keys_dir, cohort)
        bundle = read_bundle(repo, manifest.stable, encryption_key=key, txn=txn)
        spec = PreprocessingSpec.from_json(bundle.files["preprocessing.json"].decode())
        if (spec.height, spec.width, spec.channels) != tuple(x01.shape[1:]):
            continue  # a different input shape: not comparable on these arrays
        probs = open_runner(manifest.stable.target, bundle.model_bytes).predict(normalize(x01, spec))
        pred = probs.argmax(axis=1)
        label = f"current stable (v{bundle.metadata.model_version} {manifest.stable.target})"
        found.append((float((pred == np.asarray(y)).mean()), pred, bundle.wire_bytes, label))
    if by_alias:
        from flows.serving import registered_stable_predictions

        found += [(acc, pred, None, "current stable (registry alias)")
                  for acc, pred in registered_stable_predictions(settings.mlflow_client(), by_alias, x01, y)]
    return found


def evaluate(variants: dict[str, Variant], float_accuracy: float, catalog: DeviceCatalog,
             params: EvaluateParams, baselines: dict[str, float | None], out_dir: Path,
             y_test: Any = None, stables: dict[str, Any] | None = None, y_val: Any = None,
             stable_points: dict[str, tuple[str, int, float] | None] | None = None) -> dict[str, Any]:
    """Per profile: the cheapest variant within `params.selection_margin` of the best on
    validation (paired when `y_val` is given), then its blessing on test (paired with the float
    parent and the cohort's stable when `y_test` is given). Under out_dir per profile: the
    candidate table, the search's Pareto front (pareto-<profile>.csv) and the size-vs-accuracy
    plot with the front, the choice and the current stable (`stable_points`) marked.

    Variants not chosen are never scored on test for that profile: their blessing says why.
    """
    import pandas as pd

    from components.blessing import Blessing, Paired, bless, constraint_reasons
    from components.search import profile_front
    from components.selection import candidate_table, plot_size_vs_accuracy, rank, select

    out_dir.mkdir(parents=True, exist_ok=True)
    margin, alpha = params.selection_margin, params.alpha
    float_predictions = _float_parent_predictions(variants)
    blessings: dict[str, dict[str, Blessing]] = {t: {} for t in variants}
    for name, profile in catalog.profiles.items():
        choice = rank(variants, profile, margin, alpha, y_val)
        for t, v in variants.items():
            if t == choice.name:
                paired = None if y_test is None else Paired(y_test, float_predictions, (stables or {}).get(name))
                blessings[t][name] = bless(v, profile, float_accuracy, baselines.get(name), params, paired)
            else:
                why = constraint_reasons(v, profile) or [
                    f"not chosen: {choice.name} is cheaper within {margin:g} of the best on validation"
                    if (choice.verdicts or {}).get(t) == "pass" else
                    f"not chosen: not shown within {margin:g} of the best ({choice.best}) on validation"]
                blessings[t][name] = Blessing(False, v.target, name, tuple(why), {"val_accuracy": v.val_accuracy, "gate_split": v.gate_split},
                                              "not chosen")
    per_profile: dict[str, Any] = {}
    for name, profile in catalog.profiles.items():
        candidates = {t: blessings[t][name] for t in variants}
        per_profile[name] = select(variants, candidates, profile, margin, alpha, y_val).to_dict()
        table = candidate_table(variants, candidates, profile, margin, alpha, y_val)
        table.to_csv(out_dir / f"candidates-{name}.csv", index=False)
        points = profile_front(variants, profile)
        front = pd.DataFrame([p.__dict__ for p in points], columns=["name", "val_accuracy", "wire_bytes", "latency_ms"])
        front.rename(columns={"latency_ms": "estimated_latency_ms"}).to_csv(out_dir / f"pareto-{name}.csv",
                                                                          index=False)
        per_profile[name]["pareto"] = front["name"].tolist()
        plot_size_vs_accuracy(variants, candidates, profile, out_dir / f"size_vs_accuracy-{name}.png",
                              margin, alpha, y_val, (stable_points or {}).get(name), {p.name for p in points})
    result = {"blessings": {t: {p: b.to_dict() for p, b in bs.items()} for t, bs in blessings.items()},
              "per_profile": per_profile}
    (out_dir / "selection.json").write_text(json.dumps(result, indent=2, default=str))
    return result


def _float_parent_predictions(variants: dict[str, Variant]) -> Any:
    """The trained float model's test top-1: the reference of the float model's own variants
    (names without a method prefix); a compressed parent is judged against it too."""
    import numpy as np

    for name, v in variants.items():
        if "/" not in name and v.float_predictions:
            return np.asarray(v.float_predictions)
    return None


def bless_and_select(client: MlflowClient, run_id: str, variants: dict[str, Variant], float_accuracy: float,
                     catalog: DeviceCatalog, params: EvaluateParams, settings: Settings, prepared: Any,
                     out_dir: Path) -> dict[str, Any]:
    import numpy as np

    cohorts_of = {p: [c for c, co in catalog.cohorts.items() if co.profile == p] for p in catalog.profiles}
    stables = {p: stable_predictions(settings, cs, prepared.x_test, prepared.y_test) if cs else None
               for p, cs in cohorts_of.items()}
    y = np.asarray(prepared.y_test)
    baselines = {p: (float(np.mean(s == y)) if s is not None else None) for p, s in stables.items()}
    y_val = np.asarray(prepared.y_val)
    points = {p: stable_point(settings, cs, prepared.x_val, y_val) if cs and stables.get(p) is not None else None
              for p, cs in cohorts_of.items()}
    result = evaluate(variants, float_accuracy, catalog, params, baselines, out_dir, y_test=y, stables=stables,
                      y_val=y_val, stable_points=points)
    metrics = {f"blessed.{t}.{p}": float(b["blessed"]) for t, bs in result["blessings"].items()
               for p, b in bs.items()}
    tags = {f"selected.{p}": (c.get("target") or f"none: {c.get('reason', '')}")[:4000]
            for p, c in result["per_profile"].items()}
    for p, c in result["per_profile"].items():
        b = result["blessings"].get(c.get("candidate") or "", {}).get(p)
        if b is None:
            continue
        m = b["metrics"]
        tags[f"verdict.{p}"] = verdict_line(b)
        if m.get("accuracy_ci"):
            metrics.update({f"test_accuracy.{p}": m["accuracy"], f"test_accuracy_low.{p}": m["accuracy_ci"][0],
                            f"test_accuracy_high.{p}": m["accuracy_ci"][1]})
        for key in ("vs_float", "vs_stable"):
            if key in m:
                metrics[f"p_{key}.{p}"] = m[key]["p_value"]
    metrics.update({f"stable_accuracy.{p}": b for p, b in baselines.items() if b is not None})
    for p, c in result["per_profile"].items():
        metrics[f"pareto_size.{p}"] = float(len(c.get("pareto", [])))
        if c.get("target"):
            chosen = variants[c["target"]]
            metrics.update({f"wire_bytes.{p}": float(chosen.wire_bytes), f"file_bytes.{p}": float(chosen.bytes)})
            if chosen.measurement is not None:
                metrics[f"weight_bytes.{p}"] = float(chosen.measurement.weight_bytes)
    x_fb, y_fb = held_out_feedback(prepared)
    for p, c in result["per_profile"].items():
        chosen = c.get("target")
        if not chosen or not cohorts_of.get(p) or len(y_fb) < params.min_feedback:
            continue
        stable = stable_predictions(settings, cohorts_of[p], x_fb, y_fb)
        mine = _predict(variants[chosen], x_fb, prepared.spec)
        if stable is None or mine is None:
            continue
        c["feedback"] = compare_on_feedback(mine, stable, y_fb, params)
        tags[f"feedback.{p}"] = c["feedback"]["line"]
        metrics.update({f"feedback_accuracy.{p}": c["feedback"]["challenger"]["value"],
                        f"feedback_stable_accuracy.{p}": c["feedback"]["stable"]["value"],
                        f"p_feedback_vs_stable.{p}": c["feedback"]["verdict"]["p_value"]})
        (out_dir / f"feedback-{p}.json").write_text(json.dumps(c["feedback"], indent=2, default=str))
    log_batch(client, run_id, metrics=metrics, tags=tags)
    log_artifact(client, run_id, out_dir, "blessing")
    return result


def held_out_feedback(prepared: Any) -> tuple[Any, Any]:
    """Labelled field feedback kept out of training: `fb-*` images the split rule put in test or
    field. Neither the stable (trained on an earlier version's train split) nor the challenger
    trained on them."""
    import numpy as np

    m = prepared.manifest
    xs, ys = [], []
    for split in ("test", "field"):
        x, y = prepared.split(split)
        rows = m[(m["split"] == split) & m["path"].str.contains("/fb-", regex=False)]
        idx = rows["index"].to_numpy(dtype=np.int64)
        if len(idx) and len(x):
            xs.append(x[idx])
            ys.append(np.asarray(y)[idx])
    if not xs:
        return np.zeros((0, *prepared.x_test.shape[1:]), np.float32), np.zeros(0, np.int64)
    return np.concatenate(xs), np.concatenate(ys)


def compare_on_feedback(challenger: Any, stable: Any, y: Any, params: EvaluateParams) -> dict[str, Any]:
    """Champion and challenger on held-out feedback: each accuracy with its interval, and the
    paired non-inferiority verdict (reported beside the blessing, which decides on test)."""
    import numpy as np

    from components.evidence import accuracy, non_inferiority

    y = np.asarray(y)
    mine, theirs = np.asarray(challenger) == y, np.asarray(stable) == y
    verdict = non_inferiority(mine, theirs, params.max_regression_vs_stable, params.alpha)
    a, b = accuracy(mine), accuracy(theirs)
    return {"n": int(len(y)), "challenger": a.to_dict(), "stable": b.to_dict(), "verdict": verdict.to_dict(),
            "line": f"held-out field feedback: challenger {a}, stable {b}; {verdict.outcome}: {verdict.reason}"}


def _predict(variant: Variant, x01: Any, spec: Any) -> Any:
    """The chosen artifact's top-1, in its own runtime (TFLite or ONNX); None for other formats."""
    from device.preprocessing import normalize

    if variant.target.startswith("tflite"):
        from device.runtime import TFLiteRunner

        return TFLiteRunner(variant.path).predict(normalize(x01, spec)).argmax(axis=1)
    if variant.target == "onnx":
        from components.convert.onnx import OnnxRunner

        return OnnxRunner(variant.path).predict(normalize(x01, spec)).argmax(axis=1)
    return None


def verdict_line(blessing: dict[str, Any]) -> str:
    """One line for the MLflow UI: outcome, test accuracy with its interval, each paired test."""
    m = blessing["metrics"]
    parts = [blessing.get("outcome", "pass" if blessing["blessed"] else "fail")]
    if m.get("accuracy_ci"):
        lo, hi = m["accuracy_ci"]
        parts.append(f"test accuracy {m['accuracy']:.4f} (95% CI {lo:.4f}-{hi:.4f}, n={m.get('n_test')})")
    for key, what in (("vs_float", "vs float parent"), ("vs_stable", "vs stable")):
        if key in m:
            v = m[key]
            parts.append(f"{what}: {v['outcome']} ({v['difference']:+.4f}, margin {v['margin']:g}, "
                         f"p={v['p_value']:.3g}, {v['wins']}W/{v['losses']}L)")
    return "; ".join(parts)[:4000]


def evaluate_variants(variants_json: Path, catalog: DeviceCatalog, params: EvaluateParams,
                      out_dir: Path) -> dict[str, Any]:
    """The DVC `evaluate` stage: the same blessing and selection from the convert stage's output."""
    from components.conversion import Variant

    raw = json.loads(Path(variants_json).read_text())
    variants = {t: Variant.from_dict(d) for t, d in raw.items()}
    float_accuracy = next(iter(variants.values())).float_accuracy
    result = evaluate(variants, float_accuracy, catalog, params, {}, out_dir)
    return result["per_profile"]

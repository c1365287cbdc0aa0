"""A Great Expectations suite, built in code, over a prepared data set.

The manifest and small frames derived from it and from the arrays (per-class counts, content
hashes, pixel statistics) are validated by a real GE 1.x context; the result is a value with
readable failures, and Data Docs HTML is written where the caller says. The caller decides
whether a failure stops the run (`raise_if_failed(result, params.fail_on_validation)`).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from components.prepare import SPLITS, PreparedData
from edgeops.errors import DataError, ValidationFailed
from edgeops.params import PrepareParams

MAX_DIMENSION = 16384  # decoded height/width above this is a corrupt or wrong file


@dataclass(frozen=True)
class ValidationResult:
    """The suite's verdict: `failures` are one readable line each."""

    success: bool
    failures: list[str] = field(default_factory=list)
    statistics: dict[str, Any] = field(default_factory=dict)
    report_html: Path | None = None

    def summary(self) -> str:
        n = self.statistics.get("expectations", "?")
        if self.success:
            return f"data validation passed ({n} expectations)"
        return f"data validation failed {len(self.failures)} of {n} expectations: " + "; ".join(self.failures)


def raise_if_failed(result: ValidationResult, fail: bool) -> ValidationResult:
    """Fail or warn, as the caller's `fail_on_validation` says; returns the result to warn with."""
    if fail and not result.success:
        where = str(result.report_html) if result.report_html else None
        raise ValidationFailed(result.summary(), where=where)
    return result


def _frames(prepared: PreparedData) -> dict[str, pd.DataFrame]:
    """The tables the suite runs on, derived from the manifest and the arrays."""
    m = prepared.manifest
    counts = m.groupby(["label", "split"]).size().unstack(fill_value=0)
    counts = counts.reindex(index=list(prepared.labels), columns=list(SPLITS), fill_value=0)
    counts["total"] = counts[list(SPLITS)].sum(axis=1)
    smallest = max(int(counts["total"].min()), 1)
    counts["ratio_to_smallest"] = counts["total"] / smallest
    hashes = m.groupby("sha256").agg(n_splits=("split", "nunique"), n_labels=("label", "nunique"))
    spec = prepared.spec
    mean, std = np.asarray(spec.mean, np.float32), np.asarray(spec.std, np.float32)
    pixel_rows, train_rows = [], []
    for s in SPLITS:
        x, _ = prepared.split(s)
        norm = (x - mean) / std if len(x) else np.zeros((0, 1, 1, spec.channels), np.float32)
        for c in range(spec.channels):
            v, n = x[..., c], norm[..., c]
            pixel_rows.append(
                {
                    "split": s,
                    "channel": c,
                    "n_array": len(x),
                    "n_manifest": int((m["split"] == s).sum()),
                    "x01_min": float(v.min()) if v.size else 0.0,
                    "x01_max": float(v.max()) if v.size else 0.0,
                    "norm_abs_max": float(np.abs(n).max()) if n.size else 0.0,
                    "nonfinite": int((~np.isfinite(v)).sum()),
                }
            )
            if s == "train":
                train_rows.append({"channel": c, "norm_mean": float(n.mean()), "norm_std": float(n.std())})
    return {
        "manifest": m.reset_index(drop=True),
        "class_counts": counts.reset_index(),
        "content_hashes": hashes.reset_index(),
        "pixels": pd.DataFrame(pixel_rows),
        "train_statistics": pd.DataFrame(train_rows),
    }


def _suites(prepared: PreparedData, params: PrepareParams) -> dict[str, list[Any]]:
    import great_expectations.expectations as gxe

    dims = {"min_value": 1, "max_value": MAX_DIMENSION}
    return {
        "manifest": [
            gxe.ExpectColumnValuesToNotBeNull(column="sha256"),
            gxe.ExpectColumnValuesToBeUnique(column="path"),
            gxe.ExpectColumnDistinctValuesToEqualSet(column="label", value_set=list(prepared.labels)),
            gxe.ExpectColumnValuesToBeInSet(column="split", value_set=list(SPLITS)),
            gxe.ExpectColumnValuesToBeBetween(column="height", **dims),
            gxe.ExpectColumnValuesToBeBetween(column="width", **dims),
            gxe.ExpectColumnValuesToBeInSet(column="channels", value_set=[1, 3]),
            # the same content twice inside one split (duplicates inflate and bias metrics)
            gxe.ExpectCompoundColumnsToBeUnique(column_list=["split", "sha256"]),
        ],
        "class_counts": [
            gxe.ExpectColumnValuesToBeBetween(column="total", min_value=params.min_per_class),
            gxe.ExpectColumnValuesToBeBetween(column="ratio_to_smallest", max_value=params.max_imbalance),
            # every class in train, val and test; the field pool may miss a small class
            *(gxe.ExpectColumnValuesToBeBetween(column=s, min_value=1) for s in ("train", "val", "test")),
        ],
        "content_hashes": [
            # the same content in two splits is leakage; under two labels it is label noise
            gxe.ExpectColumnValuesToBeBetween(column="n_splits", max_value=1),
            gxe.ExpectColumnValuesToBeBetween(column="n_labels", max_value=1),
        ],
        "pixels": [
            gxe.ExpectColumnPairValuesToBeEqual(column_A="n_array", column_B="n_manifest"),
            gxe.ExpectColumnValuesToBeBetween(column="x01_min", min_value=0.0, max_value=1.0),
            gxe.ExpectColumnValuesToBeBetween(column="x01_max", min_value=0.0, max_value=1.0),
            gxe.ExpectColumnValuesToBeBetween(column="norm_abs_max", max_value=100.0),
            gxe.ExpectColumnValuesToBeBetween(column="nonfinite", min_value=0, max_value=0),
        ],
        "train_statistics": [
            gxe.ExpectColumnValuesToBeBetween(column="norm_mean", min_value=-0.01, max_value=0.01),
            gxe.ExpectColumnValuesToBeBetween(column="norm_std", min_value=0.99, max_value=1.01),
        ],
    }


def _describe(frame: str, er: Any) -> str:
    cfg = er.expectation_config
    kw = {k: v for k, v in cfg.kwargs.items() if k not in ("batch_id", "result_format")}
    target = kw.pop("column", None) or kw.pop("column_list", None) or ""
    res = er.result or {}
    if res.get("unexpected_count"):
        examples = str(res.get("partial_unexpected_list", [])[:3])
        detail = f"{res['unexpected_count']} unexpected, e.g. {examples[:160]}"
    elif res.get("observed_value") is not None:
        detail = f"observed {res['observed_value']}"
    else:
        detail = "failed"
    bounds = ", ".join(f"{k}={v}" for k, v in kw.items() if k in ("min_value", "max_value"))
    return f"{frame}.{target} {cfg.type}{f' ({bounds})' if bounds else ''}: {detail}"


def _clear_previous_docs(docs: Path) -> None:
    """Remove only what an earlier Data Docs build wrote there, never the caller's other files."""
    for sub in ("validations", "expectations", "static"):
        shutil.rmtree(docs / sub, ignore_errors=True)
    (docs / "index.html").unlink(missing_ok=True)


def validate_prepared(
    prepared: PreparedData, params: PrepareParams, report_dir: Path | str | None = None
) -> ValidationResult:
    """Run the suite; with `report_dir`, write Great Expectations Data Docs there."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    try:
        frames = _frames(prepared)
    except (KeyError, ValueError) as exc:
        raise DataError(f"cannot build validation frames from the manifest: {exc}") from exc
    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    for site in list(ctx.list_data_docs_sites()):
        ctx.delete_data_docs_site(site)
    docs: Path | None = None
    if report_dir is not None:
        docs = Path(report_dir).resolve()  # GE wants an absolute base_directory
        _clear_previous_docs(docs)
        backend = {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs)}
        ctx.add_data_docs_site("edgeops", {"class_name": "SiteBuilder", "store_backend": backend})
    source = ctx.data_sources.add_pandas("prepared")
    failures: list[str] = []
    evaluated = 0
    for name, expectations in _suites(prepared, params).items():
        suite = ctx.suites.add(gx.ExpectationSuite(name=f"prepared_{name}", expectations=expectations))
        batch_def = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe(name)
        vd = ctx.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch_def, suite=suite))
        actions = [gx.checkpoint.UpdateDataDocsAction(name="docs")] if docs else []
        checkpoint = ctx.checkpoints.add(
            gx.Checkpoint(name=f"prepare_{name}", validation_definitions=[vd], actions=actions)
        )
        run = checkpoint.run(batch_parameters={"dataframe": frames[name]})
        for vr in run.run_results.values():
            for er in vr.results:
                evaluated += 1
                if not er.success:
                    failures.append(_describe(name, er))
    counts = frames["class_counts"].set_index("label")
    stats = {
        "expectations": evaluated,
        "failed": len(failures),
        "images": len(prepared.manifest),
        "skipped_files": prepared.skipped,
        "per_split": {s: int(counts[s].sum()) for s in SPLITS},
        "per_class": {str(k): int(v) for k, v in counts["total"].items()},
        "imbalance": float(counts["ratio_to_smallest"].max()),
        "duplicate_contents": int(prepared.manifest["sha256"].duplicated().sum()),
    }
    html = docs / "index.html" if docs and (docs / "index.html").exists() else None
    return ValidationResult(not failures, failures, stats, html)

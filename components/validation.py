"""A Great Expectations suite, built in code, over a prepared data set.

The manifest and small frames derived from it and from the arrays (per-class counts, content
hashes, pixel statistics in float64, or exact from uint8 histograms) are validated by a real
GE 1.x context; the result is a value with readable failures, and Data Docs HTML is written
where the caller says. The caller decides
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

from components.prepare import SPLITS, PreparedData, channel_statistics
from components.prepared import CHUNK, UnitImages
from components.validation_summary import ExpectationOutcome, observed_text, summary_html
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


@dataclass(frozen=True)
class _Moments:
    """Per-channel summary of one split's [0, 1] pixels, accumulated in float64 (or exact
    integer histograms for uint8-backed splits) a chunk at a time."""

    count: int
    low: np.ndarray  # finite minimum per channel
    high: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    nonfinite: np.ndarray


def _moments(x: np.ndarray | UnitImages, channels: int) -> _Moments:
    if isinstance(x, UnitImages):
        hist = np.zeros((channels, 256), np.int64)
        for i in range(0, len(x), CHUNK):
            rows = np.asarray(x.raw[i : i + CHUNK])
            for c in range(channels):
                hist[c] += np.bincount(rows[..., c].ravel(), minlength=256)
            x.release()  # resident memory stays one chunk, not the mapped file
        mean, std = channel_statistics(hist) if len(x) else ((0.0,) * channels,) * 2
        seen = [np.flatnonzero(h) for h in hist]
        low = np.array([f[0] / 255.0 if len(f) else 0.0 for f in seen])
        high = np.array([f[-1] / 255.0 if len(f) else 0.0 for f in seen])
        zeros = np.zeros(channels, np.int64)
        return _Moments(len(x), low, high, np.array(mean), np.array(std), zeros)
    low, high = np.full(channels, np.inf), np.full(channels, -np.inf)
    s1, s2, n, bad = np.zeros(channels), np.zeros(channels), np.zeros(channels), np.zeros(channels, np.int64)
    for i in range(0, len(x), CHUNK):
        v = np.asarray(x[i : i + CHUNK], np.float64).reshape(-1, channels)
        finite = np.isfinite(v)
        bad += (~finite).sum(axis=0)
        low = np.minimum(low, np.where(finite, v, np.inf).min(axis=0, initial=np.inf))
        high = np.maximum(high, np.where(finite, v, -np.inf).max(axis=0, initial=-np.inf))
        v = np.where(finite, v, 0.0)
        s1, s2, n = s1 + v.sum(axis=0), s2 + (v * v).sum(axis=0), n + finite.sum(axis=0)
    mean = np.divide(s1, n, out=np.zeros(channels), where=n > 0)
    var = np.divide(s2, n, out=np.zeros(channels), where=n > 0) - mean**2
    low, high = np.where(np.isfinite(low), low, 0.0), np.where(np.isfinite(high), high, 0.0)
    return _Moments(len(x), low, high, mean, np.sqrt(np.maximum(var, 0.0)), bad)


def _frames(prepared: PreparedData) -> dict[str, pd.DataFrame]:
    """The tables the suite runs on, derived from the manifest and the arrays (read a chunk at a
    time: a memory-mapped split is never loaded whole)."""
    m = prepared.manifest
    counts = m.groupby(["label", "split"]).size().unstack(fill_value=0)
    counts = counts.reindex(index=list(prepared.labels), columns=list(SPLITS), fill_value=0)
    counts["total"] = counts[list(SPLITS)].sum(axis=1)
    smallest = max(int(counts["total"].min()), 1)
    counts["ratio_to_smallest"] = counts["total"] / smallest
    hashes = m.groupby("sha256").agg(n_splits=("split", "nunique"), n_labels=("label", "nunique"))
    spec = prepared.spec
    mean, std = np.asarray(spec.mean, np.float64), np.asarray(spec.std, np.float64)
    pixel_rows, train_rows = [], []
    for s in SPLITS:
        x, _ = prepared.split(s)
        mo = _moments(x, spec.channels)
        for c in range(spec.channels):
            pixel_rows.append(
                {
                    "split": s,
                    "channel": c,
                    "n_array": mo.count,
                    "n_manifest": int((m["split"] == s).sum()),
                    "x01_min": float(mo.low[c]),
                    "x01_max": float(mo.high[c]),
                    "norm_abs_max": float(max(abs(mo.low[c] - mean[c]), abs(mo.high[c] - mean[c])) / std[c])
                    if mo.count else 0.0,
                    "nonfinite": int(mo.nonfinite[c]),
                }
            )
            if s == "train":
                train_rows.append({"channel": c, "norm_mean": float((mo.mean[c] - mean[c]) / std[c]),
                                   "norm_std": float(mo.std[c] / std[c])})
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
    (docs / "summary.html").unlink(missing_ok=True)


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
    outcomes: list[ExpectationOutcome] = []
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
                outcomes.append(ExpectationOutcome(
                    name, er.expectation_config.type, dict(er.expectation_config.kwargs), bool(er.success),
                    observed_text(er.result or {})))
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
    if docs is not None:  # beside GE's Data Docs, a page that renders offline
        figures = {k: v for k, v in stats.items() if k not in ("per_class",)}
        page = summary_html(f"Validation of the prepared data ({stats['images']} images)", outcomes, figures)
        tmp = docs / "summary.html.tmp"
        tmp.write_text(page, encoding="utf-8")
        tmp.replace(docs / "summary.html")
    html = docs / "index.html" if docs and (docs / "index.html").exists() else None
    return ValidationResult(not failures, failures, stats, html)

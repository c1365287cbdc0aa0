"""The Great Expectations suite a telemetry batch must pass before it enters the table.

The wire schema (columns and Arrow types) is checked first by `device.telemetry.read_batch`,
the same function the agent runs before spooling; this suite checks what a schema cannot:
ranges, known cohorts and model versions, and the events the agent may send. One ephemeral
context is built per ingestion run and reused for every batch (building one takes seconds).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from device.telemetry import EVENTS, FEATURE_COLUMNS, SCHEMA

# Features are on [0,1] images, but some are signed (orientation) or scaled (gradient energy,
# Laplacian variance): a generous bound that still catches garbage (inf, 1e30, sign flips of units).
_FEATURE_BOUND = 1e4


@dataclass(frozen=True)
class SuiteResult:
    success: bool
    failures: tuple[str, ...]
    evaluated: int


def _expectations(known_cohorts: list[str] | None, known_versions: list[str] | None) -> list[Any]:
    import great_expectations.expectations as gxe

    exps: list[Any] = [
        gxe.ExpectTableColumnsToMatchSet(column_set=list(SCHEMA.names), exact_match=True),
        gxe.ExpectColumnValuesToBeInSet(column="event", value_set=list(EVENTS)),
        gxe.ExpectColumnValuesToBeBetween(column="seq", min_value=0),
        gxe.ExpectColumnValuesToBeBetween(column="confidence", min_value=0.0, max_value=1.0),
        gxe.ExpectColumnValuesToBeBetween(column="top1", min_value=0, max_value=100_000),
        gxe.ExpectColumnValuesToBeBetween(column="latency_ms", min_value=0.0, max_value=600_000.0),
        gxe.ExpectColumnValuesToBeBetween(column="memory_bytes", min_value=0),
        gxe.ExpectColumnValuesToBeBetween(column="energy_mj", min_value=0.0),
        gxe.ExpectColumnValuesToBeBetween(column="label", min_value=0, max_value=100_000),
        gxe.ExpectColumnValuesToNotBeNull(column="device_id"),
    ]
    exps += [
        gxe.ExpectColumnValuesToBeBetween(
            column=c, min_value=-_FEATURE_BOUND, max_value=_FEATURE_BOUND
        )
        for c in FEATURE_COLUMNS
    ]
    if known_cohorts is not None:
        exps.append(
            gxe.ExpectColumnValuesToBeInSet(column="cohort", value_set=sorted(known_cohorts))
        )
    if known_versions is not None:
        # "" is a device that has not installed a model yet (a refusal before the first install).
        exps.append(
            gxe.ExpectColumnValuesToBeInSet(
                column="model_version", value_set=sorted({"", *known_versions})
            )
        )
    return exps


def _describe(er: Any) -> str:
    cfg = er.expectation_config
    target = cfg.kwargs.get("column") or ""
    res = er.result or {}
    if res.get("unexpected_count"):
        detail = f"{res['unexpected_count']} unexpected, e.g. {str(res.get('partial_unexpected_list', [])[:3])[:120]}"
    elif res.get("details", {}).get("mismatched"):
        detail = f"mismatched {res['details']['mismatched']}"
    else:
        detail = f"observed {res.get('observed_value')}"
    return f"{target} {cfg.type}: {detail}".strip()


class TelemetrySuite:
    """A GE validation definition over one in-memory batch; `validate(df)` per batch."""

    def __init__(
        self, known_cohorts: list[str] | None = None, known_versions: list[str] | None = None
    ) -> None:
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        ctx = gx.get_context(mode="ephemeral")
        ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
        suite = ctx.suites.add(
            gx.ExpectationSuite(
                name="telemetry_batch", expectations=_expectations(known_cohorts, known_versions)
            )
        )
        batch_def = (
            ctx.data_sources.add_pandas("telemetry")
            .add_dataframe_asset("batch")
            .add_batch_definition_whole_dataframe("batch")
        )
        self._vd = ctx.validation_definitions.add(
            gx.ValidationDefinition(name="telemetry", data=batch_def, suite=suite)
        )

    def validate(self, df: pd.DataFrame) -> SuiteResult:
        # GE cannot compare list/binary cells; the wire schema already checked their types.
        frame = df.drop(columns=["probs", "thumb"]).assign(probs=0, thumb=0)
        vr = self._vd.run(batch_parameters={"dataframe": frame})
        failures = tuple(_describe(er) for er in vr.results if not er.success)
        return SuiteResult(not failures, failures, len(vr.results))


# --- row rules: what a schema and a batch-level suite cannot say about one row ---------------
_FLOATS = (*FEATURE_COLUMNS, "confidence", "latency_ms", "energy_mj")


@dataclass(frozen=True)
class RowRules:
    """Who signed the batch and what time window is sane, for one batch."""

    device_id: str  # the verified signer
    cohort: str  # the cohort it is enrolled in
    seq_first: int  # the signed sequence range
    seq_last: int
    ts_min_ms: int
    ts_max_ms: int


def _mark(reasons: np.ndarray, bad: np.ndarray, text: str) -> None:
    reasons[(reasons == None) & bad] = text  # noqa: E711 - elementwise on an object array


def row_problems(table: pa.Table, rules: RowRules) -> np.ndarray:
    """One reason per row (None: the row is fine); the first rule a row breaks is its reason."""
    n = table.num_rows
    reasons = np.full(n, None, dtype=object)
    col = table.column
    dev = col("device_id").to_numpy(zero_copy_only=False)
    _mark(
        reasons,
        dev != rules.device_id,
        f"row names another device; batch signed by {rules.device_id}",
    )
    coh = col("cohort").to_numpy(zero_copy_only=False)
    _mark(
        reasons,
        coh != rules.cohort,
        f"row names another cohort; {rules.device_id} is enrolled in {rules.cohort}",
    )
    seq = col("seq").to_numpy()
    _mark(reasons, (seq < rules.seq_first) | (seq > rules.seq_last), "seq outside the signed range")
    ts = col("ts").cast(pa.int64()).to_numpy()
    _mark(
        reasons,
        (ts < rules.ts_min_ms) | (ts > rules.ts_max_ms),
        "timestamp outside the sane window",
    )
    for name in _FLOATS:
        finite = pc.fill_null(pc.is_finite(col(name)), True).to_numpy(zero_copy_only=False)
        _mark(reasons, ~finite, f"non-finite {name}")
    conf = pc.fill_null(col("confidence"), 0.5).to_numpy(zero_copy_only=False)
    _mark(reasons, (conf < 0) | (conf > 1), "confidence outside [0, 1]")
    probs = col("probs").combine_chunks() if n else pa.array([], pa.list_(pa.float32()))
    flat = pc.list_flatten(probs).to_numpy(zero_copy_only=False)
    parent = pc.list_parent_indices(probs).to_numpy(zero_copy_only=False)
    bad_p = np.zeros(n, dtype=bool)
    bad_p[parent[~(np.isfinite(flat) & (flat >= 0) & (flat <= 1))]] = True
    _mark(reasons, bad_p, "probabilities non-finite or outside [0, 1]")
    k = pc.fill_null(pc.list_value_length(probs), -1).to_numpy(zero_copy_only=False)
    for name in ("top1", "label"):
        v = col(name)
        present = pc.is_valid(v).to_numpy(zero_copy_only=False)
        vals = pc.fill_null(v, 0).to_numpy(zero_copy_only=False)
        impossible = present & (
            (vals < 0) | ((k >= 0) & (vals >= k)) | ((k < 0) & (name == "top1"))
        )
        _mark(reasons, impossible, f"impossible class in {name}")
    return reasons


# --- the same rules, columnar: many batches at once, one code per row -------------------------
ROW_RULES = (
    "row names another device; batch signed by {device}",
    "row names another cohort; {device} is enrolled in {cohort}",
    "seq outside the signed range",
    "timestamp outside the sane window",
    *(f"non-finite {name}" for name in _FLOATS),
    "confidence outside [0, 1]",
    "probabilities non-finite or outside [0, 1]",
    "impossible class in top1",
    "impossible class in label",
)


def _np(a: Any) -> np.ndarray:
    return a.to_numpy(zero_copy_only=False)


def row_codes(table: pa.Table, rules: dict[str, np.ndarray]) -> np.ndarray:
    """`row_problems` for a table of many batches: `rules` holds one value per row (device,
    cohort, seq_first, seq_last, ts_min_ms, ts_max_ms of the row's batch). Returns int16 codes,
    0 for a good row, else 1 + the index in ROW_RULES of the first rule the row breaks."""
    n = table.num_rows
    code = np.zeros(n, dtype=np.int16)
    col = table.column

    def mark(bad: np.ndarray, i: int) -> None:
        code[(code == 0) & bad] = i + 1

    mark(_np(pc.not_equal(col("device_id"), pa.array(rules["device"]))), 0)
    mark(_np(pc.not_equal(col("cohort"), pa.array(rules["cohort"]))), 1)
    seq = _np(col("seq"))
    mark((seq < rules["seq_first"]) | (seq > rules["seq_last"]), 2)
    ts = _np(col("ts").cast(pa.int64()))
    mark((ts < rules["ts_min_ms"]) | (ts > rules["ts_max_ms"]), 3)
    for j, name in enumerate(_FLOATS):
        mark(~_np(pc.fill_null(pc.is_finite(col(name)), True)), 4 + j)
    base = 4 + len(_FLOATS)
    conf = _np(pc.fill_null(col("confidence"), 0.5))
    mark((conf < 0) | (conf > 1), base)
    probs = col("probs").combine_chunks() if n else pa.array([], pa.list_(pa.float32()))
    flat, parent = _np(pc.list_flatten(probs)), _np(pc.list_parent_indices(probs))
    bad_p = np.zeros(n, dtype=bool)
    bad_p[parent[~(np.isfinite(flat) & (flat >= 0) & (flat <= 1))]] = True
    mark(bad_p, base + 1)
    k = _np(pc.fill_null(pc.list_value_length(probs), -1))
    for j, name in enumerate(("top1", "label")):
        v = col(name)
        present, vals = _np(pc.is_valid(v)), _np(pc.fill_null(v, 0))
        mark(present & ((vals < 0) | ((k >= 0) & (vals >= k)) | ((k < 0) & (name == "top1"))),
             base + 2 + j)
    return code


def _between(table: pa.Table, name: str, lo: float | None, hi: float | None) -> np.ndarray:
    v = table.column(name)
    out = np.zeros(table.num_rows, dtype=bool)
    if lo is not None:
        out |= _np(pc.fill_null(pc.less(v, lo), False))
    if hi is not None:
        out |= _np(pc.fill_null(pc.greater(v, hi), False))
    return out


def batch_checks(
    table: pa.Table, known_cohorts: list[str] | None, known_versions: list[str] | None
) -> list[tuple[str, np.ndarray]]:
    """The suite's expectations (_expectations) as vectorised masks of offending rows:
    (description, mask) per expectation. A batch with any offending row fails as a whole,
    as it did when the suite ran per batch."""
    out = [
        ("event expect_column_values_to_be_in_set",
         ~_np(pc.is_in(table.column("event"), pa.array(list(EVENTS))))),
        ("seq expect_column_values_to_be_between", _between(table, "seq", 0, None)),
        ("confidence expect_column_values_to_be_between", _between(table, "confidence", 0.0, 1.0)),
        ("top1 expect_column_values_to_be_between", _between(table, "top1", 0, 100_000)),
        ("latency_ms expect_column_values_to_be_between",
         _between(table, "latency_ms", 0.0, 600_000.0)),
        ("memory_bytes expect_column_values_to_be_between", _between(table, "memory_bytes", 0, None)),
        ("energy_mj expect_column_values_to_be_between", _between(table, "energy_mj", 0.0, None)),
        ("label expect_column_values_to_be_between", _between(table, "label", 0, 100_000)),
        ("device_id expect_column_values_to_not_be_null", _np(pc.is_null(table.column("device_id")))),
    ]
    out += [(f"{c} expect_column_values_to_be_between",
             _between(table, c, -_FEATURE_BOUND, _FEATURE_BOUND)) for c in FEATURE_COLUMNS]
    if known_cohorts is not None:
        out.append(("cohort expect_column_values_to_be_in_set",
                    ~_np(pc.is_in(table.column("cohort"), pa.array(sorted(known_cohorts))))))
    if known_versions is not None:
        out.append(("model_version expect_column_values_to_be_in_set",
                    ~_np(pc.is_in(table.column("model_version"),
                                  pa.array(sorted({"", *known_versions}))))))
    return out

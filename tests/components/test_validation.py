"""The Great Expectations suite over a prepared data set: passes on good data, names each problem."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from components.prepare import prepare
from components.validation import ValidationResult, raise_if_failed, validate_prepared
from edgeops.errors import ValidationFailed
from edgeops.params import PrepareParams

PARAMS = PrepareParams(image_size=10, min_per_class=5)


def test_good_data_passes_and_writes_data_docs(tiny_folder: Path, tmp_path: Path) -> None:
    p = prepare(tiny_folder, PARAMS)
    result = validate_prepared(p, PARAMS, tmp_path / "docs")
    assert result.success, result.failures
    assert result.statistics["expectations"] >= 20
    assert result.statistics["per_class"] == {"bars_h": 20, "bars_v": 20, "diag": 20}
    assert result.statistics["skipped_files"] == 1
    assert result.report_html == tmp_path / "docs" / "index.html"
    summary = (tmp_path / "docs" / "summary.html").read_text()
    assert "PASSED all" in summary and "<script" not in summary  # the offline page beside Data Docs
    assert "prepared_manifest" in result.report_html.read_text() or any(
        (tmp_path / "docs" / "validations").rglob("*.html")
    )
    assert raise_if_failed(result, fail=True) is result


def test_leakage_duplicates_imbalance_and_bad_pixels_are_reported(tiny_folder: Path) -> None:
    p = prepare(tiny_folder, PARAMS)
    m = p.manifest.copy()
    test_hash = m.loc[m["split"] == "test", "sha256"].iloc[0]
    train_rows = m.index[m["split"] == "train"][:2]
    m.loc[train_rows, "sha256"] = test_hash  # same content in train (twice) and test
    x_test = p.x_test.copy()
    x_test[0, 0, 0, 0] = float("nan")
    bad = dataclasses.replace(p, manifest=m, x_test=x_test)
    result = validate_prepared(bad, PARAMS.model_copy(update={"min_per_class": 25}))
    assert not result.success and result.report_html is None
    text = "\n".join(result.failures)
    assert "content_hashes.n_splits" in text  # leakage across splits
    assert "manifest.['split', 'sha256'] expect_compound_columns_to_be_unique" in text
    assert "class_counts.total" in text and "min_value=25" in text
    assert "pixels.nonfinite" in text
    with pytest.raises(ValidationFailed, match="data validation failed 4 of"):
        raise_if_failed(result, fail=True)
    assert raise_if_failed(result, fail=False) is result


def test_imbalance_bound(tmp_path: Path) -> None:
    from tests.components.conftest import write_folder

    root = write_folder(tmp_path / "d", {"big": 40, "small": 10})
    p = prepare(root, PARAMS)
    result = validate_prepared(p, PARAMS.model_copy(update={"max_imbalance": 3.0}))
    assert [f.split(" ")[0] for f in result.failures] == ["class_counts.ratio_to_smallest"]
    assert isinstance(result, ValidationResult) and result.statistics["imbalance"] == 4.0

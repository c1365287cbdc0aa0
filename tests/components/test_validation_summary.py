"""The offline validation summary: verdict first, failures on top, nothing fetched from a network."""

from __future__ import annotations

import re

from components.validation_summary import ExpectationOutcome, observed_text, summary_html


def _outcomes() -> list[ExpectationOutcome]:
    return [
        ExpectationOutcome("manifest", "expect_column_values_to_be_unique", {"column": "path"}, True, ""),
        ExpectationOutcome("train_statistics", "expect_column_values_to_be_between",
                           {"column": "norm_mean", "min_value": -0.05, "max_value": 0.05}, False, "0.99"),
    ]


def test_verdict_counts_and_failures_first() -> None:
    page = summary_html("prepared data: digits", _outcomes(), {"images": 1797, "imbalance": 1.04})
    assert "FAILED 1 of 2 expectations" in page
    assert page.index("norm_mean") < page.index("expect_column_values_to_be_unique")
    assert "<th>images</th><td>1797</td>" in page


def test_page_is_self_contained() -> None:
    page = summary_html("t", _outcomes()[:1], {})
    assert "PASSED all 1 expectations" in page
    assert not re.search(r"(src|href)=\"?(https?:)?//", page)
    assert "<script" not in page


def test_values_are_escaped() -> None:
    bad = ExpectationOutcome("m<script>", "e", {"column": "<b>"}, True, "<i>")
    page = summary_html("<t>", [bad], {"<k>": "<v>"})
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_observed_text() -> None:
    assert observed_text({"unexpected_count": 2, "partial_unexpected_list": ["a", "b"]}) == "2 unexpected, e.g. ['a', 'b']"
    assert observed_text({"observed_value": 0.123456}) == "0.1235"
    assert observed_text({}) == ""

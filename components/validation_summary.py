"""A self-contained validation summary: one HTML page that renders offline, beside GE's Data Docs.

Great Expectations' Data Docs load their styles and scripts from CDNs, so in a browser without
internet (a reviewer behind a proxy, an air-gapped MLflow) they render unstyled, and their index
page lists runs rather than saying whether the data passed. This page has inline CSS only, no
script and no external reference: the verdict first, then the data set's figures, then every
expectation (suite, expectation, arguments, observed value, pass or fail) with failures on top.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#1d2330;max-width:1100px}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:22px 0 8px}
.verdict{display:inline-block;padding:4px 10px;border-radius:4px;font-weight:600;color:#fff}
.pass{background:#1f7a3a}.fail{background:#b3261e}
table{border-collapse:collapse;width:100%}th,td{border-bottom:1px solid #e3e6ea;padding:5px 8px;
text-align:left;vertical-align:top}th{background:#f4f6f8;font-weight:600}
td.ok{color:#1f7a3a;font-weight:600}td.bad{color:#b3261e;font-weight:600}
code{font:12px ui-monospace,monospace;word-break:break-all}.muted{color:#5f6b7a}
"""


@dataclass(frozen=True)
class ExpectationOutcome:
    """One evaluated expectation, as a reviewer reads it."""

    suite: str
    expectation: str
    arguments: Mapping[str, Any]
    success: bool
    observed: str


def _cell(value: Any) -> str:
    return html.escape(str(value))


def _arguments(arguments: Mapping[str, Any]) -> str:
    shown = {k: v for k, v in arguments.items() if k not in ("batch_id", "result_format")}
    text = ", ".join(f"{k}={v!r}" for k, v in shown.items())
    return f"<code>{_cell(text[:300])}{'…' if len(text) > 300 else ''}</code>"


def summary_html(title: str, outcomes: Sequence[ExpectationOutcome], figures: Mapping[str, Any]) -> str:
    """The page. `figures` are the data set's headline numbers (images, per split, imbalance...)."""
    failed = [o for o in outcomes if not o.success]
    verdict = (f'<span class="verdict fail">FAILED {len(failed)} of {len(outcomes)} expectations</span>'
               if failed else f'<span class="verdict pass">PASSED all {len(outcomes)} expectations</span>')
    figure_rows = "".join(
        f"<tr><th>{_cell(k)}</th><td>{_cell(v)}</td></tr>" for k, v in figures.items()
    )
    ordered = sorted(outcomes, key=lambda o: (o.success, o.suite))
    rows = "".join(
        "<tr>"
        f"<td>{_cell(o.suite)}</td><td>{_cell(o.expectation)}</td><td>{_arguments(o.arguments)}</td>"
        f"<td>{_cell(o.observed)}</td>"
        f"<td class=\"{'ok' if o.success else 'bad'}\">{'pass' if o.success else 'FAIL'}</td>"
        "</tr>"
        for o in ordered
    )
    return (
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{_cell(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{_cell(title)}</h1><p>{verdict}</p>"
        "<p class=\"muted\">Self-contained (no network needed). Great Expectations' own Data Docs are "
        "in <code>index.html</code> beside this file.</p>"
        f"<h2>Data set</h2><table>{figure_rows}</table>"
        "<h2>Expectations</h2><table><tr><th>suite</th><th>expectation</th><th>arguments</th>"
        f"<th>observed</th><th>result</th></tr>{rows}</table></body></html>"
    )


def observed_text(result: Mapping[str, Any]) -> str:
    """A GE result dict's observed value in a few words."""
    if result.get("unexpected_count"):
        sample = result.get("partial_unexpected_list") or []
        return f"{result['unexpected_count']} unexpected" + (f", e.g. {sample[:3]}" if sample else "")
    if result.get("observed_value") is not None:
        value = result["observed_value"]
        return f"{value:.4g}" if isinstance(value, float) else str(value)[:120]
    return ""

"""Human-readable summaries of a release (rich tables for the CLI, markdown for Prefect artifacts)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def _kb(n: Any) -> str:
    return f"{n / 1024:.1f} KiB" if isinstance(n, int | float) else "-"


def _pct(x: Any) -> str:
    return f"{100 * x:.2f}%" if isinstance(x, int | float) else "-"


def variant_table(result: dict[str, Any]) -> Table:
    table = Table(title=f"release {result['model_name']} (data {result['data_version'][:12]})")
    for col in ("variant", "accuracy", "vs float", "bytes", "gzip", "agreement", "registered"):
        table.add_column(col, justify="right" if col not in ("variant", "registered") else "left")
    float_acc = result["float"]["test_accuracy"]
    for target, v in result["variants"].items():
        reg = result["registered"].get(target, {})
        table.add_row(target, _pct(v["accuracy"]), f"{100 * (v['accuracy'] - float_acc):+.2f} pt",
                      _kb(v["bytes"]), _kb(v["gzip_bytes"]), _pct(v["agreement"]),
                      f"{reg['name']} v{reg['version']}" if reg else "-")
    for target, reason in result.get("conversion_failures", {}).items():
        table.add_row(target, "[red]failed[/]", "", "", "", "", reason[:60])
    for target, u in result.get("unverified", {}).items():  # Core ML: no runtime on this machine
        table.add_row(target, "[yellow]converted, not run[/]", "", _kb(u.get("bytes")), "", "",
                      f"{u['name']} v{u['version']}" if "name" in u else f"failed: {u['failed'][:50]}")
    return table


def cohort_table(result: dict[str, Any]) -> Table:
    """Which variant each cohort gets and why (or why none), one row per cohort."""
    table = Table(title="cohorts")
    for col in ("cohort", "profile", "published", "variant", "bundle", "why"):
        table.add_column(col, overflow="fold")
    for cohort, p in result["published"].items():
        if p.get("published"):
            table.add_row(cohort, p.get("profile", ""), p["role"], p.get("variant", p["target"]),
                          (p.get("bundle_id") or p.get("registered", ""))[:12], p.get("why", "")[:90])
        else:
            table.add_row(cohort, p.get("profile", ""), "[yellow]no release[/]", "-", "-",
                          p.get("reason", "")[:160])
    return table


def print_release(console: Console, result: dict[str, Any]) -> None:
    console.print(variant_table(result))
    console.print(cohort_table(result))
    f = result["float"]
    console.print(f"float model: test accuracy {_pct(f['test_accuracy'])}, {f['params']} parameters, "
                  f"{f['macs']} MACs; MLflow run {result['run_id']}")


def release_markdown(result: dict[str, Any]) -> str:
    lines = [f"# Release {result['model_name']}", "", f"data version `{result['data_version']}`, "
             f"MLflow run `{result['run_id']}`", "", "| target | accuracy | bytes | registered |",
             "|---|---|---|---|"]
    for target, v in result["variants"].items():
        reg = result["registered"].get(target, {})
        lines.append(f"| {target} | {_pct(v['accuracy'])} | {v['bytes']} | "
                     f"{reg.get('name', '-')} {reg.get('version', '')} |")
    lines += ["", "| cohort | profile | role | variant | why |", "|---|---|---|---|---|"]
    for cohort, p in result["published"].items():
        lines.append(f"| {cohort} | {p.get('profile', '')} | {p.get('role', 'not published')} | "
                     f"{p.get('variant', p.get('target', '-'))} | {p.get('why', p.get('reason', ''))} |")
    return "\n".join(lines)


def release_report(result: dict[str, Any], trigger: str) -> str:
    """The release report a reviewer reads on the parent MLflow run (description and artifact):
    what shipped to which cohort, against what, and each profile's blessing with its evidence."""
    f = result["float"]
    lines = [f"# Release {result['model_name']}", "",
             f"Trigger: {trigger}. Data version `{result['data_version']}`. Float model: test accuracy "
             f"{_pct(f['test_accuracy'])}, {f['params']} parameters.", "", "## What shipped where", "",
             "| cohort | outcome | registered model | version | target | bundle | replaces |",
             "|---|---|---|---|---|---|---|"]
    for cohort, p in sorted(result["published"].items()):
        if not p.get("published"):
            lines.append(f"| {cohort} | not published: {p.get('reason', '')} | | | | | |")
            continue
        name, _, version = str(p.get("registered", "")).rpartition("/")
        lines.append(f"| {cohort} | {p.get('role', '')} | {name} | {version} | {p.get('target', '')} | "
                     f"`{str(p.get('bundle_id', ''))[:12]}` | {p.get('replaces', '-') or '-'} |")
    lines += ["", "## Choice per device profile", "", "| profile | chosen variant | why |", "|---|---|---|"]
    for profile, choice in sorted(result["selection"].get("per_profile", {}).items()):
        lines.append(f"| {profile} | {choice.get('target') or '-'} | {choice.get('reason', '')} |")
    lines += ["", "## Blessing per variant and profile", "", "| variant | profile | verdict | evidence |",
              "|---|---|---|---|"]
    for variant, per_profile in sorted(result["selection"].get("blessings", {}).items()):
        for profile, b in sorted(per_profile.items()):
            verdict = "blessed" if b.get("blessed") else "not blessed"
            lines.append(f"| {variant} | {profile} | {verdict} | {'; '.join(b.get('reasons', ())) or '-'} |")
    failures = result.get("conversion_failures") or {}
    if failures:
        lines += ["", "## Conversions that failed", ""] + [f"- {t}: {r}" for t, r in sorted(failures.items())]
    return "\n".join(lines) + "\n"


def release_headline(result: dict[str, Any]) -> str:
    """One line per cohort for the run's description header."""
    shipped = [f"{c}: {p['registered']} ({p['role']})" for c, p in sorted(result["published"].items())
               if p.get("published")]
    held = [c for c, p in result["published"].items() if not p.get("published")]
    head = "Shipped " + ("; ".join(shipped) if shipped else "nothing")
    return head + (f". Not published: {', '.join(sorted(held))}." if held else ".")

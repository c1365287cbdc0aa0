"""Human-readable summaries of a release (rich tables for the CLI, markdown for Prefect artifacts),
the release report on the parent MLflow run, and the notes of each registered version."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from components.conversion import Variant
    from registry.data_versions import DataVersion

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
             f"MLflow run `{result['run_id']}`"] + cause_lines(result)
    lines += ["", "| target | accuracy | bytes | registered |", "|---|---|---|---|"]
    for target, v in result["variants"].items():
        reg = result["registered"].get(target, {})
        lines.append(f"| {target} | {_pct(v['accuracy'])} | {v['bytes']} | "
                     f"{reg.get('name', '-')} {reg.get('version', '')} |")
    lines += ["", "| cohort | profile | role | variant | replaces | why |", "|---|---|---|---|---|---|"]
    for cohort, p in result["published"].items():
        lines.append(f"| {cohort} | {p.get('profile', '')} | {p.get('role', 'not published')} | "
                     f"{p.get('variant', p.get('target', '-'))} | {_replaced(p) if p.get('published') else '-'} | "
                     f"{p.get('why', p.get('reason', ''))} |")
    return "\n".join(lines)


def release_report(result: dict[str, Any], trigger: str) -> str:
    """The release report a reviewer reads on the parent MLflow run (description and artifact):
    what shipped to which cohort, against what, and each profile's blessing with its evidence."""
    f = result["float"]
    lines = [f"# Release {result['model_name']}", "",
             f"Trigger: {trigger}. Data version `{result['data_version']}`. Float model: test accuracy "
             f"{_pct(f['test_accuracy'])}, {f['params']} parameters."]
    lines += cause_lines(result)
    lines += ["", "## What shipped where", "",
              "| cohort | outcome | registered model | version | target | bundle | replaces |",
              "|---|---|---|---|---|---|---|"]
    for cohort, p in sorted(result["published"].items()):
        if not p.get("published"):
            lines.append(f"| {cohort} | not published: {p.get('reason', '')} | | | | | |")
            continue
        name, _, version = str(p.get("registered", "")).rpartition("/")
        lines.append(f"| {cohort} | {p.get('role', '')} | {name} | {version} | {p.get('target', '')} | "
                     f"`{str(p.get('bundle_id', ''))[:12]}` | {_replaced(p)} |")
    lines += ["", "## Against what it replaces", "",
              "Each shipped variant and the stable it replaces, scored on this release's test split "
              "(the same images; one-sided paired non-inferiority test, lower bound at 95%).", "",
              "| cohort | replaces | shipped: test accuracy | stable: test accuracy | difference | "
              "lower bound | allowed drop | verdict |", "|---|---|---|---|---|---|---|---|"]
    lines += [replaces_row(cohort, p, result) for cohort, p in sorted(result["published"].items())
              if p.get("published")]
    lines += ["", "## Choice per device profile", "", "| profile | chosen variant | why |", "|---|---|---|"]
    for profile, choice in sorted(result["selection"].get("per_profile", {}).items()):
        lines.append(f"| {profile} | {choice.get('target') or '-'} | {choice.get('reason', '')} |")
    lines += ["", "## Blessing per variant and profile", "", "| variant | profile | verdict | evidence |",
              "|---|---|---|---|"]
    for variant, per_profile in sorted(result["selection"].get("blessings", {}).items()):
        for profile, b in sorted(per_profile.items()):
            verdict = ("blessed" if b.get("blessed") else "not blessed") + (f" (conversion gate on {g})" if (g := b.get("metrics", {}).get("gate_split")) else "")
            lines.append(f"| {variant} | {profile} | {verdict} | {'; '.join(b.get('reasons', ())) or '-'} |")
    failures = result.get("conversion_failures") or {}
    if failures:
        lines += ["", "## Conversions that failed", ""] + [f"- {t}: {r}" for t, r in sorted(failures.items())]
    return "\n".join(lines) + "\n"


def cause_run_entries(client: Any, run_ids: list[str], experiment_id: str) -> list[dict[str, str]]:
    """The monitoring window runs that started a release, as the report links them: each run's
    experiment and name from MLflow; a run MLflow cannot find keeps its id, in the release's
    experiment, and says so (the release itself does not depend on it)."""
    from mlflow.exceptions import MlflowException

    out = []
    for rid in run_ids:
        try:
            run = client.get_run(rid)
            out.append({"run_id": rid, "experiment_id": run.info.experiment_id,
                        "name": run.info.run_name or rid, "reasons": run.data.tags.get("reasons", "")})
        except MlflowException:
            out.append({"run_id": rid, "experiment_id": experiment_id, "name": f"{rid} (not found)"})
    return out


def cause_lines(result: dict[str, Any]) -> list[str]:
    """The report's "What triggered it" section: a link per monitoring window run (none when the
    release was not started by the monitor)."""
    from flows.links import mlflow_run_url, mlflow_ui_base

    causes = result.get("cause_runs") or []
    if not causes:
        return []
    base = result.get("mlflow_ui") or mlflow_ui_base("")
    lines = ["", "## What triggered it", "",
             "The monitoring windows (MLflow runs tagged `edgeops.stage=drift`) whose verdict fired "
             "the retrain:", ""]
    for c in causes:
        url = mlflow_run_url(base, c["experiment_id"], c["run_id"])
        why = str(c.get("reasons", "")).split(" | ")[0]
        lines.append(f"- [{c['name']}]({url})" + (f": {why[:200]}" if why else ""))
    return lines


def _replaced(p: dict[str, Any]) -> str:
    r = p.get("replaces")
    if not r:
        return "nothing (first release)" if p.get("role") == "stable" else "-"
    return f"{r['registered_model']} v{r['version']}"


def replaces_row(cohort: str, p: dict[str, Any], result: dict[str, Any]) -> str:
    """One report row: the shipped variant against the stable it replaces on the same images,
    from the blessing of the cohort's profile (flows.selection scores the stable there)."""
    from components.evidence import wilson

    r = p.get("replaces")
    if not r:
        return f"| {cohort} | {_replaced(p)} | | | | | | |"
    b = result["selection"].get("blessings", {}).get(p.get("variant", ""), {}).get(p.get("profile", ""), {})
    m = b.get("metrics", {})
    v = m.get("vs_stable")
    if not v:
        return (f"| {cohort} | {_replaced(p)} | | not scored on this test split (no stable predictions "
                f"for profile {p.get('profile')}) | | | | |")
    lo, hi = m.get("accuracy_ci") or (float("nan"), float("nan"))
    n = int(v["n"])
    base = float(m["baseline_accuracy"])
    slo, shi = wilson(round(base * n), n)
    stables = {str(q["replaces"]) for q in result["published"].values()
               if q.get("profile") == p.get("profile") and q.get("published") and q.get("replaces")}
    note = "" if len(stables) <= 1 else " (scored: the profile's least accurate stable)"
    return (f"| {cohort} | {_replaced(p)}{note} | {m['accuracy']:.4f} ({lo:.4f}-{hi:.4f}) | "
            f"{base:.4f} ({slo:.4f}-{shi:.4f}), n={n} | {v['difference']:+.4f} | {v['low']:+.4f} | "
            f"{v['margin']:g} | {v['outcome']} (p={v['p_value']:.3g}) |")


def version_notes(key: str, variant: Variant, data_version: DataVersion, blessings: dict[str, Any],
                  previous_data: str | None) -> str:
    """The model version description a reviewer reads in the MLflow UI. It opens with the
    verdict per profile, then names every reference it compares with, so two numbers never
    seem to disagree: the float model (the blessing's reference), the model the file was
    converted from (for a compressed variant, its fine-tuned Keras model) and the cohort's
    stable, each difference on the same test images."""
    from components.evidence import wilson
    from flows.stages import variant_method

    judged = {p: b for p, b in sorted(blessings.items()) if b.get("outcome") != "not chosen"}
    blessed = [p for p, b in judged.items() if b.get("blessed")]
    refused = {p: b for p, b in judged.items() if not b.get("blessed")}
    head = []
    if blessed:
        head.append(f"Blessed for {', '.join(blessed)}")
    for p, b in refused.items():
        head.append(f"not blessed for {p}: {_why_not(b)}")
    if not judged:
        head.append("Not chosen for any profile (another variant ranks first on validation for each)")
    verdict = "; ".join(head)
    lines = [f"Verdict: {verdict[0].upper()}{verdict[1:]}.", "", f"Release notes for {key} ({variant.target})."]
    lines.append(f"Data version {data_version.md5} ({data_version.nfiles} files)"
                 + (f"; the previous version trained on {previous_data}." if previous_data
                    and previous_data != data_version.md5
                    else "; same data as the previous version." if previous_data else "; first release."))
    k = round(variant.accuracy * variant.n_test)
    lo, hi = wilson(k, variant.n_test)
    val = f"Validation accuracy {variant.val_accuracy:.4f}. " if variant.val_accuracy is not None else ""
    lines.append(f"{val}Test accuracy {variant.accuracy:.4f} (95% CI {lo:.4f}-{hi:.4f}, {k}/{variant.n_test} "
                 f"test images); {variant.bytes} bytes ({variant.gzip_bytes} gzipped).")
    metrics = next((b["metrics"] for b in judged.values() if "float_accuracy" in b.get("metrics", {})), {})
    method = variant_method(key)
    source = "the float model" if method == "float" else f"its fine-tuned {method} Keras model"
    conversion = (f"Conversion: {variant.accuracy - variant.float_accuracy:+.4f} against {source} it was converted "
                  f"from ({variant.float_accuracy:.4f}), top-1 agreement {variant.agreement:.4f}.")
    if method != "float" and "float_accuracy" in metrics:
        fa = float(metrics["float_accuracy"])
        lines.append(f"Against the float model ({fa:.4f}): {variant.accuracy - fa:+.4f}, of which "
                     f"{variant.float_accuracy - fa:+.4f} from {method} and "
                     f"{variant.accuracy - variant.float_accuracy:+.4f} from conversion.")
    lines.append(conversion)
    lines += ["", "Per device profile (chosen on validation, judged once on test; one-sided paired "
              "non-inferiority on the same test images):"]
    for profile, b in sorted(blessings.items()):
        if b.get("outcome") == "not chosen":
            lines.append(f"- {profile}: not chosen ({'; '.join(b.get('reasons', ()))})")
            continue
        lines.append(f"- {profile}: {'blessed' if b.get('blessed') else 'not blessed'}. " + _profile_line(b))
    return "\n".join(lines)


def _paired(what: str, v: dict[str, Any]) -> str:
    return (f"against {what}: {v['outcome']}, difference {v['difference']:+.4f} (95% lower bound "
            f"{v['low']:+.4f}, allowed drop {v['margin']:g}, p={v['p_value']:.3g}, {v['wins']} wins / "
            f"{v['losses']} losses on {v['n']} images)")


def _profile_line(b: dict[str, Any]) -> str:
    m = b.get("metrics", {})
    parts = []
    if "vs_float" in m:
        parts.append(_paired(f"the float model ({m['float_accuracy']:.4f})", m["vs_float"]))
    elif "accuracy_drop" in m:
        parts.append(f"against the float model ({m['float_accuracy']:.4f}): {-m['accuracy_drop']:+.4f} "
                     "(point estimates, no paired predictions)")
    if "vs_stable" in m:
        parts.append(_paired(f"the cohort's stable ({m['baseline_accuracy']:.4f})", m["vs_stable"]))
    elif m.get("baseline_accuracy") is None:
        parts.append("no stable yet")
    other = [r for r in b.get("reasons", ()) if "against its" not in r and "below its float parent" not in r
             and "below the cohort's stable" not in r]
    if other:
        parts.append("budgets: " + "; ".join(other))
    return "; ".join(parts) + "."


def _why_not(b: dict[str, Any]) -> str:
    """The first failed check of a blessing, in the notes' own words."""
    m = b.get("metrics", {})
    for key, what in (("vs_float", "the float model"), ("vs_stable", "the cohort's stable")):
        v = m.get(key)
        if v and v.get("outcome") != "pass":
            return (f"{v['outcome']} against {what} (difference {v['difference']:+.4f}, lower bound "
                    f"{v['low']:+.4f}, allowed drop {v['margin']:g})")
    return "; ".join(b.get("reasons", ())) or "no passing blessing"


def release_headline(result: dict[str, Any]) -> str:
    """One line per cohort for the run's description header."""
    shipped = [f"{c}: {p['registered']} ({p['role']})" for c, p in sorted(result["published"].items())
               if p.get("published")]
    held = [c for c, p in result["published"].items() if not p.get("published")]
    head = "Shipped " + ("; ".join(shipped) if shipped else "nothing")
    return head + (f". Not published: {', '.join(sorted(held))}." if held else ".")

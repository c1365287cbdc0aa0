"""`edgeops stage ...`: the DVC adapter. Each command runs one stage over local paths through the
same functions the Prefect tasks call (flows/stages.py) and writes the metrics file that
dvc.yaml declares. No MLflow here: DVC tracks these runs; `edgeops pipeline run` tracks in MLflow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgeops.console import make_console

console = make_console()
ParamsOpt = Annotated[Path, typer.Option(help="params.yaml with one key per stage.")]


def _params(path: Path):
    from edgeops.params import load_params

    return load_params(path, required=path != Path("params.yaml"))  # a named file must exist


def register_stage_commands(app: typer.Typer) -> None:
    app.command("prepare")(stage_prepare)
    app.command("train")(stage_train)
    app.command("convert")(stage_convert)
    app.command("evaluate")(stage_evaluate)


def stage_prepare(
    data: Annotated[Path, typer.Option(help="Image folder: one subfolder per class.")],
    out: Annotated[Path, typer.Option(help="Output folder for the prepared splits.")],
    metrics: Annotated[Path, typer.Option(help="Metrics JSON for DVC.")] = Path("build/metrics/prepare.json"),
    report: Annotated[Path, typer.Option(help="Great Expectations data docs folder.")] = Path("build/validation"),
    params: ParamsOpt = Path("params.yaml"),
    splits: Annotated[Path | None, typer.Option(
        help="Split ledger (a splits.csv kept with the data, e.g. data/digits.splits.csv): images it lists keep "
             "their split; it is updated with the new ones.")] = None,
) -> None:
    """Decode, resize, split, compute normalisation statistics, validate with Great Expectations."""
    from flows import stages

    p = _params(params).prepare
    prepared = stages.prepare(data, p, out, splits)
    result = stages.validate(prepared, p, report)
    stages.write_json(metrics, {"validation_success": result.success, "failures": result.failures,
                                **result.statistics})
    stages.raise_if_invalid(result, p)
    console.print(f"prepared {len(prepared.manifest)} images -> {out}; validation "
                  f"{'passed' if result.success else 'FAILED: ' + '; '.join(result.failures)}")


def stage_train(
    prepared: Annotated[Path, typer.Option(help="Prepared splits from `stage prepare`.")],
    out: Annotated[Path, typer.Option(help="Output folder for the float model.")],
    metrics: Annotated[Path, typer.Option(help="Metrics JSON for DVC.")] = Path("build/metrics/train.json"),
    plots: Annotated[Path, typer.Option(help="Folder for plots and the per-epoch CSV.")] = Path("build/plots"),
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Train the float model (optionally distilled from a teacher)."""
    import csv

    from components import plots as figures
    from components.prepare import PreparedData
    from flows import stages

    data = PreparedData.load(prepared)
    result = stages.train(data, _params(params).train, out)
    plots.mkdir(parents=True, exist_ok=True)
    keys = list(result.history)
    with (plots / "train_history.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["epoch", *keys])
        for i in range(len(result.history[keys[0]]) if keys else 0):
            writer.writerow([i, *(result.history[k][i] for k in keys)])
    figures.training_curves(result.history, plots / "training_curves.png")
    figures.confusion_matrix(result.confusion, result.labels, plots / "confusion_matrix.png")
    stages.write_json(metrics, {"test_accuracy": result.test_accuracy, "val_accuracy": result.val_accuracy,
                                "params": result.params_count, "macs": result.macs,
                                "train_seconds": result.train_seconds, "distilled": result.distilled})
    console.print(f"trained: test accuracy {result.test_accuracy:.4f}, {result.params_count} parameters -> {out}")


def stage_convert(
    model: Annotated[Path, typer.Option(help="Float model folder from `stage train`.")],
    prepared: Annotated[Path, typer.Option(help="Prepared splits from `stage prepare`.")],
    out: Annotated[Path, typer.Option(help="Output folder for the variants.")],
    metrics: Annotated[Path, typer.Option(help="Metrics JSON for DVC.")] = Path("build/metrics/convert.json"),
    params: ParamsOpt = Path("params.yaml"),
    devices: Annotated[Path, typer.Option(help="devices.yaml")] = Path("devices.yaml"),
) -> None:
    """Convert to every target and verify each file in its real runtime."""
    from components.prepare import PreparedData
    from components.profiles import load_devices
    from flows import stages

    p = _params(params).convert
    data = PreparedData.load(prepared)
    keras_model = stages.load_model(model)
    report = {}
    for target in stages.targets_for(p, load_devices(devices)):
        variant = stages.convert(keras_model, target, data, p, out)
        report[target] = variant.to_dict()
        _, accuracies = stages.accuracy_intervals(variant)
        console.print(f"{target}: {accuracies}; {variant.bytes} bytes; top-1 agreement with the float model "
                      f"{variant.gate_agreement if variant.gate_agreement is not None else variant.agreement:.4f} "
                      f"on {variant.gate_n or variant.n_test} {variant.gate_split} images (the gate), "
                      f"{variant.agreement:.4f} on test")
    stages.write_json(out / "variants.json", report)
    stages.write_json(metrics, {t: {k: v[k] for k in ("accuracy", "bytes", "gzip_bytes", "agreement")}
                                for t, v in report.items()})


def stage_evaluate(
    variants: Annotated[Path, typer.Option(help="Variants folder from `stage convert`.")],
    out: Annotated[Path, typer.Option(help="Output folder for blessings and the selection.")],
    metrics: Annotated[Path, typer.Option(help="Metrics JSON for DVC.")] = Path("build/metrics/evaluate.json"),
    params: ParamsOpt = Path("params.yaml"),
    devices: Annotated[Path, typer.Option(help="devices.yaml")] = Path("devices.yaml"),
) -> None:
    """Bless every variant against every profile and pick the best blessed one per profile."""
    from components.profiles import load_devices
    from flows import stages
    from flows.selection import evaluate_variants

    catalog = load_devices(devices)
    selection = evaluate_variants(variants / "variants.json", catalog, _params(params).evaluate, out)
    lines = with_accuracy_intervals(selection, variants / "variants.json")
    stages.write_json(metrics, selection)
    for profile, choice in selection.items():
        console.print(f"{profile}: {choice.get('target') or 'NO RELEASE'} {choice.get('reason', '')}")
        if lines.get(profile):
            console.print(f"  {lines[profile]}")


def with_accuracy_intervals(selection: dict[str, dict], variants_json: Path) -> dict[str, str]:
    """Give each profile's chosen (else validation's candidate) variant its accuracies with 95%
    intervals, in place (`accuracy_low`, `accuracy_high`, `n_test`, `val_accuracy_*`, `n_validation`);
    returns one console line per profile that has such a variant."""
    import json

    from components.conversion import Variant
    from flows import stages

    variants = {n: Variant.from_dict(d) for n, d in json.loads(Path(variants_json).read_text()).items()}
    lines = {}
    for profile, choice in selection.items():
        name = choice.get("target") or choice.get("candidate")
        if name not in variants:
            continue
        metrics, line = stages.accuracy_intervals(variants[name])
        if not choice.get("target"):  # nothing released: `accuracy` stays None, validation's candidate only
            metrics = {k: v for k, v in metrics.items() if k.startswith(("val_", "n_validation"))}
        choice.update(metrics)
        if line:
            lines[profile] = f"{name}: {line}"
    return lines

"""Benchmark for training and distillation (issue 3).

    .venv/bin/python benchmarks/training.py [--data DIR] [--seeds 3] [--epochs 20] [--sweep]

Trains, on the example digits (or DIR), the teacher, the student alone and the student
distilled from that teacher, all at the params.yaml defaults, and prints their test accuracy,
errors, parameters, MACs and training time next to Hinton et al. (2015) on MNIST (errors on
10,000 test images: 146 student alone, 74 distilled, 67 teacher). Goals: the float student
reaches >= 97% test accuracy and distillation closes >= half the student-teacher gap.
With several seeds the teacher is trained once and the students once per seed (mean errors).
`--sweep` adds the alpha x rho grid of params.yaml and its Pareto front.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from components.data import write_example_digits  # noqa: E402
from components.plots import pareto_png  # noqa: E402
from components.prepare import prepare  # noqa: E402
from components.sweep import pareto_front, run_sweep  # noqa: E402
from components.training import TrainResult, train, train_teacher  # noqa: E402
from edgeops.params import DistillParams, load_params  # noqa: E402

HINTON = {"teacher": 67, "student alone": 146, "distilled student": 74}  # MNIST test errors


def _row(
    table: Table, name: str, accs: list[float], n_test: int, params: int, macs: int, secs: float
) -> float:
    """One model's row; returns its mean test errors."""
    errors = [round((1.0 - a) * n_test) for a in accs]
    spread = f" ± {statistics.stdev(accs):.4f}" if len(accs) > 1 else ""
    mean_err = statistics.mean(errors)
    table.add_row(
        name, f"{statistics.mean(accs):.4f}{spread}", f"{mean_err:.1f} / {n_test}", f"{params:,}", f"{macs:,}",
        f"{secs:.1f}", f"{HINTON[name]} / 10,000",
    )
    return mean_err


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, help="image folder (default: the bundled digits)")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--seeds", type=int, default=3, help="student seeds (360 test images: 1 error = 0.28%%)")
    ap.add_argument("--epochs", type=int, help="override train.epochs and teacher_epochs")
    ap.add_argument("--sweep", action="store_true")
    ap.add_argument("--out", type=Path, default=Path("build/benchmarks"), help="where the Pareto PNG goes")
    args = ap.parse_args()
    console = Console(width=150)
    params = load_params(args.params)
    train_params = params.train
    if args.epochs:
        distill = train_params.distill.model_copy(update={"teacher_epochs": args.epochs})
        train_params = train_params.model_copy(update={"epochs": args.epochs, "distill": distill})

    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:
            data = Path(tmp) / "digits"
            write_example_digits(data)
        prepared = prepare(data, params.prepare)
        n_test = len(prepared.y_test)
        console.print(f"data: {data}  train/val/test = {len(prepared.y_train)}/{len(prepared.y_val)}/{n_test}")

        on = DistillParams(**{**train_params.distill.model_dump(), "enabled": True})
        off = DistillParams(**{**train_params.distill.model_dump(), "enabled": False})
        teacher, t_report = train_teacher(prepared, train_params.model_copy(update={"distill": on}))
        alone, distilled = [], []
        for i in range(args.seeds):
            seed = train_params.seed + i
            alone.append(train(prepared, train_params.model_copy(update={"seed": seed, "distill": off})))
            distilled.append(
                train(prepared, train_params.model_copy(update={"seed": seed, "distill": on}), teacher=teacher)
            )
            console.print(f"seed {seed}: alone {alone[-1].test_errors} errors, distilled {distilled[-1].test_errors}")

        table = Table(title=f"Training on {data.name} (test accuracy from inference-mode predictions)")
        for col in ("model", "test accuracy", "test errors", "params", "MACs", "train s", "Hinton MNIST errors"):
            table.add_column(col, justify="left" if col == "model" else "right")
        e_teacher = _row(table, "teacher", [t_report.test_accuracy], n_test, t_report.params_count,
                         t_report.macs, t_report.train_seconds)
        e_alone = _row(table, "student alone", _accs(alone), n_test, alone[0].params_count, alone[0].macs,
                       statistics.mean(r.train_seconds for r in alone))
        e_dist = _row(table, "distilled student", _accs(distilled), n_test, distilled[0].params_count,
                      distilled[0].macs, statistics.mean(r.train_seconds for r in distilled))
        console.print(table)

        student_acc = statistics.mean(r.test_accuracy for r in distilled + alone)
        gap = e_alone - e_teacher
        closed = (e_alone - e_dist) / gap if gap > 0 else float("nan")
        hinton = (HINTON["student alone"] - HINTON["distilled student"]) / (HINTON["student alone"] - HINTON["teacher"])
        console.print(f"goal: float student >= 97%: mean {student_acc:.4f} -> {'PASS' if student_acc >= 0.97 else 'FAIL'}")
        verdict = "no gap to close" if gap <= 0 else ("PASS" if closed >= 0.5 else "FAIL")
        console.print(f"goal: distillation closes >= 50% of the gap: {closed:.0%} (Hinton MNIST {hinton:.0%}) -> {verdict}")

        if args.sweep:
            points = run_sweep(data, params)
            sweep = Table(title="alpha x rho sweep (* = on the Pareto front by MACs)")
            for col in ("alpha", "rho", "test accuracy", "params", "MACs", "train s"):
                sweep.add_column(col, justify="right")
            front = set(pareto_front(points, "macs"))
            for p in sorted(points, key=lambda p: p.macs):
                star = "*" if p in front else ""
                sweep.add_row(f"{p.alpha:g}{star}", str(p.rho), f"{p.test_accuracy:.4f}", f"{p.params:,}",
                              f"{p.macs:,}", f"{p.train_seconds:.1f}")
            console.print(sweep)
            png = args.out / "training_pareto.png"
            pareto_png(points, png)
            console.print(f"Pareto plot: {png}")
        load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
        console.print(f"load average at the end (1/5/15 min): {load} on {os.cpu_count()} cores: times scale with it")


def _accs(results: list[TrainResult]) -> list[float]:
    return [r.test_accuracy for r in results]


if __name__ == "__main__":
    main()

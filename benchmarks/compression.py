"""Compression benchmark on the example digits: a row per (model, parent, target) variant.

Usage: .venv/bin/python benchmarks/compression.py [--models small,large] [--quick] [--out DIR]

Every variant is converted and verified by components.conversion (loaded in its real runtime,
accuracy measured from the file on the test split) and measured by components.measure. Two
models: `small` is the pipeline's student (alpha 1, ~10k parameters, where the flatbuffer's fixed
overhead hides compression) and `large` the same family at alpha 4 (~250k parameters, where
weights dominate the file and compute dominates latency). Goals come from issue 4.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402

import components  # noqa: E402,F401  (TF_USE_LEGACY_KERAS before tensorflow)
from components.compression import compress  # noqa: E402
from components.conversion import convert_and_verify  # noqa: E402
from edgeops.errors import ConversionError  # noqa: E402
from edgeops.params import CompressParams, ConvertParams, DistillParams, PrepareParams, TrainParams  # noqa: E402

# "tflite-int8-pt": the same full-int8 target with per-tensor weights (ConvertParams.int8_per_channel)
FLOAT_TARGETS = (
    "tflite-f32",
    "tflite-f16",
    "tflite-dynamic",
    "tflite-int8",
    "tflite-int8-pt",
    "onnx",
)
PARENT_TARGETS = {
    "prune": ("tflite-f32", "tflite-int8", "tflite-int8-pt"),
    "cluster": ("tflite-int8", "tflite-int8-pt"),
    "prune_cluster": ("tflite-int8", "tflite-int8-pt"),
    "qat": ("tflite-int8",),
    "pqat": ("tflite-int8",),
    "pcqat": ("tflite-int8",),
}


def prepared_digits(work: Path):
    from components.data import write_example_digits
    from components.prepare import prepare

    write_example_digits(work / "digits")
    return prepare(work / "digits", PrepareParams(image_size=32))


def keras_gzip_bytes(model, path: Path) -> int:
    """The tfmot tutorials' baseline: the float Keras model as .h5, gzipped."""
    model.save(str(path), include_optimizer=False, save_format="h5")
    return len(gzip.compress(path.read_bytes(), compresslevel=9, mtime=0))


def bench_model(name: str, alpha: float, prepared, args, work: Path) -> list[dict]:
    from components.training import train

    t0 = time.perf_counter()
    trained = train(prepared, TrainParams(alpha=alpha, epochs=args.epochs, distill=DistillParams(enabled=False)))
    print(
        f"[{name}] trained alpha={alpha} in {time.perf_counter() - t0:.0f}s: test acc {trained.test_accuracy:.4f}, {trained.params_count} params",
        flush=True,
    )
    keras_gz = keras_gzip_bytes(trained.model, work / f"{name}.h5")
    cparams = CompressParams(
        methods=list(PARENT_TARGETS),
        prune_sparsity=0.8,
        prune_epochs=args.prune_epochs,
        clusters=16,
        cluster_epochs=args.tune_epochs,
        qat_epochs=args.tune_epochs,
        learning_rate=3e-4,
    )
    t0 = time.perf_counter()
    parents = {"float": trained.model} | {
        k: c.model for k, c in compress(trained.model, prepared, cparams).items()
    }
    print(
        f"[{name}] compressed {len(parents) - 1} parents in {time.perf_counter() - t0:.0f}s",
        flush=True,
    )
    # the pipeline gates at 0.99 agreement; the benchmark measures below it and reports agreement
    convert = ConvertParams(latency_runs=args.runs, representative_samples=200, min_agreement=0.9)
    per_tensor = convert.model_copy(update={"int8_per_channel": False})
    rows = []
    for parent, model in parents.items():
        for target in FLOAT_TARGETS if parent == "float" else PARENT_TARGETS[parent]:
            row = {"model": name, "parent": parent, "target": target}
            try:
                real = "tflite-int8" if target == "tflite-int8-pt" else target
                params = per_tensor if target == "tflite-int8-pt" else convert
                v = convert_and_verify(model, real, prepared, params, work / name / parent / target)
            except ConversionError as exc:
                rows.append(row | {"error": exc.reason})
                print(f"[{name}] {parent}/{target}: {exc.reason}", flush=True)
                continue
            m = v.measurement
            rows.append(
                row
                | {
                    "accuracy": v.accuracy,
                    "agreement": v.agreement,
                    "bytes": v.bytes,
                    "gzip_bytes": v.gzip_bytes,
                    "weight_bytes": m.weight_bytes,
                    "params": m.parameters,
                    "macs": m.macs,
                    "latency_ms": m.host_latency_ms,
                    "keras_gzip_bytes": keras_gz,
                }
            )
    table = pd.DataFrame(rows)
    base = table[(table.parent == "float") & (table.target == "tflite-f32")].iloc[0]
    table["d_acc_pts"] = 100 * (table.accuracy - base.accuracy)
    table["x_vs_f32"] = base.bytes / table.bytes
    table["w_x_vs_f32"] = base.weight_bytes / table.weight_bytes  # weights only, no format overhead
    table["x_gz_vs_keras_gz"] = keras_gz / table.gzip_bytes
    table["speedup"] = base.latency_ms / table.latency_ms
    return table.to_dict("records")


def _row(t: pd.DataFrame, parent: str, target: str) -> pd.Series | None:
    hit = t[(t.parent == parent) & (t.target == target) & t.accuracy.notna()]
    return hit.iloc[0] if len(hit) else None


def goals(table: pd.DataFrame) -> list[tuple[str, bool, str]]:
    out = []
    for name, t in table.groupby("model"):
        f32, i8, f16 = (_row(t, "float", x) for x in ("tflite-f32", "tflite-int8", "tflite-f16"))
        if i8 is not None:
            out.append(
                (
                    f"{name}: int8 >= 3.9x smaller than f32, <= 1 pt lost",
                    i8.x_vs_f32 >= 3.9 and i8.d_acc_pts >= -1,
                    f"file {i8.x_vs_f32:.2f}x (weights {i8.w_x_vs_f32:.2f}x), {i8.d_acc_pts:+.2f} pts",
                )
            )
            out.append(
                (
                    f"{name}: int8 host latency >= 1.5x faster than f32",
                    i8.speedup >= 1.5,
                    f"{i8.speedup:.2f}x ({f32.latency_ms:.3f} -> {i8.latency_ms:.3f} ms)",
                )
            )
        pt = _row(t, "float", "tflite-int8-pt")
        if pt is not None:
            out.append(
                (
                    f"{name}: int8 per-tensor >= 3.9x smaller than f32, <= 1 pt lost",
                    pt.x_vs_f32 >= 3.9 and pt.d_acc_pts >= -1,
                    f"file {pt.x_vs_f32:.2f}x (weights {pt.w_x_vs_f32:.2f}x), {pt.d_acc_pts:+.2f} pts",
                )
            )
        if f16 is not None:
            out.append(
                (
                    f"{name}: f16 >= 1.95x smaller, <= 0.1 pt lost",
                    f16.x_vs_f32 >= 1.95 and f16.d_acc_pts >= -0.1,
                    f"{f16.x_vs_f32:.2f}x, {f16.d_acc_pts:+.2f} pts",
                )
            )
        ok = t[
            t.parent.isin(["prune", "pqat"])
            & t.target.str.startswith("tflite-int8")
            & (t.d_acc_pts >= -1)
        ]
        best = ok.x_gz_vs_keras_gz.max() if len(ok) else 0.0
        out.append(
            (
                f"{name}: prune80+int8+gzip >= 10x vs gzipped Keras, <= 1 pt",
                best >= 10,
                f"{best:.1f}x",
            )
        )
        within = t[t.d_acc_pts >= -1]
        if len(within):
            top = within.loc[within.x_gz_vs_keras_gz.idxmax()]
            out.append(
                (
                    f"{name}: best combined >= 15x (<= 1 pt)",
                    top.x_gz_vs_keras_gz >= 15,
                    f"{top.x_gz_vs_keras_gz:.1f}x ({top.parent}/{top.target}, {top.d_acc_pts:+.2f} pts)",
                )
            )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="small,large")
    ap.add_argument("--quick", action="store_true", help="few epochs: a smoke run, not the figures")
    ap.add_argument(
        "--out", type=Path, default=None, help="write compression.csv and goals.json here"
    )
    args = ap.parse_args()
    args.epochs, args.prune_epochs, args.tune_epochs, args.runs = (
        (3, 2, 1, 20) if args.quick else (20, 8, 4, 200)
    )
    alphas = {"small": 1.0, "large": 4.0}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        prepared = prepared_digits(work)
        rows = []
        for name in args.models.split(","):
            rows += bench_model(name, alphas[name], prepared, args, work)
    table = pd.DataFrame(rows)
    cols = [
        "model",
        "parent",
        "target",
        "accuracy",
        "d_acc_pts",
        "bytes",
        "gzip_bytes",
        "weight_bytes",
        "x_vs_f32",
        "w_x_vs_f32",
        "x_gz_vs_keras_gz",
        "agreement",
        "latency_ms",
        "speedup",
    ] + (["error"] if "error" in table else [])
    pd.set_option("display.width", 250)
    print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    results = goals(table)
    for text, ok, value in results:
        print(f"{'PASS' if ok else 'MISS'}  {text}: {value}")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out / "compression.csv", index=False)
        (args.out / "goals.json").write_text(
            json.dumps([{"goal": g, "met": bool(o), "value": v} for g, o, v in results], indent=2)
        )


if __name__ == "__main__":
    main()

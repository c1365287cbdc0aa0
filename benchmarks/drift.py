"""Harm-aware monitoring benchmark: retrain decisions on harmless and harmful shifts, estimated
accuracy against the truth, a frozen camera, clustered nulls; against Evidently's default preset.

Run: `.venv/bin/python benchmarks/drift.py [--seeds 3] [--reps 6] [--json out.json]` (one
variant trained and one field drawn per seed; each figure printed per seed and as the mean with
its 95% t-interval over seeds; `--json` writes the means; about 2.5 minutes on 2 cores at the defaults);
`--quick` (1 seed, 2 windows per cell, 4 epochs; under a minute) for a smoke run; `--scale` adds the
100,000 x 50 drift job timing.

Setup: scikit-learn's bundled digits (1,797 real images) at 32x32 through the pipeline's own
preprocessing; a MobileNet-style student (components.architectures) trained with the pipeline's
augmentation (components.augmentation, +-10 deg rotation, +-10% brightness and contrast) on
classes 0-8 only (class 9 is the unseen class), converted to a float TFLite file and run in the
LiteRT interpreter, as a device runs it. Its temperature is fitted on the validation split
(components.calibration) and the monitoring reference is the validation split through the
variant (monitoring.reference.build_reference), as a release ships them.

Windows: field frames from the held-out pool (never trained or validated on) through a
scenario, from 10 devices, stamped inside one hour and cut by the product's own windowing
(monitoring.windows); 240 or 1,000 rows each, 10% of them labelled at random (the fleet's label
rate: ~24 and ~100 labels). "Clustered": each device sees its own slice of scenes under its own
mild lighting, so rows are not independent. Each window is judged by the product's harm verdict
(monitoring.performance.estimate_harm: the window's accuracy estimated by prediction-powered
inference, CBPE rectified by the window's labels once it has harm_min_labels = 20 of them, CBPE
alone before; harm when CBPE against the reference's CBPE, or the PPI estimate against the
reference's measured accuracy, drops beyond the margin at alpha/2 each), its drift explanation
(monitoring.drift.data_drift) and its segments (monitoring.segments), and by Evidently's
DataDriftPreset at its defaults (its per-column default tests at 0.05, dataset drift when half
the columns drift) on the same windows: the "retrain on any drift" baseline. A scenario is
harmful when it costs >= 2 points of true accuracy on the field pool.

Goals (issue 13): <= 5% retrain decisions on harmless shifts; >= 95% on shifts costing >= 2 points
at 1,000 rows; estimate within 2 points of the true accuracy (mean absolute error over
scenarios); a frozen camera on 1 of 10 devices flagged in >= 95% of windows; <= 5% false alarms
under clustered nulls. Decisions here are per window (the policy's 2-window debounce would
lower false retrains further).

Measured 2026-12-03 at the defaults (3 seeds x 6 windows per cell, 12 epochs; validation
accuracy 97.2 / 96.4 / 96.4%, temperatures 0.39-0.51, ECE ~0.11 -> 0.02; 147 s on 2 cores
shared with a compression run), mean [95% t-interval over seeds, clipped to [0, 1]]:
retrain on harmless shifts 2% [0, 10%] (per seed 0 / 6 / 0%; Evidently's preset 54%); on shifts
costing >= 2 points at 1,000 rows 78% [33, 100%] (60 / 97 / 79%; preset 91%); clustered null 0%
(preset 28%); frozen camera 100%; estimate error 1.2 points [0.6, 1.9] over scenarios (the
day before, when a window with under 20 labels reported CBPE alone: 2.7; CBPE alone always: 24),
3.1 per window, 0.8 where the model still gets >= 90% right. Goals met: harmless, clustered
null, frozen camera, estimate error; not met: harmful at 1,000 rows.

Why the harmful goal cannot be met on this evidence, with any decision rule: the goals ask for
<= 5% retrains where a shift costs < 1 point and >= 95% where it costs >= 2, so a drop must be
resolved to a standard error of 1 / (2 x 1.645) = 0.30 points. The reference alone is known
worse than that: 250 validation rows give the variant's accuracy to 1.0-1.2 points by labels,
and its mean calibrated confidence to 0.6 points (sd of confidence ~0.09-0.10; printed per seed
as "reference: ..."). That error is one offset per seed shared by all its windows, which is what
the per-seed rates show: seed 1's validation read 1.5 points above its field (97 / 6%), seed 0's
read even (60 / 0%). Moving the level or the margin trades one goal for the other (measured
2026-12-03, 3 seeds, harmless / harmful at 1,000 rows / clustered null): shipped (margin 0.5 pt,
alpha 0.05) 2 / 78 / 0%; alpha 0.3: 20 / 94 / 17%; margin 1 pt at alpha 0.6: 32 / 95 / 25%;
margin 0 at alpha 0.6: 48 / 98 / 36%. The shipped setting keeps false retrains rare, the goal a
pipeline that automates releases needs most. Closing the gap takes a
reference of several thousand held-out rows (the digits have 1,797 images in all) and, for
shifts that break calibration (blur, label shift), ~1,000 labels per window. Tried and dropped:
average thresholded confidence (Garg et al. 2022), BBSE label-shift correction (it estimated a
1.3-point drop for a 3.3-point label shift), and pooling labels across windows (it does not
shrink the reference's error).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from device.features import FEATURE_NAMES, summary_features  # noqa: E402
from device.preprocessing import PreprocessingSpec, to_unit  # noqa: E402
from device.scenarios import Scenario, adjust  # noqa: E402
from edgeops.params import MonitorParams  # noqa: E402

COLUMNS = [f"f_{n}" for n in FEATURE_NAMES]
DEVICES = 10
SIZES = (240, 1000)
UNSEEN = 9
LABEL_RATE = 0.1  # the fleet's label_rate: 1,000 rows carry ~100 labels, 240 rows ~24 (< min_labels)
T0 = pd.Timestamp("2026-01-01T00:00:00Z")

HARMLESS: dict[str, Scenario] = {
    "none": Scenario("none"),
    "rotation 5deg": Scenario("rot5", rotation_deg=5.0),
    "darken 10%": Scenario("dark10", brightness=0.9),
    "noise 0.03": Scenario("noise", noise_std=0.03),
}
HARMFUL: dict[str, Scenario] = {
    "rotation 35deg": Scenario("rot35", rotation_deg=35.0),
    "darken 60%": Scenario("dark60", brightness=0.4, contrast=0.6),
    "blur 1.5": Scenario("blur", blur_sigma=1.5),
    "inversion": Scenario("invert"),
    "unseen class": Scenario("unseen"),
    "label shift": Scenario("prior"),
}


def digits32() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    spec = PreprocessingSpec(32, 32, 1, (0.5,), (0.5,), tuple(str(i) for i in range(10)))
    imgs = (d.images * (255.0 / 16.0)).round().astype(np.uint8)
    return to_unit(list(imgs), spec), d.target.astype(np.int64)


def train_variant(x: np.ndarray, y: np.ndarray, epochs: int, seed: int) -> tuple[bytes, PreprocessingSpec]:
    """The student with the pipeline's augmentation, as a float TFLite file."""
    import components  # noqa: F401  (legacy Keras before tensorflow)
    from components.architectures import build_mobilenet, logits_model
    from components.augmentation import training_dataset
    from components.keras import keras, tf
    from components.training import seed_everything
    from edgeops.params import AugmentParams

    seed_everything(seed)
    mean, std = float(x.mean()), float(x.std())
    spec = PreprocessingSpec(32, 32, 1, (mean,), (std,), tuple(str(i) for i in range(10)))
    model = build_mobilenet((32, 32, 1), 10, alpha=0.5)
    trainee = logits_model(model)
    ds = training_dataset(x, y, spec.mean, spec.std, 32, AugmentParams(), seed)
    steps = int(np.ceil(len(x) / 32)) * epochs
    trainee.compile(
        optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(3e-3, steps, alpha=0.05)),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    trainee.fit(ds, epochs=epochs, verbose=0)
    return tf.lite.TFLiteConverter.from_keras_model(model).convert(), spec


class Field:
    """Features and variant outputs of every field image under each scenario, computed once."""

    def __init__(self, x: np.ndarray, y: np.ndarray, runner, spec: PreprocessingSpec, seed: int) -> None:
        from monitoring.reference import variant_probs

        self.x, self.y, self.runner, self.spec = x, y, runner, spec
        self.rng = np.random.default_rng(seed)
        self._probs = variant_probs
        self.cache: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def device_table(
        self, name: str, sc: Scenario, d: int, subset: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(features, probs) of the images in `subset` as device d sees them under `name`
        (full-length arrays, filled only at `subset`)."""
        key = f"{name}@{d}"
        if key not in self.cache:
            x = self.x[subset]
            x = 1.0 - x if sc.name == "invert" else sc.transform(x, self.rng)
            x = _device_view(x, d, np.random.default_rng(1000 + d))
            feats = np.zeros((len(self.x), len(COLUMNS)), np.float32)
            probs = np.zeros((len(self.x), 10), np.float32)
            feats[subset], probs[subset] = summary_features(x), self._probs(self.runner, x, self.spec)
            self.cache[key] = (feats, probs, self.y)
        return self.cache[key][:2]

    def table(self, name: str, sc: Scenario) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(features, probs, labels) of the whole pool under scenario `name`."""
        if name not in self.cache:
            x = 1.0 - self.x if sc.name == "invert" else sc.transform(self.x, self.rng)
            self.cache[name] = (summary_features(x), self._probs(self.runner, x, self.spec), self.y)
        return self.cache[name]


def _device_view(x: np.ndarray, d: int, rng: np.random.Generator) -> np.ndarray:
    """One device's own lighting, +-8% (inside the augmentation, and measured harmless)."""
    return adjust(x, rng.uniform(0.92, 1.08))


def window(
    field: Field, seen: np.ndarray, unseen: np.ndarray, name: str, sc: Scenario, n: int,
    rng: np.random.Generator, clustered: bool, frozen: bool = False,
) -> pd.DataFrame:
    """n rows from DEVICES devices, stamped inside one hour."""
    per = np.full(DEVICES, n // DEVICES)
    per[: n % DEVICES] += 1
    parts = []
    for d in range(DEVICES):
        pool = seen
        if clustered:  # each device its own slice of the scenes
            pool = seen[(np.arange(len(seen)) % DEVICES) == d]
        if sc.name == "prior":  # label shift towards the classes the model finds hardest
            w = np.where(np.isin(field.y[pool], field.hard), 8.0, 1.0)
            idx = pool[rng.choice(len(pool), per[d], p=w / w.sum())]
        else:
            idx = pool[rng.integers(0, len(pool), per[d])]
        if sc.name == "unseen":  # a quarter of the frames show a class the model never saw
            swap = rng.random(per[d]) < 0.25
            idx[swap] = unseen[rng.integers(0, len(unseen), swap.sum())]
        if frozen and d == 0:
            idx[:] = idx[0]
        if clustered:  # the device's own view of every image, computed once per scenario
            f, p = field.device_table(name, sc, d, np.union1d(pool, unseen))
            feats, probs = f[idx], p[idx]
        else:
            f, p, _ = field.table(name, sc)
            feats, probs = f[idx], p[idx]
        df = pd.DataFrame(feats.astype(np.float32), columns=COLUMNS)
        df["probs"] = list(probs)
        df["top1"] = probs.argmax(1)
        df["confidence"] = probs.max(1)
        df["truth"] = field.y[idx]
        labelled = rng.random(per[d]) < LABEL_RATE  # users confirm or correct a few
        df["label"] = pd.array(np.where(labelled, field.y[idx], -1), dtype="Int32")
        df.loc[~labelled, "label"] = pd.NA
        df["device_id"] = f"dev-{d:02d}"
        df["latency_ms"] = rng.normal(4.0, 0.3, per[d])
        parts.append(df)
    out = pd.concat(parts, ignore_index=True)
    out["ts"] = T0 + pd.to_timedelta(rng.uniform(0, 3599, len(out)), unit="s")
    return out


def judge(reference: pd.DataFrame, rows: pd.DataFrame, params: MonitorParams, temperature: float) -> dict:
    """The product's verdicts on one window (no labels: the estimate decides)."""
    from monitoring.drift import data_drift
    from monitoring.jobs import distinct_frames
    from monitoring.performance import estimate_harm
    from monitoring.segments import flag_segments
    from monitoring.windows import plan_windows

    (plan,) = plan_windows(rows, 1.0, T0 + pd.Timedelta(hours=2), {}, 0.2)  # complete: judged
    current = plan.rows.drop(columns=["truth"])
    est, _, _, verdict = estimate_harm(reference, current, params, temperature)
    frames = distinct_frames(current)
    drift = data_drift(reference, frames, params, groups=frames["device_id"].to_numpy())
    flags = flag_segments(current, params.segment_fdr)
    return {
        "harm": verdict.harmful,
        "estimate": est.accuracy,
        "estimate_method": est.method,
        "true": float((plan.rows["top1"] == plan.rows["truth"]).mean()),
        "drift": drift.drifted,
        "evidently": evidently_default(reference, current),
        "frozen_flagged": any(f.value == "dev-00" and f.statistic == "repeated_frames" for f in flags),
        "flags": len(flags),
    }


def evidently_default(reference: pd.DataFrame, current: pd.DataFrame) -> bool:
    """Evidently's DataDriftPreset at its defaults: each column's default stattest (chosen by
    Evidently from the data) at its default threshold; dataset drift when >= 50% of columns
    drift. Called through Evidently's registered stattests (the preset's own rule) without the
    per-column plot rendering, which would take seconds per window."""
    from evidently.legacy.calculations.stattests import get_stattest
    from evidently.legacy.core import ColumnType

    drifted = 0
    for col in COLUMNS:
        ref, cur = reference[col].astype(float), current[col].astype(float)
        test = get_stattest(ref, cur, ColumnType.Numerical, None)
        drifted += bool(test(ref, cur, ColumnType.Numerical, None).drifted)
    return drifted >= 0.5 * len(COLUMNS)


def run(reps: int, epochs: int, seed: int) -> tuple[list[dict], dict]:
    from components.calibration import fit_temperature
    from device.runtime import TFLiteRunner
    from monitoring.performance import cbpe, measured_accuracy
    from monitoring.reference import build_reference, variant_probs

    x, y = digits32()
    rng = np.random.default_rng(seed)
    seen_all, unseen = np.flatnonzero(y != UNSEEN), np.flatnonzero(y == UNSEEN)
    perm = rng.permutation(seen_all)
    train, val, pool = perm[:900], perm[900:1150], perm[1150:]
    t0 = time.perf_counter()
    model, spec = train_variant(x[train], y[train], epochs, seed)
    runner = TFLiteRunner(model)
    cal = fit_temperature(variant_probs(runner, x[val], spec), y[val])
    reference = build_reference(x[val], y[val], runner, spec)
    print(f"variant trained in {time.perf_counter() - t0:.0f} s; validation accuracy "
          f"{(reference['top1'] == reference['label'].astype(int)).mean():.3f}; temperature "
          f"{cal.temperature:.2f}, ECE {cal.ece_before:.3f} -> {cal.ece_after:.3f}", flush=True)
    ref_lab = measured_accuracy(reference["top1"], reference["label"])
    ref_cbpe = cbpe(list(reference["probs"]), cal.temperature)
    print(f"reference: {len(reference)} validation rows, accuracy {ref_lab.accuracy:.3f} +- "
          f"{100 * ref_lab.se:.2f} pts (SE, labels), calibrated confidence {ref_cbpe.accuracy:.3f} +- "
          f"{100 * ref_cbpe.se:.2f} pts (SE); telling a 1- from a 2-point drop at 5% / 95% needs "
          f"<= 0.30 pts in all", flush=True)
    field = Field(x, y, runner, spec, seed)
    base_probs = field.table("none", HARMLESS["none"])[1][pool]
    per_class = [(base_probs.argmax(1) == y[pool])[y[pool] == k].mean() for k in range(UNSEEN)]
    field.hard = np.argsort(per_class)[:3]
    params = MonitorParams()
    rows = []
    for kind, scenarios in (("harmless", HARMLESS), ("harmful", HARMFUL)):
        for name, sc in scenarios.items():
            for n in SIZES:
                for clustered in (False, True):
                    t1 = time.perf_counter()
                    out = [judge(reference, window(field, pool, unseen, name, sc, n, rng, clustered),
                                 params, cal.temperature) for _ in range(reps)]
                    row = {"scenario": name, "kind": kind, "n": n, "clustered": clustered,
                           "reps": reps, **{k: float(np.mean([o[k] for o in out]))
                                            for k in ("harm", "estimate", "true", "drift", "evidently", "flags")},
                           "window_mae_pts": 100 * float(np.mean([abs(o["estimate"] - o["true"]) for o in out])),
                           "s_per_window": (time.perf_counter() - t1) / reps}
                    rows.append(row)
                    print(f"  {kind:8s} {name:15s} n={n:5d} clustered={clustered!s:5s} true {row['true']:.3f} "
                          f"est {row['estimate']:.3f} harm {row['harm']:.0%} drift {row['drift']:.0%} "
                          f"evidently {row['evidently']:.0%}", flush=True)
    frozen = {}
    for n in SIZES:
        out = [judge(reference, window(field, pool, unseen, "none", HARMLESS["none"], n, rng, True, True),
                     params, cal.temperature) for _ in range(reps)]
        frozen[n] = float(np.mean([o["frozen_flagged"] for o in out]))
        print(f"  frozen camera on 1 of {DEVICES} devices, n={n}: flagged {frozen[n]:.0%}", flush=True)
    return rows, frozen


def summary(rows: list[dict], frozen: dict) -> dict:
    """Rates by what a shift measurably costs this model (true accuracy against the unshifted
    field): harmless below 1 point, harmful from 2 points; the named kind is only the intent (a
    model may not tolerate a shift it was meant to, and then retraining is the right call)."""
    base = {r["n"]: r["true"] for r in rows if r["scenario"] == "none" and not r["clustered"]}
    for r in rows:
        r["cost_pts"] = 100 * (base[r["n"]] - r["true"])
    costly = [r for r in rows if r["cost_pts"] >= 2.0]
    mild = [r for r in rows if r["cost_pts"] < 1.0]
    by_scenario: dict[str, list[float]] = {}
    for r in rows:
        by_scenario.setdefault(r["scenario"], []).append(abs(r["estimate"] - r["true"]))
    mean = lambda v: float(np.mean(v)) if v else None  # noqa: E731
    pts = lambda v: None if v is None else 100 * v  # noqa: E731
    return {
        "harmless_retrain_rate": mean([r["harm"] for r in mild]),
        "harmful_retrain_rate_1000": mean([r["harm"] for r in costly if r["n"] == 1000]),
        "estimate_mae_pts": pts(mean([mean(v) for v in by_scenario.values()])),
        "frozen_camera_flag_rate": mean(list(frozen.values())),
        "clustered_null_false_alarm_rate": mean(
            [r["harm"] for r in rows if r["scenario"] == "none" and r["clustered"]]
        ),
        # the same error per window (not of the scenario's mean estimate): what one window reads
        "estimate_window_mae_pts": mean([r["window_mae_pts"] for r in rows]),
        # where calibration can hold (the model still >= 90% right): CBPE's own regime
        "estimate_mae_pts_calibrated_regime": pts(mean(
            [mean(v) for k, v in by_scenario.items()
             if min(r["true"] for r in rows if r["scenario"] == k) >= 0.9]
        )),
        "evidently": {
            "harmless_retrain_rate": mean([r["evidently"] for r in mild]),
            "harmful_retrain_rate_1000": mean([r["evidently"] for r in costly if r["n"] == 1000]),
            "clustered_null_false_alarm_rate": mean(
                [r["evidently"] for r in rows if r["scenario"] == "none" and r["clustered"]]
            ),
        },
    }


def markdown(rows: list[dict], s: dict) -> str:
    lines = ["| scenario | rows | clustered | true acc | cost (pts) | estimated | edgeops retrain | "
             "drift (explanation) | Evidently preset |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['scenario']} ({r['kind']}) | {r['n']} | {'yes' if r['clustered'] else 'no'} | "
                     f"{100 * r['true']:.1f}% | {r['cost_pts']:+.1f} | {100 * r['estimate']:.1f}% | {100 * r['harm']:.0f}% | "
                     f"{100 * r['drift']:.0f}% | {100 * r['evidently']:.0f}% |")
    e = s["evidently"]
    goals = [
        ("retrain on harmless shifts (cost < 1 pt)", s["harmless_retrain_rate"], e["harmless_retrain_rate"], "<= 5%"),
        ("retrain on shifts costing >= 2 pts, 1000 rows", s["harmful_retrain_rate_1000"],
         e["harmful_retrain_rate_1000"], ">= 95%"),
        ("false alarms, clustered null", s["clustered_null_false_alarm_rate"],
         e["clustered_null_false_alarm_rate"], "<= 5%"),
        ("frozen camera flagged (1 of 10 devices)", s["frozen_camera_flag_rate"], None, ">= 95%"),
    ]
    lines += ["", "| goal | edgeops | Evidently default preset | target |", "|---|---|---|---|"]
    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.0f}%"

    def pts(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f} pts"

    for name, ours, theirs, target in goals:
        lines.append(f"| {name} | {pct(ours)} | {pct(theirs)} | {target} |")
    lines.append(f"| estimated accuracy, mean abs. error over scenarios | {pts(s['estimate_mae_pts'])} | "
                 "(no estimate) | <= 2 pts |")
    lines.append(f"| the same, per window (one window's estimate vs its truth) | "
                 f"{pts(s['estimate_window_mae_pts'])} | (no estimate) | |")
    lines.append(f"| the same, shifts the model still gets >= 90% right | "
                 f"{pts(s['estimate_mae_pts_calibrated_regime'])} | (no estimate) | |")
    return "\n".join(lines)


def scale(params: MonitorParams, rows: int = 100_000, features: int = 50) -> dict:
    """One data drift job on rows x features (reference and current both `rows`)."""
    from monitoring.drift import data_drift

    rng = np.random.default_rng(0)
    cols = [f"f_{i}" for i in range(features)]
    ref = pd.DataFrame(rng.normal(size=(rows, features)).astype(np.float32), columns=cols)
    cur = pd.DataFrame(rng.normal(size=(rows, features)).astype(np.float32), columns=cols)
    cur[cols[:5]] += 0.05
    t0 = time.perf_counter()
    res = data_drift(ref, cur, params)
    return {"rows": rows, "features": features, "seconds": time.perf_counter() - t0,
            "drifted_features": len(res.drifted_features)}


KEYS = ("harmless_retrain_rate", "harmful_retrain_rate_1000", "estimate_mae_pts",
        "frozen_camera_flag_rate", "clustered_null_false_alarm_rate")


def across_seeds(summaries: list[dict]) -> dict:
    """Mean and 95% t-interval over seeds of every goal figure, ours and Evidently's."""
    from scipy.stats import t as student

    def stat(values: list[float | None]) -> dict:
        v = np.array([x for x in values if x is not None], dtype=np.float64)
        if len(v) == 0:
            return {"mean": None, "low": None, "high": None, "seeds": 0}
        half = float(student.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0
        return {"mean": float(v.mean()), "low": float(v.mean() - half), "high": float(v.mean() + half),
                "seeds": len(v)}

    extra = ("estimate_window_mae_pts", "estimate_mae_pts_calibrated_regime")
    out = {k: stat([s[k] for s in summaries]) for k in (*KEYS, *extra)}
    out["evidently"] = {k: stat([s["evidently"][k] for s in summaries]) for k in summaries[0]["evidently"]}
    return out


def seeds_table(agg: dict) -> str:
    def fmt(st: dict, unit: str) -> str:
        if st is None or st["mean"] is None:
            return "-"
        if unit == "%":  # a rate's interval clipped to [0, 1]
            lo, hi = max(0.0, st["low"]), min(1.0, st["high"])
            return f"{100 * st['mean']:.0f}% [{100 * lo:.0f}%, {100 * hi:.0f}%]"
        return f"{st['mean']:.1f} pts [{st['low']:.1f}, {st['high']:.1f}]"

    e = agg["evidently"]
    rows = [
        ("retrain on harmless shifts (cost < 1 pt)", "harmless_retrain_rate", "%", "<= 5%"),
        ("retrain on shifts costing >= 2 pts, 1000 rows", "harmful_retrain_rate_1000", "%", ">= 95%"),
        ("false alarms, clustered null", "clustered_null_false_alarm_rate", "%", "<= 5%"),
        ("frozen camera flagged (1 of 10 devices)", "frozen_camera_flag_rate", "%", ">= 95%"),
        ("estimated accuracy, mean abs. error over scenarios", "estimate_mae_pts", "pts", "<= 2 pts"),
        ("the same, per window", "estimate_window_mae_pts", "pts", ""),
        ("the same, shifts the model still gets >= 90% right", "estimate_mae_pts_calibrated_regime", "pts", ""),
    ]
    n = agg["harmless_retrain_rate"]["seeds"]
    lines = [f"| goal (mean [95% t-interval] over {n} seeds) | edgeops | Evidently default preset | target |",
             "|---|---|---|---|"]
    for name, key, unit, target in rows:
        theirs = fmt(e.get(key), unit) if key in e else ("(no estimate)" if unit == "pts" else "-")
        lines.append(f"| {name} | {fmt(agg[key], unit)} | {theirs} | {target} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=6, help="windows per cell")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--seeds", type=int, default=3, help="variants trained (and fields drawn) per run")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 seed, 2 windows per cell, 4 epochs")
    ap.add_argument("--seed", type=int, default=0, help="first seed")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--scale", action="store_true", help="also time a 100,000 x 50 drift job")
    args = ap.parse_args()
    warnings.filterwarnings("ignore", category=RuntimeWarning)
    if args.quick:
        args.seeds, args.reps, args.epochs = 1, 2, 4
    t0 = time.perf_counter()
    per_seed = []
    for k in range(args.seeds):
        seed = args.seed + k
        print(f"seed {seed}", flush=True)
        rows, frozen = run(args.reps, args.epochs, seed)
        s = summary(rows, frozen)
        print(f"\n{markdown(rows, s)}\n", flush=True)
        per_seed.append({"seed": seed, "summary": s, "rows": rows, "frozen": frozen})
    agg = across_seeds([p["summary"] for p in per_seed])
    print(seeds_table(agg))
    if args.scale:
        print(f"drift job: {scale(MonitorParams())}")
    print(f"benchmark wall time {time.perf_counter() - t0:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({k: agg[k]["mean"] for k in KEYS}, indent=2))
        args.json.with_suffix(".detail.json").write_text(
            json.dumps({"across_seeds": agg, "seeds": per_seed}, indent=2, default=str))


if __name__ == "__main__":
    main()

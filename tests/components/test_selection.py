"""Selection: among variants within budgets, the cheapest (wire bytes, then latency) that is
non-inferior to the best on validation within the margin (paired); test labels never change the
choice; a clear report when nothing fits."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from fixtures_models import digits, digits_model  # noqa: F401

from components.blessing import bless
from components.conversion import Variant, convert_and_verify
from components.profiles import DeviceProfile
from components.selection import candidate_table, choose, plot_size_vs_accuracy, rank, select
from edgeops.params import ConvertParams, EvaluateParams

EVAL = EvaluateParams()


@pytest.fixture(scope="module")
def variants(digits, digits_model, tmp_path_factory) -> dict[str, Variant]:  # noqa: F811
    out = tmp_path_factory.mktemp("select")
    params = ConvertParams(latency_runs=5, representative_samples=100)
    return {
        t: convert_and_verify(digits_model, t, digits, params, out / t)
        for t in ("tflite-f32", "tflite-f16", "tflite-int8")
    }


def _profile(**kw) -> DeviceProfile:
    base = dict(
        name="p",
        targets=("tflite-f32", "tflite-f16", "tflite-int8"),
        max_model_bytes=10**7,
        arena_bytes=10**7,
        latency_budget_ms=100.0,
        throughput_macs_per_s=1e9,
    )
    return DeviceProfile(**{**base, **kw})


def _bless_all(variants, profile):
    return {n: bless(v, profile, v.float_accuracy, None, EVAL) for n, v in variants.items()}


def test_validation_accuracy_first_then_size(variants) -> None:
    # equal validation accuracies: make them equal on purpose, then the smallest file wins
    same = {
        n: dataclasses.replace(v, accuracy=0.9, float_accuracy=0.9, val_accuracy=0.9) for n, v in variants.items()
    }
    p = _profile()
    choice = select(same, _bless_all(same, p), p)
    assert choice.target == min(same, key=lambda n: same[n].bytes) == "tflite-int8"
    assert choice.candidate == "tflite-int8" and choice.val_accuracy == 0.9
    # a better variant on validation wins even when larger, whatever its test accuracy
    better = {**same, "tflite-f32": dataclasses.replace(same["tflite-f32"], val_accuracy=0.95, accuracy=0.1)}
    assert choose(better, p)[0] == "tflite-f32"
    higher_test = {**same, "tflite-f16": dataclasses.replace(same["tflite-f16"], accuracy=0.99)}
    assert choose(higher_test, p)[0] == "tflite-int8"


def test_poisoned_test_labels_leave_the_selection_unchanged(variants, digits, tmp_path) -> None:  # noqa: F811
    from components.profiles import DeviceCatalog
    from flows.selection import evaluate

    vals = {"tflite-f32": 0.95, "tflite-f16": 0.96, "tflite-int8": 0.94}
    vs = {n: dataclasses.replace(v, val_accuracy=vals[n]) for n, v in variants.items()}
    catalog = DeviceCatalog(profiles={"p": _profile(), "q": _profile(targets=("tflite-int8",))}, cohorts={})
    y = np.asarray(digits.y_test)
    tight = EvaluateParams(selection_margin=0.005)  # nothing cheaper is within it: the best is chosen
    clean = evaluate(vs, vs["tflite-f32"].float_accuracy, catalog, tight, {}, tmp_path / "a", y_test=y)
    poisoned = evaluate(vs, vs["tflite-f32"].float_accuracy, catalog, tight, {}, tmp_path / "b",
                        y_test=(y + 1) % 10)
    for p in ("p", "q"):
        assert clean["per_profile"][p]["candidate"] == poisoned["per_profile"][p]["candidate"]
        a = pd.read_csv(tmp_path / "a" / f"candidates-{p}.csv")
        b = pd.read_csv(tmp_path / "b" / f"candidates-{p}.csv")
        assert a["variant"].tolist() == b["variant"].tolist()
    assert clean["per_profile"]["p"]["candidate"] == "tflite-f16"
    front = pd.read_csv(tmp_path / "a" / "pareto-q.csv")  # the search's front, per profile, for MLflow
    assert front["name"].tolist() == clean["per_profile"]["q"]["pareto"] == ["tflite-int8"]
    assert list(front.columns) == ["name", "val_accuracy", "wire_bytes", "estimated_latency_ms"]
    assert (tmp_path / "a" / "size_vs_accuracy-p.png").read_bytes()[:4] == b"\x89PNG"
    assert clean["per_profile"]["q"]["candidate"] == "tflite-int8"
    # the labels do change the one thing test is for: the chosen variant's verdict and its score
    assert clean["per_profile"]["p"]["target"] == "tflite-f16"
    assert poisoned["blessings"]["tflite-f16"]["p"]["metrics"]["accuracy_ci"][1] < 0.2


def test_cheapest_within_the_paired_margin_of_the_best_on_validation(variants) -> None:
    rng = np.random.default_rng(0)
    y_val = rng.integers(0, 10, 400)
    best = np.where(rng.random(400) < 0.95, y_val, (y_val + 1) % 10)  # 95% right

    def with_val(v: Variant, pred: np.ndarray) -> Variant:
        return dataclasses.replace(v, val_accuracy=float((pred == y_val).mean()), val_predictions=tuple(pred))

    close = best.copy()
    close[np.flatnonzero(best == y_val)[:2]] += 1  # the cheap variant loses 2 of 400 images
    far = best.copy()
    far[np.flatnonzero(best == y_val)[:20]] += 1  # loses 20 (5 points)
    p = _profile()
    vs = {"tflite-f32": with_val(variants["tflite-f32"], best), "tflite-int8": with_val(variants["tflite-int8"], close),
          "tflite-f16": with_val(variants["tflite-f16"], far)}
    assert vs["tflite-int8"].wire_bytes < vs["tflite-f16"].wire_bytes < vs["tflite-f32"].wire_bytes
    c = rank(vs, p, margin=0.02, alpha=0.05, y_val=y_val)
    assert c.best == "tflite-f32" and c.name == "tflite-int8"
    assert c.verdicts == {"tflite-f32": "pass", "tflite-int8": "pass", "tflite-f16": "fail"}
    assert "paired on validation" in c.reason and "2 losses on 400" in c.reason
    assert choose(vs, p, margin=0.0, y_val=y_val)[0] == "tflite-f32"  # no margin: the best
    # a cheap variant 5 points down is never chosen, however small
    assert choose({k: vs[k] for k in ("tflite-f32", "tflite-f16")}, p, 0.02, 0.05, y_val)[0] == "tflite-f32"
    # test figures (accuracy, test predictions) are never read
    blind = {n: dataclasses.replace(v, accuracy=0.0, predictions=()) for n, v in vs.items()}
    assert rank(blind, p, 0.02, 0.05, y_val) == c
    table = candidate_table(vs, _bless_all(vs, p), p, 0.02, 0.05, y_val)
    assert table.variant.tolist()[0] == "tflite-int8" and table.selected.tolist()[0]
    assert {"wire_bytes", "weight_bytes", "within_margin"} <= set(table.columns)


def test_budget_excludes_and_nothing_fits_reports(variants) -> None:
    f32 = variants["tflite-f32"].bytes
    p = _profile(max_model_bytes=f32 - 1)
    blessings = _bless_all(variants, p)
    choice = select(variants, blessings, p)
    assert choice.target == "tflite-int8" and choice.blessed == 1  # no validation scores: the cheapest that fits
    none = _profile(max_model_bytes=100)
    empty = select(variants, _bless_all(variants, none), none)
    assert empty.target is None and empty.blessed == 0
    assert "no variant fits profile p" in empty.reason and "bytes > budget 100" in empty.reason


def test_table_and_plot(variants, tmp_path) -> None:
    p = _profile(targets=("tflite-int8",))
    blessings = _bless_all(variants, p)
    table = candidate_table(variants, blessings, p)
    assert len(table) == 3 and table.iloc[0].variant == "tflite-int8" and table.iloc[0].selected
    assert table.selected.sum() == 1
    assert "does not run tflite-f32" in table.set_index("variant").loc["tflite-f32", "reasons"]
    png = plot_size_vs_accuracy(variants, blessings, p, tmp_path / "plot.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_variant_round_trips_through_json(variants) -> None:
    import json

    v = variants["tflite-int8"]
    again = Variant.from_dict(json.loads(json.dumps(v.to_dict())))
    assert again == v


def _on_test(v: Variant, y: np.ndarray, wrong: int = 0) -> Variant:
    """`v` with its test top-1 set to its float parent's, `wrong` of the parent's right answers flipped."""
    pred = np.asarray(v.float_predictions).copy()
    flip = np.flatnonzero(pred == y)[:wrong]
    pred[flip] = (y[flip] + 1) % 10
    return dataclasses.replace(v, predictions=tuple(int(i) for i in pred), accuracy=float((pred == y).mean()))


def _paired_blessings(vs, profile, y):
    from components.blessing import Paired

    return {n: bless(v, profile, v.float_accuracy, None, EVAL, Paired(y, np.asarray(v.float_predictions)))
            for n, v in vs.items()}


def _validation_ranked(variants, y, chosen_wrong: int = 0) -> dict[str, Variant]:
    # margin 0.03: all three within it of the best (f16); int8 is the cheapest, so validation chooses it
    vals = {"tflite-f32": 0.95, "tflite-f16": 0.96, "tflite-int8": 0.94}
    vs = {n: _on_test(dataclasses.replace(v, val_accuracy=vals[n]), y) for n, v in variants.items()}
    vs["tflite-int8"] = _on_test(vs["tflite-int8"], y, chosen_wrong)
    return vs


def test_test_figures_of_variants_not_chosen_never_change_the_choice(variants, digits) -> None:  # noqa: F811
    y = np.asarray(digits.y_test)
    p = _profile()
    for chosen_wrong in (0, 60):  # the chosen variant passes on test, then fails on test
        vs = _validation_ranked(variants, y, chosen_wrong)
        assert rank(vs, p, 0.03).name == "tflite-int8"
        reference = select(vs, _paired_blessings(vs, p, y), p, 0.03)
        assert reference.candidate == "tflite-int8"
        assert reference.target == ("tflite-int8" if chosen_wrong == 0 else None)
        for wrong in (0, 150):  # the others perfect on test, then poisoned on test
            others = {n: (_on_test(v, y, wrong) if n != "tflite-int8" else v) for n, v in vs.items()}
            if wrong == 0:
                others = {n: (dataclasses.replace(v, predictions=tuple(int(i) for i in y), accuracy=1.0)
                              if n != "tflite-int8" else v) for n, v in others.items()}
            blessings = _paired_blessings(others, p, y)
            assert all(blessings[n].blessed == (wrong == 0) for n in others if n != "tflite-int8")
            assert select(others, blessings, p, 0.03) == reference, (chosen_wrong, wrong)
    # poisoned test labels: the same variant is chosen; only its own test figures change (its
    # verdict is paired with its float parent on the same labels, so it holds)
    vs = _validation_ranked(variants, y)
    blessings = _paired_blessings(vs, p, (y + 1) % 10)
    poisoned = select(vs, blessings, p, 0.03)
    assert poisoned.candidate == poisoned.target == "tflite-int8"
    assert blessings["tflite-int8"].metrics["accuracy_ci"][1] < 0.2
    lo, hi = blessings["tflite-int8"].metrics["accuracy_ci"]
    assert f"(95% CI {lo:.4f}-{hi:.4f}, n={len(y)})" in poisoned.reason


def test_chosen_variant_failing_on_test_releases_nothing(variants, digits) -> None:  # noqa: F811
    y = np.asarray(digits.y_test)
    p = _profile()
    # f32 best on validation; f16 within 0.02 of it and cheaper: validation chooses f16. int8 is
    # cheaper still but 7 points down on validation: outside the margin
    vals = {"tflite-f32": 0.97, "tflite-f16": 0.96, "tflite-int8": 0.90}
    vs = {n: _on_test(dataclasses.replace(v, val_accuracy=vals[n]), y) for n, v in variants.items()}
    vs["tflite-f16"] = _on_test(vs["tflite-f16"], y, 30)  # 10 points below its float parent on test
    blessings = _paired_blessings(vs, p, y)
    assert blessings["tflite-f32"].blessed and blessings["tflite-int8"].blessed  # both would pass on test
    assert not blessings["tflite-f16"].blessed and blessings["tflite-f16"].non_test == ()
    s = select(vs, blessings, p, 0.02)
    assert s.target is None and s.candidate == "tflite-f16" and s.outcome == "fail" and s.blessed == 0
    assert s.reason.startswith("nothing released for profile p: tflite-f16: cheapest of 2 within 0.02")
    lo, hi = blessings["tflite-f16"].metrics["accuracy_ci"]
    assert f"fail on test: against its float parent: worse by more than {EVAL.max_accuracy_drop:g}" in s.reason
    assert f"test accuracy {vs['tflite-f16'].accuracy:.4f} (95% CI {lo:.4f}-{hi:.4f}, n={len(y)})" in s.reason
    assert "one-sided 95% lower bound" in s.reason and "tflite-f32" not in s.reason.split("; fail on test")[1]
    assert s.accuracy is None  # nothing released: no test accuracy reported as shipped
    table = candidate_table(vs, blessings, p, 0.02)
    assert not table.selected.any() and table.accuracy.isna().all()


def test_a_failed_check_that_reads_no_test_label_moves_to_the_next_on_validation(variants, digits) -> None:  # noqa: F811
    from components.blessing import non_test_checks

    y = np.asarray(digits.y_test)
    vs = _validation_ranked(variants, y)
    # a size budget validation's best (f16, 0.96) does not fit: the next on validation is chosen,
    # and the reason names the check that passed over the better one
    small = _profile(max_model_bytes=vs["tflite-f16"].bytes - 1)
    assert [c for c, _ in non_test_checks(vs["tflite-f16"], small)] == ["size budget"]
    s = select(vs, _paired_blessings(vs, small, y), small)
    assert s.target == s.candidate == "tflite-int8"
    assert ("better on validation but failing a check that reads no test label: tflite-f16 passed over: "
            "size budget: ") in s.reason
    # validation chooses int8 (cheapest within 0.03), but its blessing recorded a failed latency
    # budget (blessed on a profile with 1 us): selection walks on to the next within the margin,
    # cheapest first (f16), and that one's test verdict decides
    p = _profile()
    slow = _profile(latency_budget_ms=1e-6)
    blessings = {**_paired_blessings(vs, p, y), "tflite-int8": bless(
        vs["tflite-int8"], slow, vs["tflite-int8"].float_accuracy, None, EVAL)}
    assert rank(vs, p, 0.03).name == "tflite-int8"
    assert [r.split(":")[0] for r in blessings["tflite-int8"].non_test] == ["latency budget"]
    moved = select(vs, blessings, p, 0.03)
    assert moved.target == moved.candidate == "tflite-f16" and moved.blessed == 1
    assert moved.reason.startswith("tflite-f16: the next in validation order")
    assert "tflite-int8 passed over: latency budget: estimated latency" in moved.reason
    # the next one failing on test: nothing released, and f32 (still within the margin) is not tried
    vs_bad = {**vs, "tflite-f16": _on_test(vs["tflite-f16"], y, 30)}
    blessings = {**_paired_blessings(vs_bad, p, y), "tflite-int8": blessings["tflite-int8"]}
    assert blessings["tflite-f32"].blessed
    held = select(vs_bad, blessings, p, 0.03)
    assert held.target is None and held.candidate == "tflite-f16" and "fail on test" in held.reason

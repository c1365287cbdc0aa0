"""A canary that is worse is seen from calibrated confidence; no promotion without evidence."""

from __future__ import annotations

import numpy as np
import pandas as pd

from monitoring.canary_evidence import apply_evidence, compare_arms
from registry.controller import Decision


def _arm(n: int, accuracy: float, rng: np.random.Generator, devices: int = 5) -> pd.DataFrame:
    """Calibrated rows: each row right with probability = its confidence, mean = accuracy."""
    conf = np.clip(rng.normal(accuracy, 0.05, n), 0.11, 0.999)
    probs = np.full((n, 10), 0.0)
    probs[:, 0] = conf
    probs[:, 1:] = ((1 - conf) / 9)[:, None]
    return pd.DataFrame(
        {
            "probs": list(probs),
            "top1": 0,
            "label": pd.array([pd.NA] * n, dtype="Int32"),
            "device_id": [f"d{i % devices}" for i in range(n)],
        }
    )


def test_a_worse_canary_fails_an_equal_one_passes_a_small_one_waits() -> None:
    rng = np.random.default_rng(0)
    stable = _arm(3000, 0.95, rng)
    worse = compare_arms(_arm(400, 0.85, rng), stable)
    assert worse.verdict == "fail" and worse.high < -0.01, worse
    same = compare_arms(_arm(3000, 0.95, rng), stable)
    assert same.verdict == "pass", same
    few = compare_arms(_arm(60, 0.95, rng), stable)  # a 1% step: too few rows to promise anything
    assert few.verdict == "not enough evidence" and few.low < -0.01 < few.high, few
    assert compare_arms(_arm(10, 0.5, rng), stable).verdict == "not enough evidence"


def test_labels_decide_when_both_arms_have_enough() -> None:
    rng = np.random.default_rng(1)
    canary, stable = _arm(400, 0.95, rng), _arm(400, 0.95, rng)
    canary["label"] = pd.array(np.where(np.arange(400) < 200, 3, pd.NA), dtype="Int32")  # all wrong
    stable["label"] = pd.array(np.where(np.arange(400) < 200, 0, pd.NA), dtype="Int32")  # all right
    ev = compare_arms(canary, stable)
    assert ev.verdict == "fail" and ev.canary.method == "labels" and "measured" in ev.reason


def test_the_controller_decision_follows_the_evidence() -> None:
    rng = np.random.default_rng(2)
    stable = _arm(3000, 0.95, rng)
    advance = Decision("advance", ("gate passed",))
    assert apply_evidence(advance, compare_arms(_arm(60, 0.95, rng), stable)).action == "hold"
    assert apply_evidence(advance, compare_arms(_arm(3000, 0.95, rng), stable)).action == "advance"
    back = apply_evidence(Decision("hold", ("dwell",)), compare_arms(_arm(400, 0.8, rng), stable))
    assert back.action == "rollback" and "estimated accuracy" in back.reasons[0]


def test_evidence_selects_arms_as_the_gates_do(monkeypatch) -> None:
    """One selector (monitoring.gates.canary_arms): a canary member still on the stable bundle
    is evidence for neither arm, in the gates and in the accuracy evidence alike."""
    import monitoring.canary_evidence as ce
    from device.protocol import in_canary
    from monitoring.gates import canary_arms, gate_result

    rng = np.random.default_rng(3)
    salt, pct = "s1", 50.0
    devices = [f"dev-{i}" for i in range(40)]
    inside = [d for d in devices if in_canary(pct, d, salt)]
    outside = [d for d in devices if d not in inside]
    canary = _arm(300, 0.95, rng).assign(
        bundle_id="c", device_id=lambda f: [inside[i % len(inside)] for i in range(len(f))]
    )
    stable = _arm(300, 0.95, rng).assign(
        bundle_id="s", device_id=lambda f: [outside[i % len(outside)] for i in range(len(f))]
    )
    lagging = _arm(100, 0.95, rng).assign(bundle_id="s", device_id=inside[0])  # not yet moved
    rows = pd.concat([canary, stable, lagging], ignore_index=True).assign(
        event="inference", confidence=0.95, latency_ms=1.0
    )
    c, s = canary_arms(rows, "c", "s", percentage=pct, salt=salt)
    assert (c.sum(), s.sum()) == (300, 300)
    assert canary_arms(rows, "c", "s")[1].sum() == 400  # by bundle only
    monkeypatch.setattr(ce, "read_table", lambda *a, **k: rows)
    monkeypatch.setattr(ce, "inferences", lambda df: df)
    monkeypatch.setattr(ce, "load_temperature", lambda *a: 1.0)
    t = pd.Timestamp("2026-01-01", tz="UTC")
    ev = ce.evidence_from_store(None, "pi", "c", "s", t, t, percentage=pct, salt=salt)
    gate = gate_result(rows, "c", "s", percentage=pct, salt=salt)
    assert ev.stable.n == 300 and gate.stable.count == 300
    assert ce.evidence_from_store(None, "pi", "c", "s", t, t).stable.n == 400

"""Retrain policy: debouncing, minimum samples, cool-down, cap, persisted state with an injected clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from device.store import open_store
from edgeops.params import MonitorParams
from monitoring.policy import PolicyState, WindowEvidence, decide, evaluate, load_states

T0 = datetime(2026, 11, 20, tzinfo=UTC)
P = MonitorParams(min_samples=100, sustained_windows=2, cooldown_hours=6, max_retrains_per_day=2)


def _ev(h: float, drifted: bool = True, n: int = 500) -> WindowEvidence:
    return WindowEvidence(T0 + timedelta(hours=h), n, drifted, ("data",) if drifted else ())


def _run(events: list[WindowEvidence], params: MonitorParams = P) -> list[bool]:
    state, out = PolicyState(), []
    for ev in events:
        d = decide(ev, state, params, ev.window_start + timedelta(hours=1))
        state = d.state
        out.append(d.retrain)
    return out


def test_single_noisy_window_is_debounced() -> None:
    assert _run([_ev(0), _ev(1, False), _ev(2), _ev(3, False)]) == [False] * 4
    assert _run([_ev(0), _ev(1)]) == [False, True]


def test_small_windows_neither_count_nor_reset() -> None:
    assert _run([_ev(0), _ev(1, n=10), _ev(2)]) == [False, False, True]
    d = decide(_ev(0, n=10), PolicyState(), P, T0)
    assert not d.retrain and "10 samples < 100" in d.reasons[0]


def test_cooldown_and_daily_cap() -> None:
    # drift in every hourly window for two days: triggers at h1, then only after 6h cool-downs, max 2 per 24h
    out = _run([_ev(h) for h in range(48)])
    fired = [h for h, r in enumerate(out) if r]
    assert fired[0] == 1
    assert all(b - a >= 6 for a, b in zip(fired, fired[1:], strict=False))
    for h in fired:
        assert sum(1 for g in fired if h - 24 < g <= h) <= 2
    assert len(fired) == 4  # h1, h7, then the cap holds until h25, h31


def test_replayed_window_is_ignored() -> None:
    d1 = decide(_ev(0), PolicyState(), P, T0)
    d2 = decide(_ev(0), d1.state, P, T0)
    assert d2.state == d1.state and "already counted" in d2.reasons[0]


def test_state_persists_in_the_store_per_scope(tmp_path) -> None:
    store = open_store(str(tmp_path / "s"))
    now = [T0]
    clock = lambda: now[0]  # noqa: E731
    assert not evaluate(store, "eu/1", _ev(0), P, clock).retrain
    assert not evaluate(store, "us/1", _ev(0, drifted=False), P, clock).retrain
    now[0] = T0 + timedelta(hours=2)
    d = evaluate(store, "eu/1", _ev(1), P, clock)
    assert d.retrain
    states, _ = load_states(store)
    assert states["eu/1"].last_trigger == now[0] and states["eu/1"].streak == 0
    assert states["us/1"].streak == 0 and states["us/1"].last_trigger is None


def test_a_retrain_names_every_window_of_its_streak_across_passes(tmp_path) -> None:
    """The streak's windows may be judged in different monitor passes: the persisted state
    carries their runs, so the retrain links back to all of them, and a clean window drops them."""
    store = open_store(str(tmp_path / "s"))

    def ev(h: int, drifted: bool = True) -> WindowEvidence:
        return WindowEvidence(T0 + timedelta(hours=h), 500, drifted, ("data",) if drifted else (),
                              "harm", f"run-{h}")

    def clock() -> datetime:
        return T0 + timedelta(hours=9)

    assert not evaluate(store, "c/1", ev(0), P, clock).retrain  # pass 1: one harmful window
    assert not evaluate(store, "c/1", ev(1, False), P, clock).retrain  # clean: streak and runs reset
    assert not evaluate(store, "c/1", ev(2), P, clock).retrain  # pass 2
    assert load_states(store)[0]["c/1"].runs == ("run-2",)
    d = evaluate(store, "c/1", ev(3), P, clock)  # pass 3: the second in a row fires
    assert d.retrain and d.cause_runs == ("run-2", "run-3")
    assert load_states(store)[0]["c/1"].runs == ()  # the next incident starts its own list

"""The deployment-wide guard: one incident, a global cap, labels first, and a check afterwards."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from device.store import open_store
from edgeops.params import MonitorParams
from monitoring.guard import (
    GuardState,
    blocked_reason,
    follow_up,
    load_guard,
    open_incident,
    save_guard,
)
from monitoring.policy import PolicyState, WindowEvidence, decide

T0 = datetime(2026, 11, 20, tzinfo=UTC)
P = MonitorParams(min_new_labels=20, max_retrains_global_per_day=2, incident_hours=24)


def test_retrain_without_new_labels_is_refused_with_a_reason() -> None:
    why = blocked_reason(GuardState(), P, T0, new_labels=3)
    assert why is not None and "3 new labelled field rows" in why and "min_new_labels" in why
    assert blocked_reason(GuardState(), P, T0, new_labels=20) is None
    ev = WindowEvidence(T0, 500, True, (), "harm")
    state = PolicyState(streak=1, last_window=T0 - timedelta(hours=1))
    d = decide(ev, state, MonitorParams(), T0, blocked=why)
    assert not d.retrain and "harm in 2 consecutive window(s), but refused" in d.reasons[0]
    assert d.state.streak == 2 and d.state.last_trigger is None  # fires once labels arrive


def test_one_incident_covers_every_harmed_cohort_and_the_global_cap_holds() -> None:
    g = open_incident(GuardState(), T0, "harm: eu", {"eu": "1", "us": "1"})
    assert "covers it" in blocked_reason(g, P, T0 + timedelta(hours=1), 100)
    g2 = GuardState(triggers=(T0, T0 + timedelta(hours=2)))
    assert "global cap of 2" in blocked_reason(g2, P, T0 + timedelta(hours=3), 100)
    assert blocked_reason(g2, P, T0 + timedelta(hours=25), 100) is None


def test_after_a_retrain_harm_gone_closes_harm_still_there_alerts(tmp_path) -> None:
    g = open_incident(GuardState(), T0, "harm", {"eu": "1"})
    later = T0 + timedelta(hours=3)
    same_model, _ = follow_up(g, [("eu", "1", True, later)], P, later)
    assert same_model.incident == g.incident  # the old model's windows say nothing new
    fixed, notes = follow_up(g, [("eu", "2", False, later)], P, later)
    assert fixed.incident is None and "resolved" in notes[0]
    alert, notes = follow_up(g, [("eu", "2", True, later)], P, later)
    assert alert.incident.status == "alert" and notes[0].startswith("ALERT")
    assert "alerted incident" in blocked_reason(alert, P, later, 100)  # no second retrain
    store = open_store(str(tmp_path / "s"))
    save_guard(store, alert, None)
    assert load_guard(store)[0] == alert

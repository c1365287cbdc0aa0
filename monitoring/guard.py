"""The deployment-wide retrain guard: one incident at a time, a global cap, labels to learn from.

The per-scope policy (monitoring.policy) debounces one cohort's windows; this guard is what
keeps a fleet from storming: two cohorts hurt by the same change open one incident and one
retrain, not two; no more than `max_retrains_global_per_day` retrains start in 24 hours whatever
the number of scopes and bundles; a retrain needs `min_new_labels` new labelled field rows since
the last one (otherwise it would retrain on the same data and change nothing). After a retrain
the first judged window of a newer model version in an affected cohort either closes the
incident (the harm went away) or raises an alert (it did not): never another retrain for it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from device.store import ObjectStore
from edgeops.errors import ConflictError, MonitoringError
from edgeops.params import MonitorParams

GUARD_KEY = "monitoring/retrain_guard.json"
_KEEP_NOTES = 20


@dataclass(frozen=True)
class Incident:
    opened: datetime
    reason: str
    versions: dict[str, str]  # cohort -> model version that was harmed
    how: str | None = None  # "event" | "in-process" | "deployment"
    run: str | None = None
    status: str = "open"  # open | alert


@dataclass(frozen=True)
class GuardState:
    triggers: tuple[datetime, ...] = ()
    incident: Incident | None = None
    notes: tuple[str, ...] = field(default=())  # alerts and closures, newest last

    def to_dict(self) -> dict[str, Any]:
        inc = self.incident
        return {
            "triggers": [t.isoformat() for t in self.triggers],
            "incident": None
            if inc is None
            else {**inc.__dict__, "opened": inc.opened.isoformat()},
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GuardState:
        inc = d.get("incident")
        return cls(
            tuple(datetime.fromisoformat(t) for t in d.get("triggers", [])),
            None if inc is None else Incident(**{**inc, "opened": datetime.fromisoformat(inc["opened"])}),
            tuple(d.get("notes", [])),
        )


def blocked_reason(
    state: GuardState, params: MonitorParams, now: datetime, new_labels: int
) -> str | None:
    """Why no retrain may start now, or None."""
    inc = state.incident
    if inc is not None and now - inc.opened < timedelta(hours=params.incident_hours):
        word = "alerted" if inc.status == "alert" else "open"
        return f"a retrain for the {word} incident of {inc.opened:%Y-%m-%d %H:%M} covers it ({inc.reason[:80]})"
    recent = [t for t in state.triggers if now - t < timedelta(days=1)]
    if len(recent) >= params.max_retrains_global_per_day:
        return f"global cap of {params.max_retrains_global_per_day} retrains/24h reached"
    if new_labels < params.min_new_labels:
        return (
            f"refused: {new_labels} new labelled field rows since the last retrain "
            f"(< monitor.min_new_labels = {params.min_new_labels}), nothing new to learn from"
        )
    return None


def open_incident(
    state: GuardState, now: datetime, reason: str, versions: dict[str, str]
) -> GuardState:
    recent = tuple(t for t in state.triggers if now - t < timedelta(days=1))
    return replace(state, triggers=(*recent, now), incident=Incident(now, reason, versions))


def follow_up(
    state: GuardState,
    judged: Iterable[tuple[str, str, bool, datetime]],
    params: MonitorParams,
    now: datetime,
) -> tuple[GuardState, list[str]]:
    """After a retrain: (cohort, model_version, harmful, window_start) of newly judged windows."""
    inc = state.incident
    if inc is None or inc.status != "open":
        if inc is not None and now - inc.opened >= timedelta(hours=params.incident_hours):
            return replace(state, incident=None), []
        return state, []
    notes: list[str] = []
    for cohort, version, harmful, start in judged:
        if cohort not in inc.versions or version == inc.versions[cohort] or start < inc.opened:
            continue
        if harmful:
            notes.append(
                f"ALERT {now:%Y-%m-%d %H:%M}: harm persisted after the retrain of "
                f"{inc.opened:%Y-%m-%d %H:%M} ({cohort} model {version}); not retraining again"
            )
            inc = replace(inc, status="alert")
            break
        notes.append(
            f"{now:%Y-%m-%d %H:%M}: harm resolved after the retrain ({cohort} model {version})"
        )
        return replace(state, incident=None, notes=(*state.notes, *notes)[-_KEEP_NOTES:]), notes
    if inc.status == "open" and now - inc.opened >= timedelta(hours=params.incident_hours):
        notes.append(
            f"ALERT {now:%Y-%m-%d %H:%M}: no judged window of a retrained model within "
            f"{params.incident_hours:g} h of the incident of {inc.opened:%Y-%m-%d %H:%M}"
        )
        inc = replace(inc, status="alert")
    return replace(state, incident=inc, notes=(*state.notes, *notes)[-_KEEP_NOTES:]), notes


def load_guard(store: ObjectStore) -> tuple[GuardState, str | None]:
    if not store.exists(GUARD_KEY):
        return GuardState(), None
    data, etag = store.get_with_etag(GUARD_KEY)
    return GuardState.from_dict(json.loads(data)), etag


def save_guard(store: ObjectStore, state: GuardState, etag: str | None) -> None:
    """Compare-and-swap: a second monitor that changed the guard meanwhile makes this one fail."""
    body = json.dumps(state.to_dict(), indent=1).encode()
    try:
        store.put_if_match(GUARD_KEY, body, etag)
    except ConflictError as exc:
        raise MonitoringError(
            "the retrain guard changed under this monitor run (another run decided meanwhile)",
            where=GUARD_KEY,
        ) from exc

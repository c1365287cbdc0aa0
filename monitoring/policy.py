"""Guarded retraining: a pure decision over harm (or drift) evidence, with its state in the store.

Why guarded: one noisy window must not start a training run, and a real harm that persists
must not start one every window. So per scope (cohort/model version/bundle) a retrain needs
enough samples per window, the signal sustained over `sustained_windows` consecutive windows, a
cool-down since the last trigger, and at most `max_retrains_per_day` triggers in any 24 hours.
Across scopes (`GlobalState`): one incident at a time (a retrain opened for one cohort covers
every other cohort that shows the same harm, and nothing new starts until the retrained model
has been judged or `incident_hours` pass), a global daily cap, and a minimum of new labelled
field rows since the last retrain (no labels, nothing to learn from: refused with the reason).
After a retrain, the first judged window of a newer model in an affected cohort closes the
incident, or, if the harm is still there, raises an alert instead of another retrain.
`decide` is pure (the caller passes `now`); `evaluate` loads and saves by compare-and-swap.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from device.store import ObjectStore
from edgeops.errors import ConflictError, MonitoringError
from edgeops.params import MonitorParams

STATE_KEY = "monitoring/policy_state.json"
_CAS_TRIES = 5
_MAX_RUNS = 24


@dataclass(frozen=True)
class WindowEvidence:
    window_start: datetime
    n_current: int
    drifted: bool
    kinds: tuple[str, ...] = ()  # which drift jobs said drift (data, prediction, concept...)
    signal: str = "drift"  # what `drifted` stands for: "drift" or "harm" (monitor.trigger)
    run_id: str = ""  # the MLflow run the window was logged under ("" when none)


@dataclass(frozen=True)
class PolicyState:
    streak: int = 0
    last_window: datetime | None = None
    last_trigger: datetime | None = None
    triggers: tuple[datetime, ...] = field(default=())
    runs: tuple[str, ...] = ()  # MLflow runs of the current streak's windows, oldest first

    def to_dict(self) -> dict[str, object]:
        iso = lambda t: t.isoformat() if t else None  # noqa: E731
        return {
            "streak": self.streak,
            "last_window": iso(self.last_window),
            "last_trigger": iso(self.last_trigger),
            "triggers": [t.isoformat() for t in self.triggers],
            "runs": list(self.runs),
        }

    @classmethod
    def from_dict(cls, d: dict) -> PolicyState:
        parse = lambda s: datetime.fromisoformat(s) if s else None  # noqa: E731
        return cls(
            int(d.get("streak", 0)),
            parse(d.get("last_window")),
            parse(d.get("last_trigger")),
            tuple(datetime.fromisoformat(t) for t in d.get("triggers", [])),
            tuple(str(r) for r in d.get("runs", [])),
        )


@dataclass(frozen=True)
class PolicyDecision:
    retrain: bool
    reasons: tuple[str, ...]
    state: PolicyState
    cause_runs: tuple[str, ...] = ()  # on a retrain: the runs of the streak's windows, in time order


def decide(
    ev: WindowEvidence,
    state: PolicyState,
    params: MonitorParams,
    now: datetime,
    blocked: str | None = None,
) -> PolicyDecision:
    """`blocked`: why the deployment-wide guard refuses a retrain now (None: it allows one)."""
    if state.last_window is not None and ev.window_start <= state.last_window:
        return PolicyDecision(
            False, (f"window {ev.window_start.isoformat()} already counted",), state
        )
    if ev.n_current < params.min_samples:
        reason = f"{ev.n_current} samples < {params.min_samples}: window neither counts for nor against drift"
        return PolicyDecision(False, (reason,), replace(state, last_window=ev.window_start))
    streak = state.streak + 1 if ev.drifted else 0
    # the streak's runs, across monitor passes (bounded: a long streak under a cap keeps its newest)
    runs = ((*state.runs, ev.run_id) if ev.run_id else state.runs)[-_MAX_RUNS:] if ev.drifted else ()
    state = replace(state, streak=streak, last_window=ev.window_start, runs=runs)
    if not ev.drifted:
        return PolicyDecision(False, (f"no {ev.signal} in this window",), state)
    what = (
        f"harm in {streak} consecutive window(s)"
        if ev.signal == "harm"
        else f"drift ({', '.join(ev.kinds) or 'unspecified'}) in {streak} consecutive window(s)"
    )
    if streak < params.sustained_windows:
        return PolicyDecision(False, (f"{what}, need {params.sustained_windows}",), state)
    if state.last_trigger is not None and now - state.last_trigger < timedelta(
        hours=params.cooldown_hours
    ):
        return PolicyDecision(
            False, (f"{what}, but cooling down since {state.last_trigger.isoformat()}",), state
        )
    recent = tuple(t for t in state.triggers if now - t < timedelta(days=1))
    if len(recent) >= params.max_retrains_per_day:
        return PolicyDecision(
            False,
            (f"{what}, but cap of {params.max_retrains_per_day} retrains/24h reached",),
            replace(state, triggers=recent),
        )
    if blocked:
        return PolicyDecision(False, (f"{what}, but {blocked}",), replace(state, triggers=recent))
    new = replace(state, streak=0, last_trigger=now, triggers=(*recent, now), runs=())
    return PolicyDecision(True, (f"{what} with >= {params.min_samples} samples: retrain",), new,
                          state.runs)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def load_states(store: ObjectStore) -> tuple[dict[str, PolicyState], str | None]:
    if not store.exists(STATE_KEY):
        return {}, None
    data, etag = store.get_with_etag(STATE_KEY)
    return {k: PolicyState.from_dict(v) for k, v in json.loads(data).items()}, etag


def evaluate(
    store: ObjectStore,
    scope: str,
    ev: WindowEvidence,
    params: MonitorParams,
    clock: Callable[[], datetime] = _utcnow,
    blocked: str | None = None,
) -> PolicyDecision:
    """Decide for one scope (e.g. 'pi-fleet-eu/3') and persist the new state atomically."""
    for _ in range(_CAS_TRIES):
        states, etag = load_states(store)
        decision = decide(ev, states.get(scope, PolicyState()), params, clock(), blocked)
        states[scope] = decision.state
        body = json.dumps({k: v.to_dict() for k, v in sorted(states.items())}, indent=1).encode()
        try:
            store.put_if_match(STATE_KEY, body, etag)
            return decision
        except ConflictError:
            continue
    raise MonitoringError(
        f"policy state kept changing under {_CAS_TRIES} attempts", where=STATE_KEY
    )

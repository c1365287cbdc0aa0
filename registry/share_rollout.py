"""A server cohort's staged rollout by share of requests, kept where the release already is: in
the MLflow registry.

A server cohort has no device bundle and no update channel: its release is the registered
model's aliases `<cohort>-stable` / `<cohort>-canary` (registry.serving's router reads them). The
rollout's state lives in tags on the canary version, visible in the MLflow UI:

- `share.<cohort>`: percent of requests the router sends to the canary (the router's input);
- `share_plan.<cohort>`: steps, dwell, minimum count, gate thresholds and the accuracy margin
  (the same plan fields and defaults as a device rollout, registry.rollout_state);
- `share_step.<cohort>`, `share_started.<cohort>`: the current step and when it began;
- `rollout.<cohort>` / `rollout.<cohort>.last`: status and last transition (as rollout_mirror
  writes them for device cohorts), and `share_history.<cohort>`: the transitions (last 30).

Every transition names the step it expects, so a retried or concurrent call is refused instead
of stepping twice; completion moves `<cohort>-stable` to the canary version, rollback removes
`<cohort>-canary` (the router then sends every request to the stable).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from device.protocol import format_time, parse_time
from edgeops.errors import RolloutError
from registry.controller import GateThresholds
from registry.mlflow_models import cohort_alias, set_cohort_alias
from registry.rollout_state import DEFAULT_STEPS

if TYPE_CHECKING:
    from mlflow import MlflowClient

HISTORY_KEEP = 30


def share_tag(cohort: str) -> str:
    return f"share.{cohort}"


@dataclass(frozen=True)
class SharePlan:
    steps: tuple[float, ...] = DEFAULT_STEPS
    min_dwell_s: float = 600.0
    min_count: int = 50
    thresholds: GateThresholds = field(default_factory=GateThresholds)
    margin: float = 0.02  # accuracy: canary - stable must credibly stay above -margin

    def __post_init__(self) -> None:
        s = self.steps
        if not s or any(not 0 < p <= 100 for p in s) or list(s) != sorted(set(s)) or s[-1] != 100:
            raise RolloutError(f"steps must rise strictly within (0, 100] and end at 100, got {list(s)}")
        if self.min_dwell_s < 0 or self.min_count < 0 or not 0 <= self.margin < 1:
            raise RolloutError("min dwell, min count and margin must not be negative (margin below 1)")

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "steps": list(self.steps), "thresholds": self.thresholds.to_dict()})

    @classmethod
    def from_json(cls, text: str) -> SharePlan:
        d = json.loads(text)
        return cls(tuple(float(p) for p in d["steps"]), float(d["min_dwell_s"]), int(d["min_count"]),
                   GateThresholds.from_dict(d.get("thresholds")), float(d.get("margin", 0.02)))


@dataclass(frozen=True)
class ShareRollout:
    """A running share rollout of one server cohort. Shaped like registry.rollout_state's
    RolloutState where registry.controller.decide reads it (status, plan, step_index,
    step_started), so the server cohort is judged by the same decision."""

    cohort: str
    name: str  # registered model
    stable: str
    canary: str
    plan: SharePlan
    step_index: int
    step_started_at: str
    status: str = "running"

    @property
    def percentage(self) -> float:
        return self.plan.steps[self.step_index]

    def step_started(self) -> datetime:
        return parse_time(self.step_started_at)


def _aliases(client: MlflowClient, name: str) -> dict[str, str]:
    return {k: str(v) for k, v in client.get_registered_model(name).aliases.items()}


def read_share_rollout(client: MlflowClient, name: str, cohort: str) -> ShareRollout | None:
    """The cohort's running share rollout on `name`, None when it has no canary."""
    aliases = _aliases(client, name)
    canary, stable = aliases.get(cohort_alias(cohort, "canary")), aliases.get(cohort_alias(cohort, "stable"))
    if canary is None or stable is None:
        return None
    tags = client.get_model_version(name, canary).tags
    if f"share_plan.{cohort}" not in tags:
        raise RolloutError(f"cohort {cohort}: canary {name} v{canary} has no share plan (set by start_share_rollout)")
    return ShareRollout(cohort, name, stable, canary, SharePlan.from_json(tags[f"share_plan.{cohort}"]),
                        int(tags.get(f"share_step.{cohort}", "0")), tags.get(f"share_started.{cohort}", ""))


def _record(client: MlflowClient, name: str, version: str, cohort: str, now: datetime, actor: str,
            action: str, status: str, reason: str, tags: dict[str, str]) -> None:
    """Write the state tags first, the transition last (a crash in between leaves a state the
    next pass reads and acts on again, never a transition without its state)."""
    old = client.get_model_version(name, version).tags.get(f"share_history.{cohort}", "[]")
    line = f"{format_time(now)} {actor}: {action} - {reason}"
    history = [*json.loads(old), line][-HISTORY_KEEP:]
    for k, v in tags.items():
        client.set_model_version_tag(name, version, k, v)
    client.set_model_version_tag(name, version, f"rollout.{cohort}", status)
    client.set_model_version_tag(name, version, f"rollout.{cohort}.last", line[:4000])
    client.set_model_version_tag(name, version, f"share_history.{cohort}", json.dumps(history)[-5000:])


def start_share_rollout(client: MlflowClient, name: str, cohort: str, version: str, now: datetime,
                        plan: SharePlan | None = None, actor: str = "release-pipeline") -> ShareRollout:
    """Make `version` the cohort's canary at the plan's first step (the stable must exist)."""
    plan = plan or SharePlan()
    version = str(version)
    aliases = _aliases(client, name)
    stable = aliases.get(cohort_alias(cohort, "stable"))
    if stable is None:
        raise RolloutError(f"cohort {cohort}: {name} has no stable version to roll out against")
    if stable == version:
        raise RolloutError(f"cohort {cohort}: {name} v{version} is already its stable")
    running = aliases.get(cohort_alias(cohort, "canary"))
    if running is not None and running != version:
        raise RolloutError(f"cohort {cohort}: a rollout of {name} v{running} is running; roll it back first")
    if running == version:  # a retried start: already done
        found = read_share_rollout(client, name, cohort)
        assert found is not None
        return found
    started = format_time(now)
    _record(client, name, version, cohort, now, actor, "start", f"running {plan.steps[0]:g}%",
            f"canary of {name} v{version} against stable v{stable}",
            {f"share_plan.{cohort}": plan.to_json(), f"share_step.{cohort}": "0",
             f"share_started.{cohort}": started, share_tag(cohort): f"{plan.steps[0]:g}"})
    set_cohort_alias(client, name, cohort, "canary", version)  # last: the router only then sees it
    return ShareRollout(cohort, name, stable, version, plan, 0, started)


def _current(client: MlflowClient, r: ShareRollout, expected_step: int) -> ShareRollout:
    now = read_share_rollout(client, r.name, r.cohort)
    if now is None or now.canary != r.canary or now.step_index != expected_step:
        at = "no rollout" if now is None else f"v{now.canary} at step {now.step_index + 1}"
        raise RolloutError(f"cohort {r.cohort}: expected v{r.canary} at step {expected_step + 1}, found {at}")
    return now


def advance_share(client: MlflowClient, r: ShareRollout, now: datetime, actor: str, reason: str) -> str:
    """The next step's share, or completion (the canary becomes the stable). Returns the outcome."""
    cur = _current(client, r, r.step_index)
    nxt = cur.step_index + 1
    if nxt < len(cur.plan.steps):
        pct = cur.plan.steps[nxt]
        _record(client, cur.name, cur.canary, cur.cohort, now, actor, "advance", f"running {pct:g}%", reason,
                {f"share_step.{cur.cohort}": str(nxt), f"share_started.{cur.cohort}": format_time(now),
                 share_tag(cur.cohort): f"{pct:g}"})
        return f"now running at {pct:g}% of requests"
    set_cohort_alias(client, cur.name, cur.cohort, "stable", cur.canary)
    set_cohort_alias(client, cur.name, cur.cohort, "canary", None)
    _record(client, cur.name, cur.canary, cur.cohort, now, actor, "complete", "completed 100%", reason,
            {share_tag(cur.cohort): "100"})
    return f"completed: v{cur.canary} is the stable"


def rollback_share(client: MlflowClient, r: ShareRollout, now: datetime, actor: str, reason: str) -> str:
    cur = _current(client, r, r.step_index)
    set_cohort_alias(client, cur.name, cur.cohort, "canary", None)  # first: the router stops at once
    _record(client, cur.name, cur.canary, cur.cohort, now, actor, "rollback", "rolled_back", reason,
            {share_tag(cur.cohort): "0"})
    return f"rolled back: every request to the stable v{cur.stable}"


def rollout_summary(r: ShareRollout) -> dict[str, Any]:
    return {"cohort": r.cohort, "model": r.name, "stable": r.stable, "canary": r.canary,
            "share": r.percentage, "step": f"{r.step_index + 1}/{len(r.plan.steps)}"}

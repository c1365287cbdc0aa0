"""The rollout state document (`rollouts/<cohort>.json`): plan, current step and full history.

One JSON document per cohort, replaced only by compare-and-swap, so its history is the audit
trail: every transition with who, when, why, the step and the manifest revision it produced,
from the cohort's first publication on. Past rollouts of the cohort stay in `history`;
`rollout_id` tells them apart. The plan owns its gate thresholds (`GateThresholds`), so the
controller's decision (registry.controller) reads this module and never the other way round.
A stable is named by its registered model AND version (`RegisteredVersion`): stables and
candidates may be different registered models (`digits-tflite-int8` vs `digits-prune-tflite-int8`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from device.protocol import BundleRef, format_time, parse_time
from edgeops.errors import RolloutError

Status = Literal["none", "planned", "running", "paused", "completed", "rolled_back"]
ACTIVE: tuple[str, ...] = ("planned", "running", "paused")
DEFAULT_STEPS: tuple[float, ...] = (1.0, 5.0, 25.0, 50.0, 100.0)


@dataclass(frozen=True)
class GateThresholds:
    """Limits on the canary, mostly relative to stable (the same hour, the same cohort)."""

    max_error_rate: float = 0.05  # absolute share of failed inferences / refusals
    max_error_rate_increase: float = 0.02  # canary minus stable
    max_p95_latency_ratio: float = 1.5  # canary p95 / stable p95
    max_confidence_drop: float = 0.10  # stable mean confidence minus canary's
    max_prediction_shift: float = 0.20  # Jensen-Shannon distance of top-1 histograms, [0, 1]
    min_labelled: int = 30  # labelled feedback needed before accuracy is judged
    max_accuracy_drop: float = 0.05  # stable accuracy minus canary accuracy
    min_samples_to_fail: int = 20  # fewer canary records than this never roll back

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> GateThresholds:
        return cls(**{k: v for k, v in (d or {}).items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class RegisteredVersion:
    """A version of a registered model (`<model_name>-<target>`), as MLflow names it."""

    registered_model: str
    version: str

    def __str__(self) -> str:
        return f"{self.registered_model} v{self.version}"

    def to_dict(self) -> dict[str, str]:
        return {"registered_model": self.registered_model, "version": self.version}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> RegisteredVersion | None:
        if not d or not d.get("registered_model"):
            return None
        return cls(str(d["registered_model"]), str(d["version"]))


@dataclass(frozen=True)
class RolloutPlan:
    registered_model: str  # e.g. digits-tflite-f32
    model_name: str
    version: str
    target: str
    candidate: BundleRef
    steps: tuple[float, ...] = DEFAULT_STEPS
    min_dwell_s: float = 600.0
    min_count: int = 50
    thresholds: GateThresholds = field(default_factory=GateThresholds)

    def __post_init__(self) -> None:
        s = self.steps
        if not s or any(not 0 < p <= 100 for p in s) or list(s) != sorted(set(s)) or s[-1] != 100:
            raise RolloutError(
                f"steps must rise strictly within (0, 100] and end at 100, got {list(s)}"
            )
        if self.min_dwell_s < 0 or self.min_count < 0:
            raise RolloutError("min dwell and min telemetry count must not be negative")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["candidate"] = self.candidate.to_dict()
        d["steps"] = list(self.steps)
        d["thresholds"] = self.thresholds.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RolloutPlan:
        cand = BundleRef.from_dict(d["candidate"])
        assert cand is not None
        return cls(
            registered_model=d["registered_model"],
            model_name=d["model_name"],
            version=str(d["version"]),
            target=d["target"],
            candidate=cand,
            steps=tuple(float(p) for p in d["steps"]),
            min_dwell_s=float(d["min_dwell_s"]),
            min_count=int(d["min_count"]),
            thresholds=GateThresholds.from_dict(d.get("thresholds")),
        )


@dataclass(frozen=True)
class Transition:
    rollout_id: int
    at: str
    actor: str
    action: str  # publish | plan | start | advance | pause | resume | complete | rollback
    from_status: str
    to_status: str
    step_index: int
    percentage: float
    version: str
    reason: str
    manifest_revision: int | None = None
    model: str = ""  # the registered model of `version` (empty in records older than the field)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Transition:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


@dataclass(frozen=True)
class RolloutState:
    cohort: str
    status: Status = "none"
    rollout_id: int = 0
    plan: RolloutPlan | None = None
    step_index: int = 0
    step_started_at: str | None = None
    previous_stable: BundleRef | None = None  # what rollback repoints to
    previous_stable_version: RegisteredVersion | None = None  # its registered model and version
    history: tuple[Transition, ...] = ()

    @property
    def candidate_version(self) -> RegisteredVersion | None:
        p = self.plan
        return RegisteredVersion(p.registered_model, p.version) if p else None

    @property
    def stable_version(self) -> RegisteredVersion | None:
        """The registered version the cohort's channel names as stable under this state."""
        if self.status == "completed":
            return self.candidate_version
        return self.previous_stable_version

    @property
    def stable_bundle(self) -> BundleRef | None:
        if self.status == "completed" and self.plan is not None:
            return self.plan.candidate
        return self.previous_stable

    @property
    def percentage(self) -> float:
        if self.plan is None or self.status not in ("running", "paused"):
            return 0.0
        return self.plan.steps[self.step_index]

    def step_started(self) -> datetime:
        if self.step_started_at is None:
            raise RolloutError(f"rollout of {self.cohort} has no running step")
        return parse_time(self.step_started_at)

    def record(
        self, now: datetime, actor: str, action: str, to: Status, reason: str, **changes: Any
    ) -> RolloutState:
        """A new state with `changes` applied and the transition appended to the history."""
        new = replace(self, status=to, **changes)
        plan = new.plan
        t = Transition(
            rollout_id=new.rollout_id,
            at=format_time(now),
            actor=actor,
            action=action,
            from_status=self.status,
            to_status=to,
            step_index=new.step_index,
            percentage=new.percentage
            if to in ("running", "paused")
            else (100.0 if to == "completed" else 0.0),
            version=plan.version if plan else "",
            reason=reason,
            model=plan.registered_model if plan else "",
        )
        return replace(new, history=(*self.history, t))

    def with_revision(self, revision: int) -> RolloutState:
        """Stamp the manifest revision the last transition produced."""
        if not self.history:
            return self
        return replace(
            self,
            history=(*self.history[:-1], replace(self.history[-1], manifest_revision=revision)),
        )

    def to_json(self) -> bytes:
        d = {
            "cohort": self.cohort,
            "status": self.status,
            "rollout_id": self.rollout_id,
            "plan": self.plan.to_dict() if self.plan else None,
            "step_index": self.step_index,
            "step_started_at": self.step_started_at,
            "previous_stable": self.previous_stable.to_dict() if self.previous_stable else None,
            "previous_stable_version": self.previous_stable_version.to_dict()
            if self.previous_stable_version
            else None,
            "history": [asdict(t) for t in self.history],
        }
        return json.dumps(d, indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> RolloutState:
        d = json.loads(data)
        return cls(
            cohort=d["cohort"],
            status=d["status"],
            rollout_id=int(d["rollout_id"]),
            plan=RolloutPlan.from_dict(d["plan"]) if d.get("plan") else None,
            step_index=int(d["step_index"]),
            step_started_at=d.get("step_started_at"),
            previous_stable=BundleRef.from_dict(d.get("previous_stable")),
            previous_stable_version=RegisteredVersion.from_dict(d.get("previous_stable_version")),
            history=tuple(Transition.from_dict(t) for t in d.get("history", [])),
        )

    def summary(self) -> dict[str, Any]:
        """What `release status` shows: the candidate and the stable, each by registered model
        and version, where the rollout stands and when it last changed."""
        p = self.plan
        cand, stable = self.candidate_version, self.stable_version
        active = self.status in ACTIVE
        return {
            "cohort": self.cohort,
            "status": self.status,
            "rollout_id": self.rollout_id,
            "model": cand.registered_model if cand and active else None,
            "version": cand.version if cand and active else None,
            "step": f"{self.step_index + 1}/{len(p.steps)}"
            if p and self.status in ("running", "paused")
            else None,
            "percentage": self.percentage,
            "step_started_at": self.step_started_at,
            "stable_model": stable.registered_model if stable else None,
            "stable_version": stable.version if stable else None,
            "candidate_bundle": p.candidate.bundle_id[:12] if p and active else None,
            "last_change": self.history[-1].at if self.history else None,
        }

"""Staged rollouts per cohort: planned -> running(step i) -> paused -> completed | rolled_back.

The state document (registry.rollout_state) is the source of truth and is only replaced by
compare-and-swap, so concurrent commands (two release managers, the controller) are applied one
after another and none is lost. After every transition the cohort manifest is brought in line
with the *latest* state inside the manifest's own CAS loop: whichever writer lands last writes
the newest state, so manifest and state cannot end up disagreeing. MLflow mirrors the outcome
(aliases `<cohort>-stable` / `<cohort>-canary`, `rollout.<cohort>` tags); the store stays the
source of truth, so an unreachable MLflow never blocks a rollback.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from device.protocol import Manifest, format_time, utcnow
from device.store import MissingKeyError, ObjectStore
from edgeops.errors import ConfigError, ConflictError, RolloutError
from registry.bundles import find_bundle
from registry.controller import GateThresholds
from registry.keys import SigningKey, load_or_create_cohort_key, load_trusted_keys
from registry.manifests import DEFAULT_TTL, empty_manifest, read_manifest_with_etag, update_manifest
from registry.rollout_mirror import mirror_rollout
from registry.rollout_state import ACTIVE, DEFAULT_STEPS, RolloutPlan, RolloutState, Status

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from components.profiles import DeviceCatalog

Clock = Callable[[], datetime]
Step = Callable[[RolloutState, datetime], RolloutState]


def rollout_key(cohort: str) -> str:
    return f"rollouts/{cohort}.json"


def desired_manifest(state: RolloutState, current: Manifest | None) -> Manifest | None:
    """The manifest the state calls for, or None when `current` already matches it."""
    base = current or empty_manifest(state.cohort)
    plan = state.plan
    if plan is None or state.status in ("none", "planned"):
        return None
    salt = f"{state.cohort}-rollout-{state.rollout_id}"
    if state.status in ("running", "paused"):
        want = replace(
            base,
            stable=state.previous_stable,
            candidate=plan.candidate,
            percentage=state.percentage,
            salt=salt,
        )
    elif state.status == "completed":
        want = replace(base, stable=plan.candidate, candidate=None, percentage=0.0, salt=salt)
    else:  # rolled_back
        want = replace(
            base, stable=state.previous_stable, candidate=None, percentage=0.0, salt=salt
        )
    same = current is not None and (
        current.stable,
        current.candidate,
        current.percentage,
        current.salt,
    ) == (
        want.stable,
        want.candidate,
        want.percentage,
        want.salt,
    )
    return None if same else want


@dataclass
class RolloutManager:
    store: ObjectStore
    signing_key: SigningKey
    catalog: DeviceCatalog
    client: MlflowClient | None = None
    clock: Clock = utcnow
    keys_dir: Path | None = None
    manifest_ttl: timedelta = DEFAULT_TTL
    retries: int = 50
    _trusted: dict[str, Any] = field(default_factory=dict, repr=False)

    # --- reading ------------------------------------------------------------------------
    def _cohort(self, cohort: str) -> None:
        if cohort not in self.catalog.cohorts:
            raise RolloutError(
                f"unknown cohort {cohort!r}; known: {', '.join(sorted(self.catalog.cohorts))}"
            )

    def _load(self, cohort: str) -> tuple[RolloutState, str | None]:
        try:
            data, etag = self.store.get_with_etag(rollout_key(cohort))
        except MissingKeyError:
            return RolloutState(cohort), None
        return RolloutState.from_json(data), etag

    def state(self, cohort: str) -> RolloutState:
        self._cohort(cohort)
        return self._load(cohort)[0]

    def trusted(self) -> dict[str, Any]:
        if not self._trusted:
            self._trusted = load_trusted_keys(self.store)
            self._trusted[self.signing_key.key_id] = self.signing_key.public_key
        return self._trusted

    def manifest(self, cohort: str) -> Manifest | None:
        return read_manifest_with_etag(self.store, cohort, self.trusted(), allow_expired=True)[0]

    # --- the CAS core -------------------------------------------------------------------
    def _apply(self, cohort: str, step: Step) -> RolloutState:
        self._cohort(cohort)
        for attempt in range(self.retries):
            state, etag = self._load(cohort)
            new = step(state, self.clock())
            try:
                self.store.put_if_match(rollout_key(cohort), new.to_json(), etag)
                break
            except ConflictError:
                time.sleep(random.uniform(0, 0.01 * (attempt + 1)))
        else:
            raise ConflictError(
                f"rollout state of {cohort!r} kept changing; retry", where=self.store.url
            )
        manifest = self.sync(cohort)
        position = len(new.history) - 1
        if manifest is not None:
            new = self._stamp(cohort, position, manifest.revision) or new
        if self.client is not None:
            mirror_rollout(self.client, new)
        return new

    def sync(self, cohort: str) -> Manifest | None:
        """Bring the manifest in line with the latest rollout state (also repairs a crash);
        returns the manifest in effect (None while the cohort has none)."""

        def mutate(current: Manifest | None) -> Manifest | None:
            return desired_manifest(self._load(cohort)[0], current)

        return update_manifest(
            self.store,
            cohort,
            mutate,
            self.signing_key,
            ttl=self.manifest_ttl,
            clock=self.clock,
            retries=self.retries,
            trusted=self.trusted(),
        )

    def _stamp(self, cohort: str, position: int, revision: int) -> RolloutState | None:
        for _ in range(self.retries):
            state, etag = self._load(cohort)
            if (
                position >= len(state.history)
                or state.history[position].manifest_revision is not None
            ):
                return state
            h = list(state.history)
            h[position] = replace(h[position], manifest_revision=revision)
            try:
                self.store.put_if_match(
                    rollout_key(cohort), replace(state, history=tuple(h)).to_json(), etag
                )
                return replace(state, history=tuple(h))
            except ConflictError:
                continue
        return None

    # --- commands -----------------------------------------------------------------------
    def plan(
        self,
        cohort: str,
        registered_model: str,
        version: str | int,
        *,
        actor: str,
        reason: str = "",
        steps: tuple[float, ...] = DEFAULT_STEPS,
        min_dwell_s: float = 600.0,
        min_count: int = 50,
        thresholds: GateThresholds | None = None,
    ) -> RolloutState:
        """Plan a candidate for a cohort: blessed, releasable, runnable by the cohort's profile."""
        self._cohort(cohort)
        version = str(version)
        tags, model_name = self._version_tags(registered_model, version)
        target = tags.get("target", "")
        profile = self.catalog.profile_for(cohort)
        if tags.get("blessed") != "true" or tags.get("releasable") != "true":
            why = tags.get("blessing_reasons") or "no passing blessing recorded"
            raise RolloutError(
                f"{registered_model} version {version} is not blessed and releasable: {why}"
            )
        if not profile.allows(target):
            raise RolloutError(
                f"{registered_model} version {version} is {target or 'of unknown target'}; cohort {cohort} "
                f"(profile {profile.name}) runs {', '.join(profile.targets)}"
            )
        key = self._cohort_key(cohort)
        candidate = find_bundle(self.store, model_name, version, target, key)
        plan = RolloutPlan(
            registered_model,
            model_name,
            version,
            target,
            candidate,
            tuple(float(s) for s in steps),
            float(min_dwell_s),
            int(min_count),
            thresholds or GateThresholds(),
        )
        return self.plan_resolved(cohort, plan, actor=actor, reason=reason)

    def plan_resolved(
        self, cohort: str, plan: RolloutPlan, *, actor: str, reason: str = ""
    ) -> RolloutState:
        """The planning transition for an already-checked plan. `plan` runs the registry checks
        (blessing, target) first; the benchmark and simulator call this with bundles they
        published themselves."""
        self._cohort(cohort)
        current = self.manifest(cohort)
        stable = current.stable if current else None
        if stable is not None and stable.bundle_id == plan.candidate.bundle_id:
            raise RolloutError(
                f"{plan.registered_model} version {plan.version} is already stable on {cohort}"
            )
        prev_version = (
            {
                "registered_model": f"{plan.model_name}-{stable.target}",
                "version": stable.model_version,
            }
            if stable
            else None
        )

        def step(s: RolloutState, now: datetime) -> RolloutState:
            if s.status in ACTIVE:
                ver = s.plan.version if s.plan else "?"
                raise RolloutError(
                    f"a rollout is already {s.status} on {cohort} (version {ver}); roll it back first"
                )
            return s.record(
                now,
                actor,
                "plan",
                "planned",
                reason or f"plan {plan.registered_model} v{plan.version}",
                rollout_id=s.rollout_id + 1,
                plan=plan,
                step_index=0,
                step_started_at=None,
                previous_stable=stable,
                previous_stable_version=prev_version,
            )

        return self._apply(cohort, step)

    def _guard(self, s: RolloutState, allowed: tuple[str, ...], action: str) -> None:
        if s.status not in allowed:
            what = f"version {s.plan.version}" if s.plan else "no rollout"
            raise RolloutError(f"cannot {action} on {s.cohort}: rollout is {s.status} ({what})")

    def start(self, cohort: str, *, actor: str, reason: str = "") -> RolloutState:
        def step(s: RolloutState, now: datetime) -> RolloutState:
            self._guard(s, ("planned",), "start")
            return s.record(
                now,
                actor,
                "start",
                "running",
                reason or "start at first step",
                step_started_at=format_time(now),
            )

        return self._apply(cohort, step)

    def advance(
        self, cohort: str, *, actor: str, reason: str = "", expected_step: int | None = None
    ) -> RolloutState:
        """Next percentage step, or completion after the last. `expected_step` makes it
        idempotent for the controller: a stale view raises instead of skipping a step."""

        def step(s: RolloutState, now: datetime) -> RolloutState:
            self._guard(s, ("running",), "advance")
            assert s.plan is not None
            if expected_step is not None and s.step_index != expected_step:
                raise RolloutError(
                    f"stale advance on {cohort}: expected step {expected_step}, at {s.step_index}"
                )
            if s.step_index + 1 >= len(s.plan.steps):
                return s.record(
                    now,
                    actor,
                    "complete",
                    "completed",
                    reason or "last step passed; candidate is stable",
                )
            nxt = s.step_index + 1
            return s.record(
                now,
                actor,
                "advance",
                "running",
                reason or f"advance to {s.plan.steps[nxt]:g}%",
                step_index=nxt,
                step_started_at=format_time(now),
            )

        return self._apply(cohort, step)

    def pause(self, cohort: str, *, actor: str, reason: str = "") -> RolloutState:
        def step(s: RolloutState, now: datetime) -> RolloutState:
            self._guard(s, ("running",), "pause")
            return s.record(
                now, actor, "pause", "paused", reason or "paused; canary keeps its share"
            )

        return self._apply(cohort, step)

    def resume(self, cohort: str, *, actor: str, reason: str = "") -> RolloutState:
        def step(s: RolloutState, now: datetime) -> RolloutState:
            self._guard(s, ("paused",), "resume")
            return s.record(
                now,
                actor,
                "resume",
                "running",
                reason or "resumed; dwell restarts",
                step_started_at=format_time(now),
            )

        return self._apply(cohort, step)

    def rollback(self, cohort: str, *, actor: str, reason: str = "") -> RolloutState:
        """Repoint the cohort to the stable it had before this rollout, at once."""

        def step(s: RolloutState, now: datetime) -> RolloutState:
            self._guard(s, ("planned", "running", "paused", "completed"), "roll back")
            return s.record(now, actor, "rollback", "rolled_back", reason or "rolled back by hand")

        return self._apply(cohort, step)

    def history(self, cohort: str) -> list[dict[str, Any]]:
        from dataclasses import asdict

        return [asdict(t) for t in self.state(cohort).history]

    def cohorts(self) -> list[dict[str, Any]]:
        rows = []
        for name, c in sorted(self.catalog.cohorts.items()):
            m = self.manifest(name)
            s = self._load(name)[0]
            rows.append(
                {
                    "cohort": name,
                    "profile": c.profile,
                    "targets": list(self.catalog.profiles[c.profile].targets),
                    "encrypt": c.encrypt,
                    "stable": m.stable.to_dict() if m and m.stable else None,
                    "candidate": m.candidate.to_dict() if m and m.candidate else None,
                    "percentage": m.percentage if m else 0.0,
                    "manifest_revision": m.revision if m else None,
                    "manifest_expires_at": m.expires_at if m else None,
                    "rollout": s.status,
                }
            )
        return rows

    # --- helpers ------------------------------------------------------------------------
    def _cohort_key(self, cohort: str) -> bytes | None:
        if not self.catalog.cohorts[cohort].encrypt:
            return None
        if self.keys_dir is None:
            raise ConfigError(f"cohort {cohort} wants encrypted models but no keys_dir was given")
        return load_or_create_cohort_key(self.keys_dir, cohort)

    def _version_tags(self, registered_model: str, version: str) -> tuple[dict[str, str], str]:
        if self.client is None:
            raise RolloutError("planning needs the MLflow registry (no client given)")
        from mlflow.exceptions import MlflowException

        try:
            mv = self.client.get_model_version(registered_model, version)
            rm = self.client.get_registered_model(registered_model)
        except MlflowException as exc:
            raise RolloutError(f"no registry version {registered_model}/{version}") from exc
        tags = dict(mv.tags)
        target = tags.get("target", "")
        model_name = rm.tags.get("model_name") or registered_model.removesuffix(f"-{target}")
        return tags, model_name


def active_cohorts(
    manager: RolloutManager, statuses: tuple[Status, ...] = ("running",)
) -> list[RolloutState]:
    return [
        s for c in sorted(manager.catalog.cohorts) if (s := manager._load(c)[0]).status in statuses
    ]

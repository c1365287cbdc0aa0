"""Staged rollouts per cohort: planned -> running(step i) -> paused -> completed | rolled_back.

The state document (registry.rollout_state) is a TUF target of the cohort's own role
(`cohorts/<cohort>/rollout.json`), next to the cohort's channel: every transition writes the
new state and the channel it calls for in ONE channel transaction (registry.tuf_repo), so they
commit together or not at all, and concurrent commands (two release managers, the controller)
are applied one after another with none lost. Every read is verified from this machine's
trusted root, so a state or index edited in the bucket without the release key is refused.
Transitions are idempotent (re-running one that already happened changes nothing), and
`reconcile` / `rollback` repair a channel that disagrees with its state. The history starts at
the cohort's first publication (`publish_stable`, a rollout completed in one step), and every
stable is kept by registered model and version, read from its signed bundle. MLflow mirrors the
outcome (aliases `<cohort>-stable` / `<cohort>-canary` on exactly the models the channel names,
`rollout.<cohort>` tags); the channel stays the source of truth, so an unreachable MLflow never
blocks a rollback.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from device.channel import cohort_role, rollout_path
from device.protocol import BundleRef, Channel, format_time, utcnow
from device.store import ObjectStore
from edgeops.errors import ConfigError, IntegrityError, RegistryError, RolloutError
from registry.bundles import bundle_metadata, find_bundle
from registry.channels import read_channel, write_channel
from registry.keys import load_or_create_cohort_key
from registry.rollout_mirror import mirror_rollout
from registry.rollout_state import (
    ACTIVE,
    DEFAULT_STEPS,
    GateThresholds,
    RegisteredVersion,
    RolloutPlan,
    RolloutState,
    Status,
)
from registry.tuf_repo import TufRepository, Txn

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from components.profiles import DeviceCatalog

Clock = Callable[[], datetime]
Step = Callable[[RolloutState, Channel | None, datetime], RolloutState]


def rollout_salt(state: RolloutState) -> str:
    """The bucketing salt of a rollout: devices choose by it, gates count canary members by it."""
    return f"{state.cohort}-rollout-{state.rollout_id}"


def desired_channel(state: RolloutState, current: Channel | None) -> Channel | None:
    """The channel the state calls for, or None when `current` already routes that way."""
    base = current or Channel(state.cohort)
    plan = state.plan
    if plan is None or state.status in ("none", "planned"):
        return None
    salt = rollout_salt(state)
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
    want = replace(want, rollout_id=state.rollout_id)
    return None if want.same_routing(current) else want


def read_state(txn: Txn, cohort: str) -> RolloutState:
    """The cohort's rollout state as signed (hash pinned by the cohort role); a cohort not
    delegated yet has none."""
    if not txn.has_role(cohort_role(cohort)):
        return RolloutState(cohort)
    data = txn.read_target(rollout_path(cohort))
    if data is None:
        return RolloutState(cohort)
    try:
        state = RolloutState.from_json(data)
    except (ValueError, KeyError, TypeError) as exc:
        raise IntegrityError(f"rollout state of {cohort} is malformed: {exc!r}") from exc
    if state.cohort != cohort:
        raise IntegrityError(f"rollout state under {cohort} names cohort {state.cohort!r}")
    return state


@dataclass
class RolloutManager:
    repo: TufRepository
    catalog: DeviceCatalog
    client: MlflowClient | None = None
    clock: Clock = utcnow
    keys_dir: Path | None = None

    @property
    def store(self) -> ObjectStore:
        return self.repo.store

    # --- reading ------------------------------------------------------------------------
    def _cohort(self, cohort: str) -> None:
        if cohort not in self.catalog.cohorts:
            raise RolloutError(
                f"unknown cohort {cohort!r}; known: {', '.join(sorted(self.catalog.cohorts))}"
            )

    def state(self, cohort: str) -> RolloutState:
        self._cohort(cohort)
        return read_state(self.repo.begin(), cohort)

    def channel(self, cohort: str) -> Channel | None:
        self._cohort(cohort)
        return read_channel(self.repo.begin(), cohort)

    # --- the transaction core -----------------------------------------------------------
    def _apply(self, cohort: str, step: Step) -> RolloutState:
        """Read state and channel, run `step`, write the new state and the channel it calls
        for in one commit. A step that returns the state unchanged (already done) writes
        nothing, unless the channel disagrees with that state: then it is repaired."""
        self._cohort(cohort)

        def change(txn: Txn) -> RolloutState:
            state = read_state(txn, cohort)
            channel = read_channel(txn, cohort)
            new = step(state, channel, self.clock())
            want = desired_channel(new, channel)
            if want is not None:
                write_channel(txn, cohort, want)
            if new is not state:
                new = new.with_revision(txn.next_version(cohort_role(cohort)))
                txn.put_target(rollout_path(cohort), new.to_json())
            return new

        new = self.repo.transact(change)
        if self.client is not None and new.history:
            mirror_rollout(self.client, new)
        return new

    def reconcile(self, cohort: str) -> Channel | None:
        """Bring the cohort's channel in line with its rollout state (repairs a channel that
        was changed without its state); returns the channel written, None if it matched."""
        self._cohort(cohort)

        def change(txn: Txn) -> Channel | None:
            want = desired_channel(read_state(txn, cohort), read_channel(txn, cohort))
            return write_channel(txn, cohort, want) if want is not None else None

        return self.repo.transact(change)

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
        candidate = find_bundle(self.repo, model_name, version, target, key)
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

        def step(s: RolloutState, c: Channel | None, now: datetime) -> RolloutState:
            stable = c.stable if c else None
            if stable is not None and stable.bundle_id == plan.candidate.bundle_id:
                raise RolloutError(
                    f"{plan.registered_model} version {plan.version} is already stable on {cohort}"
                )
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
                previous_stable_version=self.registered_of(stable, s),
            )

        return self._apply(cohort, step)

    def publish_stable(
        self,
        cohort: str,
        registered: RegisteredVersion,
        model_name: str,
        ref: BundleRef,
        *,
        actor: str,
        reason: str = "",
    ) -> RolloutState:
        """Make a published bundle the cohort's stable at once (its first publication, or a
        release without a staged rollout), recorded as a rollout completed in one step: the
        history starts here, the stable it replaces is kept for the report and for rollback.
        Refused while a rollout is planned or running on the cohort; re-running changes nothing."""
        self._cohort(cohort)
        plan = RolloutPlan(
            registered.registered_model,
            model_name,
            registered.version,
            ref.target,
            ref,
            steps=(100.0,),
            min_dwell_s=0.0,
            min_count=0,
        )

        def step(s: RolloutState, c: Channel | None, now: datetime) -> RolloutState:
            stable = c.stable if c else None
            if (
                s.status == "completed"
                and s.plan is not None
                and s.plan.candidate.bundle_id == ref.bundle_id
            ):
                return s  # already published (a retried publish)
            if s.status in ACTIVE:
                ver = f"{s.plan.registered_model} v{s.plan.version}" if s.plan else "?"
                raise RolloutError(
                    f"a rollout of {ver} is {s.status} on {cohort}; finish or roll it back "
                    f"before publishing {registered} as stable"
                )
            same = stable is not None and stable.bundle_id == ref.bundle_id
            return s.record(
                now,
                actor,
                "publish",
                "completed",
                reason
                or (
                    f"{registered} recorded as the stable it already was"
                    if same
                    else f"publish {registered} as stable"
                ),
                rollout_id=s.rollout_id + 1,
                plan=plan,
                step_index=0,
                step_started_at=None,
                previous_stable=None if same else stable,
                previous_stable_version=None if same else self.registered_of(stable, s),
            )

        return self._apply(cohort, step)

    def registered_of(
        self, ref: BundleRef | None, state: RolloutState | None = None
    ) -> RegisteredVersion | None:
        """The registered model and version a published bundle was made from: what the state
        already knows of it, else its signed metadata (model name and target name the
        registered model). None for no bundle, or one whose metadata cannot be read."""
        if ref is None:
            return None
        if state is not None:
            known = state.stable_bundle
            if known is not None and known.bundle_id == ref.bundle_id and state.stable_version:
                return state.stable_version
        from registry.mlflow_models import registered_model_name

        try:
            meta = bundle_metadata(self.store, ref.bundle_id)
        except (RegistryError, IntegrityError):
            return None
        return RegisteredVersion(
            registered_model_name(meta.model_name, meta.target), str(meta.model_version)
        )

    def _guard(self, s: RolloutState, allowed: tuple[str, ...], action: str) -> None:
        if s.status not in allowed:
            what = f"version {s.plan.version}" if s.plan else "no rollout"
            raise RolloutError(f"cannot {action} on {s.cohort}: rollout is {s.status} ({what})")

    def start(self, cohort: str, *, actor: str, reason: str = "") -> RolloutState:
        def step(s: RolloutState, c: Channel | None, now: datetime) -> RolloutState:
            if s.status == "running" and s.history[-1].action == "start":
                return s  # already started (a re-run after a crash or a lost reply)
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

        def step(s: RolloutState, c: Channel | None, now: datetime) -> RolloutState:
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
        def step(s: RolloutState, c: Channel | None, now: datetime) -> RolloutState:
            if s.status == "paused":
                return s
            self._guard(s, ("running",), "pause")
            return s.record(
                now, actor, "pause", "paused", reason or "paused; canary keeps its share"
            )

        return self._apply(cohort, step)

    def resume(self, cohort: str, *, actor: str, reason: str = "") -> RolloutState:
        def step(s: RolloutState, c: Channel | None, now: datetime) -> RolloutState:
            if s.status == "running" and s.history[-1].action == "resume":
                return s
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
        """Repoint the cohort to the stable it had before this rollout, at once. From any state
        that still sends devices to the candidate; on a rollout already rolled back it repairs a
        channel that disagrees (and otherwise changes nothing), so it can always be re-run."""

        def step(s: RolloutState, c: Channel | None, now: datetime) -> RolloutState:
            if s.status == "rolled_back":
                return s
            self._guard(s, ("planned", "running", "paused", "completed"), "roll back")
            if s.status == "completed" and s.previous_stable is None:
                raise RolloutError(
                    f"cannot roll back on {cohort}: {s.stable_version or 'its stable'} was its first "
                    "stable; there is nothing earlier to return to"
                )
            return s.record(now, actor, "rollback", "rolled_back", reason or "rolled back by hand")

        return self._apply(cohort, step)

    def history(self, cohort: str) -> list[dict[str, Any]]:
        from dataclasses import asdict

        return [asdict(t) for t in self.state(cohort).history]

    def _named(self, ref: BundleRef | None, s: RolloutState) -> dict[str, str] | None:
        """A channel's bundle ref with the registered model it was made from."""
        if ref is None:
            return None
        p = s.plan
        if p is not None and p.candidate.bundle_id == ref.bundle_id:
            named: RegisteredVersion | None = s.candidate_version
        else:
            named = self.registered_of(ref, s)
        return {**ref.to_dict(), "registered_model": named.registered_model if named else "?"}

    def cohorts(self) -> list[dict[str, Any]]:
        """Each cohort with what its signed channel names (stable and candidate by registered
        model, version, target and bundle) and its rollout status."""
        rows = []
        txn = self.repo.begin()
        delegated = set(self.repo.cohorts(txn))
        for name, c in sorted(self.catalog.cohorts.items()):
            m = read_channel(txn, name) if name in delegated else None
            s = read_state(txn, name) if name in delegated else RolloutState(name)
            expires = (
                txn.targets(cohort_role(name)).signed.expires.isoformat() if name in delegated else None
            )
            rows.append(
                {
                    "cohort": name,
                    "profile": c.profile,
                    "targets": list(self.catalog.profiles[c.profile].targets),
                    "encrypt": c.encrypt,
                    "stable": self._named(m.stable, s) if m else None,
                    "candidate": self._named(m.candidate, s) if m else None,
                    "percentage": m.percentage if m else 0.0,
                    "channel_revision": m.revision if m else None,
                    "channel_expires_at": expires,
                    "rollout": s.status,
                }
            )
        return rows

    def candidates(self, cohort: str, limit: int = 50) -> list[dict[str, Any]]:
        """Registry versions `plan` would accept for the cohort, newest first: blessed and
        releasable, of a target the cohort's profile runs (and, where the release recorded for
        which profiles it is blessed, blessed for this one), with their recorded evidence and
        where they already run on this cohort."""
        self._cohort(cohort)
        if self.client is None:
            raise RolloutError("listing candidates needs the MLflow registry (no client given)")
        from mlflow.exceptions import MlflowException

        from registry.mlflow_models import cohort_alias

        profile = self.catalog.profile_for(cohort)
        try:
            versions = self.client.search_model_versions("tags.releasable = 'true'", max_results=10_000)
        except MlflowException as exc:
            raise RolloutError(f"reading the registry failed: {exc.message}") from exc
        state = self.state(cohort)
        stable, cand = state.stable_version, state.candidate_version
        aliases: dict[str, dict[str, Any]] = {}
        rows = []
        for mv in sorted(versions, key=lambda v: -int(v.creation_timestamp or 0)):
            tags = dict(mv.tags)
            target = tags.get("target", "")
            blessed_for = [p for p in tags.get("blessed_for", "").split(",") if p and p != "none"]
            if tags.get("blessed") != "true" or not profile.allows(target):
                continue
            if "blessed_for" in tags and profile.name not in blessed_for:
                continue
            if mv.name not in aliases:
                aliases[mv.name] = dict(self.client.get_registered_model(mv.name).aliases or {})
            here = [role for role in ("stable", "canary")
                    if str(aliases[mv.name].get(cohort_alias(cohort, role), "")) == str(mv.version)]
            if stable and (stable.registered_model, stable.version) == (mv.name, str(mv.version)):
                here = sorted({*here, "stable"})
            if (cand and state.status in ACTIVE
                    and (cand.registered_model, cand.version) == (mv.name, str(mv.version))):
                here.append(f"candidate ({state.status})")
            rows.append({
                "registered_model": mv.name,
                "version": str(mv.version),
                "target": target,
                "blessed_for": blessed_for,
                "accuracy": tags.get("accuracy_ci") or tags.get("accuracy"),
                "data_version": tags.get("data_version"),
                "bundle": (tags.get("bundle_id") or "")[:12] or None,
                "on_cohort": ", ".join(dict.fromkeys(here)) or None,
            })
            if len(rows) >= limit:
                break
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
    txn = manager.repo.begin()
    delegated = set(manager.repo.cohorts(txn))
    return [
        s
        for c in sorted(manager.catalog.cohorts)
        if c in delegated and (s := read_state(txn, c)).status in statuses
    ]

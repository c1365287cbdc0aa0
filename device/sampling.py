"""What a device keeps of its inferences: a sampling rate, a bounded reservoir, a daily byte budget.

Practitioners' rule for edge telemetry: sample a few frames rather than every one, bound the
buffer, mind bandwidth and connectivity. The reservoir holds a uniform sample of everything
sampled since the last upload, whatever the offline stretch, in bounded memory; what it
drops is counted (sampled out by design), never silently lost. Events (refusals, swaps,
errors) are rare and matter more: they bypass the reservoir.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, Literal, TypeVar

import numpy as np

T = TypeVar("T")
_ONE = np.zeros(1, dtype=np.int64)
_NONE = np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class SamplingPolicy:
    sample_rate: float = 0.5  # share of inferences offered to the reservoir
    buffer_size: int = 256  # reservoir capacity (records)
    daily_upload_bytes: int = 2_000_000  # per device per UTC day
    batch_records: int = 256  # most records in one uploaded batch
    max_events: int = 1024  # events kept while offline (oldest dropped beyond, counted)
    # Privacy: which sampled inferences may carry a downscaled thumbnail of the input.
    # "labelled" (default): only those a user labelled (they are what a retrain learns from);
    # "all": every sampled one (a cohort that opts in, devices.yaml `thumbnails: all`);
    # "none": never. Features and outputs are sent either way.
    thumbnails: Literal["labelled", "all", "none"] = "labelled"

    def __post_init__(self) -> None:
        if not 0 < self.sample_rate <= 1:
            raise ValueError(f"sample_rate must be in (0, 1], got {self.sample_rate}")
        if self.buffer_size < 1 or self.batch_records < 1 or self.daily_upload_bytes < 1:
            raise ValueError("buffer_size, batch_records and daily_upload_bytes must be >= 1")
        if self.thumbnails not in ("labelled", "all", "none"):
            raise ValueError(f"thumbnails must be labelled, all or none, got {self.thumbnails!r}")

    def sends_thumbnail(self, labelled: bool) -> bool:
        return self.thumbnails == "all" or (self.thumbnails == "labelled" and labelled)


class Reservoir(Generic[T]):
    """Algorithm R: after n offers, each offered item is held with probability capacity/n.

    Priority items (labelled records: a user's correction is the scarcest telemetry there is)
    are never evicted by ordinary ones: they take the room of an ordinary item, go first when
    the buffer is drained, and only compete among themselves (Algorithm R again) once the whole
    buffer is labelled.
    """

    def __init__(self, capacity: int, rng: np.random.Generator) -> None:
        self.capacity = capacity
        self._rng = rng
        self._coin = random.Random(int(rng.integers(0, 2**63)))  # per offer: stdlib is faster
        self._items: list[T] = []
        self._priority: list[T] = []
        self._seen = 0
        self._seen_priority = 0
        self.evicted = 0  # items offered since the last drain that were not kept

    def offer(self, item: T, priority: bool = False) -> None:
        if priority:
            self._offer_priority(item)
            return
        self._seen += 1
        room = self.capacity - len(self._priority)
        if len(self._items) < room:
            self._items.append(item)
            return
        j = self._coin.randrange(self._seen)
        if j < room:
            self._items[j] = item
        self.evicted += 1

    def _offer_priority(self, item: T) -> None:
        self._seen_priority += 1
        if len(self._items) + len(self._priority) < self.capacity:
            self._priority.append(item)
        elif self._items:  # an ordinary item makes room
            self._items.pop(self._coin.randrange(len(self._items)))
            self._priority.append(item)
            self.evicted += 1
        else:
            j = self._coin.randrange(self._seen_priority)
            if j < self.capacity:
                self._priority[j] = item
            self.evicted += 1

    def promote(self, match: Callable[[T], bool], update: Callable[[T], T]) -> bool:
        """Replace the first held item that `match`es by `update(item)`, as a priority item
        (a label that arrived while its inference still waits here). False when none matches."""
        for i, item in enumerate(self._priority):
            if match(item):
                self._priority[i] = update(item)
                return True
        for i, item in enumerate(self._items):
            if match(item):
                self._priority.append(update(self._items.pop(i)))
                return True
        return False

    def drain(self, limit: int | None = None) -> list[T]:
        """Take up to `limit` items: priority first, then a uniform subset; the rest stay."""
        if limit is None or limit >= len(self):
            taken = self._priority + self._items
            self._items, self._priority = [], []
            self._seen = self._seen_priority = 0
            return taken
        first = self._priority[:limit]
        self._priority = self._priority[limit:]
        self._seen_priority = len(self._priority)
        limit -= len(first)
        if limit == 0:
            return first
        pick = np.sort(self._rng.choice(len(self._items), size=limit, replace=False))
        keep = np.ones(len(self._items), dtype=bool)
        keep[pick] = False
        taken = [self._items[i] for i in pick]
        self._items = [self._items[i] for i in np.flatnonzero(keep)]
        self._seen = len(self._items)
        return first + taken

    def __len__(self) -> int:
        return len(self._items) + len(self._priority)


class Sampler:
    """The per-inference coin: which inferences are offered to the reservoir at all."""

    def __init__(self, rate: float, rng: np.random.Generator) -> None:
        self.rate = rate
        self._rng = rng
        self._coin = random.Random(int(rng.integers(0, 2**63)))

    def pick(self, n: int) -> np.ndarray:
        """Indices of the inferences (out of a batch of n) to sample."""
        if self.rate >= 1:
            return np.arange(n)
        if n == 1:  # one frame at a time on a device: a stdlib coin costs far less than numpy's
            return _ONE if self._coin.random() < self.rate else _NONE
        if n < 32:
            return np.array(
                [i for i in range(n) if self._coin.random() < self.rate], dtype=np.int64
            )
        return np.flatnonzero(self._rng.random(n) < self.rate)


class DailyBudget:
    """Bytes a device may upload per UTC day of its own clock (simulated or real)."""

    def __init__(self, daily_bytes: int) -> None:
        self.daily_bytes = daily_bytes
        self._day: str | None = None
        self.used = 0
        self.total_used = 0
        self.days: set[str] = set()

    def _roll(self, now: datetime) -> None:
        day = now.date().isoformat()
        if day != self._day:
            self._day, self.used = day, 0
            self.days.add(day)

    def to_state(self) -> dict[str, object]:
        return {"day": self._day, "used": self.used}

    def restore(self, state: dict[str, object] | None) -> None:
        """Carry the day's usage across agent restarts (state.json)."""
        if state and state.get("day"):
            self._day, self.used = str(state["day"]), int(state.get("used", 0))  # type: ignore[call-overload]
            self.days.add(self._day)

    def remaining(self, now: datetime) -> int:
        self._roll(now)
        return max(0, self.daily_bytes - self.used)

    def allows(self, nbytes: int, now: datetime) -> bool:
        return nbytes <= self.remaining(now)

    def spend(self, nbytes: int, now: datetime) -> None:
        self._roll(now)
        self.used += nbytes
        self.total_used += nbytes


class EventBuffer(Generic[T]):
    """Bounded FIFO for events; beyond capacity the oldest go (counted in `dropped`)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: list[T] = []
        self.dropped = 0

    def add(self, item: T) -> None:
        self._items.append(item)
        if len(self._items) > self.capacity:
            self._items.pop(0)
            self.dropped += 1

    def drain(self) -> list[T]:
        taken, self._items = self._items, []
        return taken

    def __len__(self) -> int:
        return len(self._items)

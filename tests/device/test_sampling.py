from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from device.sampling import DailyBudget, EventBuffer, Reservoir, Sampler, SamplingPolicy


def test_reservoir_is_bounded_and_uniform():
    counts = np.zeros(100)
    for seed in range(400):
        r: Reservoir[int] = Reservoir(10, np.random.default_rng(seed))
        for i in range(100):
            r.offer(i)
        assert len(r) == 10 and r.evicted == 90
        counts[r.drain()] += 1
    # each item kept with probability 0.1: 40 expected per item
    assert counts[:50].sum() == pytest.approx(counts[50:].sum(), rel=0.15)
    assert counts.min() > 15


def test_partial_drain_keeps_the_rest():
    r: Reservoir[int] = Reservoir(8, np.random.default_rng(0))
    for i in range(8):
        r.offer(i)
    taken = r.drain(limit=3)
    assert len(taken) == 3 and len(r) == 5
    assert sorted(taken + r.drain()) == list(range(8))


def test_sampler_rate():
    s = Sampler(0.25, np.random.default_rng(0))
    assert len(s.pick(20_000)) / 20_000 == pytest.approx(0.25, abs=0.02)
    assert sum(len(s.pick(1)) for _ in range(20_000)) / 20_000 == pytest.approx(0.25, abs=0.02)
    assert list(Sampler(1.0, np.random.default_rng(0)).pick(5)) == [0, 1, 2, 3, 4]


def test_daily_budget_rolls_over_at_midnight():
    b = DailyBudget(1000)
    t = datetime(2026, 1, 1, 23, tzinfo=UTC)
    assert b.allows(1000, t) and not b.allows(1001, t)
    b.spend(800, t)
    assert not b.allows(300, t)
    assert b.allows(300, t + timedelta(hours=2))
    assert b.total_used == 800 and len(b.days) == 2


def test_event_buffer_and_policy_checks():
    e: EventBuffer[int] = EventBuffer(2)
    for i in range(3):
        e.add(i)
    assert e.drain() == [1, 2] and e.dropped == 1
    with pytest.raises(ValueError):
        SamplingPolicy(sample_rate=0)


def test_labelled_records_survive_a_full_buffer_and_go_first() -> None:
    r: Reservoir[int] = Reservoir(10, np.random.default_rng(0))
    for i in range(500):
        r.offer(i, priority=i % 50 == 0)  # 10 labelled among 500
    assert len(r) == 10 and r.evicted == 490
    assert r.drain(4) == [0, 50, 100, 150]  # labelled first, in arrival order
    assert sorted(r.drain()) == [200, 250, 300, 350, 400, 450]
    for i in range(30):
        r.offer(i, priority=True)  # only labelled: they compete among themselves
    assert len(r) == 10


def test_thumbnails_leave_only_with_labels_unless_the_cohort_opts_in() -> None:
    default = SamplingPolicy()
    assert default.sends_thumbnail(labelled=True) and not default.sends_thumbnail(labelled=False)
    assert SamplingPolicy(thumbnails="all").sends_thumbnail(labelled=False)
    assert not SamplingPolicy(thumbnails="none").sends_thumbnail(labelled=True)


def test_promote_labels_a_waiting_item_and_keeps_it_first() -> None:
    res: Reservoir[tuple[int, int | None]] = Reservoir(4, np.random.default_rng(0))
    for i in range(4):
        res.offer((i, None))
    assert res.promote(lambda it: it[0] == 2, lambda it: (it[0], 9))
    assert not res.promote(lambda it: it[0] == 99, lambda it: it)
    for i in range(4, 40):  # ordinary offers never evict the promoted item
        res.offer((i, None))
    assert res.drain(1) == [(2, 9)]

"""The adaptive in-flight limit (Gradient2 with a probed floor) against a model cluster.

The clock is fake and the cluster a formula: it serves ``capacity`` writes at
once in ``base_s`` each, and queues the rest, so a write's latency is
``base_s * max(1, in_flight / capacity)`` (Little's law at saturation).
"""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

from killrvideo_reco.config import Settings
from killrvideo_reco.storage._limiter import FixedLimit, Gradient2Limit, InFlightLimiter
from killrvideo_reco.storage._writer import limit_policy


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Cluster:
    def __init__(self, limit: Gradient2Limit, clock: Clock, *, base_s: float, capacity: int):
        self.limit, self.clock = limit, clock
        self.base_s, self.capacity = base_s, capacity
        self.down = False

    def latency(self, in_flight: int) -> float:
        return self.base_s * max(1.0, in_flight / self.capacity)

    def run(self, seconds: float, *, offered: int | None = None) -> list[int]:
        """Clients keep ``offered`` writes (default: as many as allowed) in flight."""
        seen = []
        end = self.clock.now + seconds
        while self.clock.now < end:
            in_flight = min(self.limit.limit, offered if offered is not None else 10**9)
            rtt = self.latency(in_flight)
            for _ in range(in_flight):
                if self.down:
                    self.limit.dropped()
                else:
                    self.limit.sample(rtt, in_flight)
            self.clock.now += 0.001 if self.down else rtt
            seen.append(self.limit.limit)
        return seen


def adaptive(clock: Clock, **kwargs: object) -> Gradient2Limit:
    options: dict[str, object] = {"initial": 4, "minimum": 2, "maximum": 64, **kwargs}
    return Gradient2Limit(clock=clock, **options)  # type: ignore[arg-type]


def test_under_overload_the_limit_settles_above_capacity_with_a_short_queue() -> None:
    clock = Clock()
    limit = adaptive(clock)
    cluster = Cluster(limit, clock, base_s=0.010, capacity=8)
    cluster.run(20)
    settled = cluster.run(60)  # two floor probes happen in here
    steady = [x for x in settled if x > limit.minimum]  # not the probes' moments
    # The cluster kept busy (more than `capacity`), the queue short (not the ceiling).
    assert min(steady) >= 8 and max(steady) <= 24, (min(steady), max(steady))
    assert limit.floor_s == pytest.approx(0.010)
    assert cluster.latency(limit.limit) <= 2.5 * limit.floor_s


def test_the_limit_climbs_to_the_ceiling_while_latency_stays_at_the_floor() -> None:
    clock = Clock()
    limit = adaptive(clock, maximum=40)
    cluster = Cluster(limit, clock, base_s=0.010, capacity=1000)
    seen = cluster.run(30)
    assert seen[0] == 4 and limit.limit == 40
    climbing = [x for x in seen if x > limit.minimum]  # the floor probes aside
    assert climbing == sorted(climbing)


def test_it_does_not_grow_when_the_load_does_not_use_it() -> None:
    clock = Clock()
    limit = adaptive(clock, initial=16)
    Cluster(limit, clock, base_s=0.010, capacity=1000).run(10, offered=3)
    assert limit.limit == 16


def test_a_failing_cluster_drives_it_to_the_minimum_and_it_recovers_without_a_restart() -> None:
    clock = Clock()
    limit = adaptive(clock)
    cluster = Cluster(limit, clock, base_s=0.010, capacity=8)
    cluster.run(20)
    before = limit.limit
    assert before >= 8
    cluster.down = True  # every write fails fast: NoHostAvailable, timeouts
    cluster.run(2)
    assert limit.limit == limit.minimum
    cluster.down = False
    cluster.run(30)
    assert limit.limit >= 8 and abs(limit.limit - before) <= 4


def test_a_cluster_slower_for_good_is_learnt_at_the_next_probe() -> None:
    clock = Clock()
    limit = adaptive(clock, probe_interval_s=10)
    cluster = Cluster(limit, clock, base_s=0.010, capacity=8)
    cluster.run(20)
    assert limit.floor_s == pytest.approx(0.010)
    cluster.base_s = 0.030  # a bigger index: every write slower, the same capacity
    cluster.run(30)
    assert limit.floor_s == pytest.approx(0.030)
    assert 8 <= limit.limit <= 24  # not shrunk to the minimum by the old floor


def test_a_window_closes_on_time_when_few_writes_arrive() -> None:
    clock = Clock()
    limit = adaptive(clock)
    for _ in range(3):
        limit.sample(0.020, 4)
    assert limit.short_s is None  # 3 of 10 samples, within 1 s: no update yet
    clock.now += 1.5
    limit.sample(0.020, 4)
    assert limit.short_s == pytest.approx(0.020) and limit.floor_s == pytest.approx(0.020)


def test_floor_and_ceiling_bound_it() -> None:
    clock = Clock()
    assert adaptive(clock, initial=1).limit == 2
    assert adaptive(clock, initial=500).limit == 64
    with pytest.raises(ValueError, match="minimum"):
        adaptive(clock, minimum=10, maximum=5)


def test_a_growing_limit_wakes_waiters_and_a_falling_one_takes_slots_back() -> None:
    async def main() -> None:
        clock = Clock()
        policy = adaptive(clock, initial=2, minimum=1, maximum=8, window_samples=1)
        policy.floor_s = 0.010
        limiter = InFlightLimiter(limit=policy, timeout_s=60)
        release = asyncio.Event()
        entered: list[int] = []

        async def hold(i: int) -> None:
            async with limiter:
                entered.append(i)
                await release.wait()

        tasks = [asyncio.create_task(hold(i)) for i in range(4)]
        for _ in range(5):
            await asyncio.sleep(0)
        assert (limiter.in_use, limiter.waiting) == (2, 2)
        for _ in range(10):  # at the floor, both slots used: the limit grows to 3
            limiter.sample(0.010)
            if policy.limit == 3:
                break
        assert policy.limit == 3
        await asyncio.sleep(0)
        assert (limiter.in_use, limiter.waiting) == (3, 1) and entered[-1] == 3  # newest first
        for _ in range(20):  # the cluster fails: x 0.9 per window, down to the minimum
            limiter.dropped()
        assert policy.limit == 1
        release.set()
        await asyncio.gather(*tasks)
        # Each release gave its slot up until only the limit's worth was in use,
        # then passed it on: all four ran, never more than allowed at once after.
        assert sorted(entered) == [0, 1, 2, 3] and limiter.in_use == 0

    asyncio.run(main())


def test_settings_choose_the_mode_and_check_floor_against_ceiling() -> None:
    assert isinstance(limit_policy(Settings(limit_mode="fixed", max_in_flight=6)), FixedLimit)
    policy = limit_policy(
        Settings(limit_mode="ADAPTIVE", adaptive_min_in_flight=3, adaptive_max_in_flight=9)
    )
    assert isinstance(policy, Gradient2Limit) and (policy.minimum, policy.maximum) == (3, 9)
    with pytest.raises(ValidationError, match="KV_ADAPTIVE_MIN_IN_FLIGHT"):
        Settings(adaptive_min_in_flight=10, adaptive_max_in_flight=5)
    with pytest.raises(ValidationError):
        Settings(limit_mode="vegas")

"""The in-flight bound: a short wait, then a refusal; freed slots go to the newest waiter."""

from __future__ import annotations

import asyncio

import pytest

from killrvideo_reco.errors import StorageUnavailable
from killrvideo_reco.storage._limiter import InFlightLimiter


async def hold(
    limiter: InFlightLimiter, started: list[str], name: str, release: asyncio.Event
) -> None:
    async with limiter:
        started.append(name)
        await release.wait()


def test_a_waiter_beyond_the_bound_waits_then_is_refused() -> None:
    async def main() -> None:
        limiter = InFlightLimiter(limit=1, timeout_s=0.05)
        async with limiter:
            waiter = asyncio.create_task(hold(limiter, [], "b", asyncio.Event()))
            for _ in range(3):
                await asyncio.sleep(0)
            # Queued, not refused at once: the refusal waits for the timer.
            assert not waiter.done() and limiter.waiting == 1
            with pytest.raises(StorageUnavailable) as refused:
                await waiter
            assert refused.value.kind == "Overloaded"
            assert "none finished within 50 ms" in refused.value.message
            assert limiter.waiting == 0
        async with asyncio.timeout(1):
            async with limiter:  # the slot came back
                pass

    asyncio.run(main())


def test_a_waiter_gets_a_slot_freed_before_its_timeout() -> None:
    async def main() -> list[str]:
        limiter = InFlightLimiter(limit=1, timeout_s=60)
        started: list[str] = []
        gate = asyncio.Event()
        first = asyncio.create_task(hold(limiter, started, "a", gate))
        await asyncio.sleep(0)
        second = asyncio.create_task(hold(limiter, started, "b", asyncio.Event()))
        await asyncio.sleep(0)
        assert limiter.waiting == 1
        gate.set()
        await first
        async with asyncio.timeout(1):  # far sooner than the 60 s timeout
            while not started[1:]:
                await asyncio.sleep(0)
        second.cancel()
        return started

    assert asyncio.run(main()) == ["a", "b"]


def test_zero_timeout_refuses_at_once() -> None:
    async def main() -> None:
        limiter = InFlightLimiter(limit=1, timeout_s=0)
        async with limiter:
            with pytest.raises(StorageUnavailable):
                async with limiter:
                    pass

    asyncio.run(main())


def test_a_freed_slot_goes_to_the_newest_waiter() -> None:
    async def main() -> list[str]:
        limiter = InFlightLimiter(limit=1, timeout_s=5)
        started: list[str] = []
        gates = {name: asyncio.Event() for name in "abcd"}
        tasks = []
        for name in "abcd":
            tasks.append(asyncio.create_task(hold(limiter, started, name, gates[name])))
            await asyncio.sleep(0)
        assert started == ["a"] and limiter.waiting == 3
        for count, name in enumerate("adcb", 2):  # each holder in turn lets go
            gates[name].set()
            async with asyncio.timeout(1):  # until the next one starts
                while len(started) < min(count, 4):
                    await asyncio.sleep(0)
        await asyncio.gather(*tasks)
        return started

    assert asyncio.run(main()) == ["a", "d", "c", "b"]


def test_a_waiter_cancelled_while_queued_takes_no_slot() -> None:
    async def main() -> None:
        limiter = InFlightLimiter(limit=1, timeout_s=5)
        async with limiter:
            waiter = asyncio.create_task(hold(limiter, [], "b", asyncio.Event()))
            await asyncio.sleep(0)
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
            assert limiter.waiting == 0
        async with asyncio.timeout(1):
            async with limiter:  # the one slot is free again
                pass

    asyncio.run(main())


def test_a_slot_handed_to_a_task_cancelled_before_it_resumed_is_passed_on() -> None:
    async def main() -> None:
        limiter = InFlightLimiter(limit=1, timeout_s=5)
        await limiter.__aenter__()
        started: list[str] = []
        late = asyncio.create_task(hold(limiter, started, "late", asyncio.Event()))
        await asyncio.sleep(0)
        assert limiter.waiting == 1
        await limiter.__aexit__(None, None, None)  # handed to `late`, not resumed yet
        late.cancel()
        with pytest.raises(asyncio.CancelledError):
            await late
        assert started == []
        async with asyncio.timeout(1):
            async with limiter:  # not leaked
                pass

    asyncio.run(main())

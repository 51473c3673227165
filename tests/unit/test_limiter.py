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


def test_a_waiter_beyond_the_bound_is_refused_after_the_timeout() -> None:
    async def main() -> float:
        limiter = InFlightLimiter(limit=1, timeout_s=0.05)
        loop = asyncio.get_running_loop()
        async with limiter:
            t0 = loop.time()
            with pytest.raises(StorageUnavailable) as refused:
                async with limiter:
                    pass
            waited = loop.time() - t0
            assert refused.value.kind == "Overloaded"
            assert limiter.waiting == 0
        async with limiter:  # the slot came back
            pass
        return waited

    assert 0.04 <= asyncio.run(main()) < 0.5


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
        for name in "adcb":  # each holder in turn lets go
            gates[name].set()
            await asyncio.sleep(0.01)
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

"""A bound on writes in flight, with a short wait and then a fast refusal.

Past saturation, an unbounded service queues requests until clients time out
and every latency grows with the queue. Here a request waits at most
``timeout_s`` for a slot, then gets StorageUnavailable (503 with Retry-After),
so the accepted requests keep the latency of a saturated but not overloaded
database.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

from ..errors import StorageUnavailable


class InFlightLimiter:
    def __init__(self, *, limit: int, timeout_s: float) -> None:
        self.limit = limit
        self._timeout_s = timeout_s
        self._slots = asyncio.Semaphore(limit)
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __aenter__(self) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # A semaphore belongs to the loop it first waited on; a store reused
            # from another loop (CLI, tests) starts afresh.
            self._loop, self._slots = loop, asyncio.Semaphore(self.limit)
        if not self._slots.locked():  # the common case: no task, no timer
            await self._slots.acquire()
            return
        try:
            await asyncio.wait_for(self._slots.acquire(), self._timeout_s)
        except TimeoutError:
            raise StorageUnavailable(
                f"{self.limit} writes are already in flight to Cassandra and none "
                f"finished within {self._timeout_s * 1000:.0f} ms; retry later",
                kind="Overloaded",
            ) from None

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._slots.release()

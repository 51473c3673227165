"""A bound on writes in flight, with a short wait and then a fast refusal.

Past saturation, an unbounded service queues requests until clients time out
and every latency grows with the queue. Here a request waits at most
``timeout_s`` for a slot, then gets StorageUnavailable (503 with Retry-After),
so the accepted requests keep the latency of a saturated but not overloaded
database.

A freed slot goes to the newest waiter. Under sustained overload the queue is
never empty, so first-come-first-served would make nearly every accepted
request wait the whole timeout before it even starts; newest-first lets the
accepted ones start at once while the oldest run out their wait and are
refused. Below saturation the queue is short and the order makes no difference.
(`make bench`'s overload run: docs/operating.md, "Overload".)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from types import TracebackType

from ..errors import StorageUnavailable
from ._futures import expire


def _ignore(seconds: float) -> None:
    pass


class InFlightLimiter:
    def __init__(
        self, *, limit: int, timeout_s: float, on_wait: Callable[[float], None] = _ignore
    ) -> None:
        """``on_wait(seconds)`` hears how long each entry waited for its slot (0.0: none)."""
        self.limit = limit
        self._timeout_s = timeout_s
        self.on_wait = on_wait
        self._free = limit
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    @property
    def in_use(self) -> int:
        return self.limit - self._free

    async def __aenter__(self) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # Futures belong to one loop; a store reused from another loop (CLI,
            # tests) starts afresh.
            self._loop, self._free, self._waiters = loop, self.limit, deque()
        if self._free > 0:  # the common case: no future, no timer
            self._free -= 1
            self.on_wait(0.0)
            return
        if self._timeout_s > 0:
            slot = loop.create_future()
            self._waiters.append(slot)
            queued = loop.time()
            timer = loop.call_later(self._timeout_s, expire, slot)
            try:
                await slot
                self.on_wait(loop.time() - queued)
                return
            except TimeoutError:
                _discard(self._waiters, slot)
            except BaseException:
                # Cancelled (the client went away) after a slot was handed over
                # but before this task resumed: pass the slot on.
                if slot.done() and not slot.cancelled() and slot.exception() is None:
                    self._release()
                _discard(self._waiters, slot)
                raise
            finally:
                timer.cancel()
        raise StorageUnavailable(
            f"{self.limit} writes are already in flight to Cassandra and none "
            f"finished within {self._timeout_s * 1000:.0f} ms; retry later",
            kind="Overloaded",
        )

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._release()

    def _release(self) -> None:
        while self._waiters:
            slot = self._waiters.pop()  # the newest waiter
            if not slot.done():
                slot.set_result(None)
                return
        self._free += 1


def _discard(waiters: deque[asyncio.Future[None]], slot: asyncio.Future[None]) -> None:
    with contextlib.suppress(ValueError):  # a release may have popped it already
        waiters.remove(slot)

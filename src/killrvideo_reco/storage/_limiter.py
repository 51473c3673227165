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

The bound is fixed (``FixedLimit``, KV_LIMIT_MODE=fixed) or follows the write
latency (``Gradient2Limit``, KV_LIMIT_MODE=adaptive): see docs/load-and-limits.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Protocol

from ..errors import StorageUnavailable
from ._futures import expire


def _ignore(seconds: float) -> None:
    pass


class Limit(Protocol):
    """How many writes may be in flight, learnt from what the writes report."""

    limit: int
    adaptive: bool

    def sample(self, rtt_s: float, in_flight: int) -> None:
        """A write that held a slot finished in ``rtt_s``; ``in_flight`` held one with it."""

    def dropped(self) -> None:
        """A write failed for the cluster's sake (timeout, unavailable, no host)."""


class FixedLimit:
    """KV_MAX_IN_FLIGHT, whatever the latency."""

    adaptive = False

    def __init__(self, limit: int) -> None:
        self.limit = limit

    def sample(self, rtt_s: float, in_flight: int) -> None:
        pass

    def dropped(self) -> None:
        pass


class Gradient2Limit:
    """A latency-gradient limit in the Gradient2 / Vegas family (Netflix concurrency-limits).

    Each window (``window_samples`` writes, or ``window_s`` if fewer arrive)
    yields a short latency: the window's mean. The floor is the lowest short
    latency seen, the cluster's latency without a queue of ours. Then, as
    Gradient2 does::

        gradient = clamp(tolerance * floor / short, 0.5, 1.0)
        target   = limit * gradient + sqrt(limit)      # room to probe upwards
        limit    = limit * (1 - smoothing) + target * smoothing

    so the limit climbs by about ``smoothing * sqrt(limit)`` per window while the
    latency stays within ``tolerance`` of the floor, and falls once a queue forms
    (a longer latency at the same throughput). It settles where the latency is
    about ``tolerance / (1 - 1/sqrt(limit))`` times the floor. It does not grow
    while less than half of it is used (the load, not the cluster, is the bound).

    Gradient2's own floor, a long average of the latency, follows a sustained
    overload up, and the limit with it, to the ceiling (a simulation of a
    saturated cluster did exactly that). So the floor is a minimum instead, and
    it is measured afresh every ``probe_interval_s``, as Envoy's adaptive
    concurrency filter does: the limit drops to ``minimum`` until the writes
    already in flight have drained, one window at that concurrency gives the new
    floor, and the limit goes back where it was. A cluster that became slower
    for good (a bigger index) is learnt within one interval.

    A window in which a write failed for the cluster's sake (timeout,
    unavailable) multiplies the limit by ``backoff`` instead, and the failed
    write's latency is not a sample: a node that refuses at once must not look
    fast. When the cluster answers again, the latency is back near the floor and
    the limit climbs again, without a restart.
    """

    adaptive = True

    def __init__(
        self,
        *,
        initial: int,
        minimum: int,
        maximum: int,
        clock: Callable[[], float] = time.monotonic,
        window_samples: int = 10,
        window_s: float = 1.0,
        probe_interval_s: float = 30.0,
        tolerance: float = 1.5,
        smoothing: float = 0.2,
        backoff: float = 0.9,
    ) -> None:
        if not 1 <= minimum <= maximum:
            raise ValueError(f"need 1 <= minimum ({minimum}) <= maximum ({maximum})")
        self.minimum, self.maximum = minimum, maximum
        self._estimate = float(min(max(initial, minimum), maximum))
        self.limit = int(self._estimate)
        self._clock = clock
        self._window_samples = window_samples
        self._window_s = window_s
        self._probe_interval_s = probe_interval_s
        self._tolerance = tolerance
        self._smoothing = smoothing
        self._backoff = backoff
        self.floor_s: float | None = None  # the lowest window mean since the last probe
        self.short_s: float | None = None  # the last window's mean
        self.probing = False
        self._drained = False  # probing, and the writes from before it have finished
        now = clock()
        self._next_probe = now + probe_interval_s
        self._reset_window(now)

    def _reset_window(self, now: float) -> None:
        self._started = now
        self._count = 0
        self._sum = 0.0
        self._max_in_flight = 0
        self._drops = 0

    def sample(self, rtt_s: float, in_flight: int) -> None:
        if self.probing and not self._drained:
            if in_flight > self.minimum:
                return  # it queued behind the writes from before the probe
            self._drained = True
            self._reset_window(self._clock())
        self._count += 1
        self._sum += rtt_s
        if in_flight > self._max_in_flight:
            self._max_in_flight = in_flight
        self._maybe_update()

    def dropped(self) -> None:
        self._drops += 1
        self._maybe_update()

    def _maybe_update(self) -> None:
        now = self._clock()
        if (
            self._count + self._drops < self._window_samples
            and now - self._started < self._window_s
        ):
            return
        if self._drops:
            self._end_probe(None)
            self._set(self._estimate * self._backoff)
        elif self._count:
            short = self._sum / self._count
            self.short_s = short
            if self.probing:
                self._end_probe(short)
            else:
                self._update(short, self._max_in_flight)
        self._reset_window(now)
        if now >= self._next_probe and not self.probing and self.floor_s is not None:
            self.probing, self._drained = True, False
            self.limit = self.minimum

    def _end_probe(self, floor: float | None) -> None:
        if self.probing:
            self.probing = False
            if floor is not None:
                self.floor_s = floor
            self.limit = int(self._estimate)
            self._next_probe = self._clock() + self._probe_interval_s

    def _update(self, short: float, in_flight: int) -> None:
        if self.floor_s is None or short < self.floor_s:
            self.floor_s = short
        estimate = self._estimate
        if in_flight < estimate / 2:
            return  # not using what we have: no evidence that more would do
        gradient = max(0.5, min(1.0, self._tolerance * self.floor_s / short))
        target = estimate * gradient + math.sqrt(estimate)
        self._set(estimate * (1 - self._smoothing) + target * self._smoothing)

    def _set(self, estimate: float) -> None:
        self._estimate = min(max(estimate, float(self.minimum)), float(self.maximum))
        if not self.probing:
            self.limit = int(self._estimate)


class InFlightLimiter:
    def __init__(
        self,
        *,
        limit: int | Limit,
        timeout_s: float,
        on_wait: Callable[[float], None] = _ignore,
    ) -> None:
        """``on_wait(seconds)`` hears how long each entry waited for its slot (0.0: none).

        ``limit``: a fixed number, or a ``Limit`` that the writes' latencies
        adjust (``sample``, ``dropped``).
        """
        self.policy: Limit = FixedLimit(limit) if isinstance(limit, int) else limit
        self._timeout_s = timeout_s
        self.on_wait = on_wait
        self._in_use = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def limit(self) -> int:
        return self.policy.limit

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    @property
    def in_use(self) -> int:
        return self._in_use

    def sample(self, rtt_s: float) -> None:
        """A write holding a slot took ``rtt_s``: the adaptive limit learns from it."""
        policy = self.policy
        if policy.adaptive:
            before = policy.limit
            policy.sample(rtt_s, self._in_use)
            if policy.limit > before:
                self._hand_out()

    def dropped(self) -> None:
        """A write holding a slot failed for the cluster's sake."""
        self.policy.dropped()

    async def __aenter__(self) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # Futures belong to one loop; a store reused from another loop (CLI,
            # tests) starts afresh.
            self._loop, self._in_use, self._waiters = loop, 0, deque()
        if self._in_use < self.policy.limit:  # the common case: no future, no timer
            self._in_use += 1
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
        limit = self.policy.limit
        raise StorageUnavailable(
            f"{limit} writes are already in flight to Cassandra and none "
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
        # The slot passes straight to the newest waiter, unless the limit fell
        # below what is in use: then it is given up.
        if self._in_use <= self.policy.limit:
            while self._waiters:
                slot = self._waiters.pop()  # the newest waiter
                if not slot.done():
                    slot.set_result(None)
                    return
        self._in_use -= 1

    def _hand_out(self) -> None:
        """The limit grew: wake waiters into the new slots, newest first."""
        while self._waiters and self._in_use < self.policy.limit:
            slot = self._waiters.pop()
            if not slot.done():
                self._in_use += 1
                slot.set_result(None)


def _discard(waiters: deque[asyncio.Future[None]], slot: asyncio.Future[None]) -> None:
    with contextlib.suppress(ValueError):  # a release may have popped it already
        waiters.remove(slot)

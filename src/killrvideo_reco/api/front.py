"""The outermost layer of the app: request ids, one log line and metrics per request, draining.

Every HTTP request gets an id (the client's ``X-Request-ID`` when it is a sane
token, else a fresh one), echoed in the ``X-Request-ID`` response header, and
one log line on ``killrvideo_reco.access`` when it ends: id, method, route,
status, latency, and the videoId and refusal reason when the handler noted them
(``note(scope)``). Headers and bodies are never logged, so neither tokens nor
vectors can reach a log.

Levels say who must act: 2xx and 4xx are INFO (the client's business), a 503 or
a client that went away is WARNING, a 500 is ERROR (its traceback is logged
once, by the exception handler that answered it).

While the service drains (SIGTERM, see ``Drain``), a request that arrives is
answered 503 with ``Retry-After`` and ``Connection: close`` before any work.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import re
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

import msgspec
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .metrics import REQUEST_SECONDS, REQUESTS_IN_FLIGHT

access_log = logging.getLogger("killrvideo_reco.access")
log = logging.getLogger(__name__)

_NOTE = "kv_reco.note"
_SANE_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")
_ALWAYS_OPEN = frozenset({"/healthz", "/metrics"})  # observable while draining
_encode = msgspec.json.encode


@dataclass(slots=True)
class Note:
    """What a handler knows that the log line should say."""

    route: str | None = None
    video_id: str | None = None
    reason: str | None = None


def note(scope: Scope) -> Note:
    """The request's note; a scope from outside the app (a test) gets a throwaway one."""
    found = scope.get(_NOTE)
    if found is None:
        found = scope[_NOTE] = Note()
    return found


class Drain:
    """Set on SIGTERM, before uvicorn's own handler starts its graceful shutdown.

    uvicorn stops accepting and waits for in-flight requests
    (``timeout_graceful_shutdown``), but it notices the signal only on its next
    0.1 s tick: in between it would still start new work. Chaining its handler
    closes that window.
    """

    def __init__(self) -> None:
        self.draining = False
        self.in_flight = 0
        self._previous: Any = None

    def install(self) -> None:
        """Chain our handler before the current SIGTERM handler (uvicorn's); main thread only."""
        if threading.current_thread() is not threading.main_thread():
            return  # a test client's portal thread: no signals there
        self._previous = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, self._on_sigterm)

    def uninstall(self) -> None:
        if self._previous is not None and signal.getsignal(signal.SIGTERM) == self._on_sigterm:
            signal.signal(signal.SIGTERM, self._previous)
        self._previous = None

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        self.start()
        previous = self._previous
        if callable(previous):
            previous(signum, frame)
        elif previous in (signal.SIG_DFL, None):
            raise SystemExit(128 + signum)

    def start(self) -> None:
        if not self.draining:
            self.draining = True
            log.info("draining: %d requests in flight; new requests get 503", self.in_flight)


class _Answer:
    """The server's ``send``, adding our X-Request-ID and remembering the status sent."""

    __slots__ = ("_echo", "_send", "status")

    def __init__(self, send: Send, echo: tuple[bytes, bytes]) -> None:
        self._send = send
        self._echo = echo
        self.status = 0

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            message["headers"] = [*message.get("headers", ()), self._echo]
        await self._send(message)


class Front:
    def __init__(self, app: ASGIApp, *, drain: Drain, retry_after_s: int) -> None:
        self.app = app
        self.drain = drain
        self._retry_after = str(retry_after_s).encode()
        self._clock: Callable[[], float] = time.perf_counter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = self._clock()
        request_id = _request_id(scope["headers"])
        scope[_NOTE] = noted = Note()
        answer = _Answer(send, (b"x-request-id", request_id.encode()))
        drain = self.drain
        drain.in_flight += 1
        REQUESTS_IN_FLIGHT.inc()
        try:
            await self._serve(scope, receive, answer, noted)
        finally:
            drain.in_flight -= 1
            REQUESTS_IN_FLIGHT.dec()
            self._record(scope, noted, request_id, answer.status, self._clock() - started)

    async def _serve(self, scope: Scope, receive: Receive, answer: _Answer, noted: Note) -> None:
        """Run the app; what escapes it becomes an answer and a reason, a traceback at most once."""
        try:
            if self.drain.draining and scope["path"] not in _ALWAYS_OPEN:
                noted.reason = "the service is shutting down"
                await self._refuse(answer.send)
            else:
                await self.app(scope, receive, answer.send)
        except ClientDisconnect:
            noted.reason = "the client disconnected"
            answer.status = answer.status or 499
        except asyncio.CancelledError:
            if not self.drain.draining:
                raise
            # The server gave up on it: KV_SHUTDOWN_TIMEOUT_S ran out. Say so,
            # instead of a traceback and a 500 from the server.
            noted.reason = "still running when the shutdown timeout ran out"
            if answer.status == 0:
                await self._refuse(answer.send)
        except Exception:
            # The app's 500 handler answered it and logged the traceback, then
            # re-raised (Starlette's way); anything else is logged here, once.
            if answer.status != 500:
                log.exception("unexpected error on %s %s", scope["method"], scope["path"])
            if answer.status == 0:
                await _answer_500(answer.send)

    async def _refuse(self, send: Send) -> None:
        await _answer(
            send,
            503,
            "the service is shutting down; retry after Retry-After",
            (b"retry-after", self._retry_after),
            (b"connection", b"close"),
        )

    def _record(
        self, scope: Scope, noted: Note, request_id: str, status: int, seconds: float
    ) -> None:
        route_obj = scope.get("route")
        route = noted.route or getattr(route_obj, "path", None) or "(unmatched)"
        method = scope["method"]
        REQUEST_SECONDS.observe(route, method, status, seconds)
        if status == 0:  # the client went away before any answer
            status, noted.reason = 499, noted.reason or "the client disconnected"
        level = _level(status)
        if not access_log.isEnabledFor(level):
            return
        latency_ms = round(seconds * 1000, 2)
        fields = {
            "requestId": request_id,
            "method": method,
            "route": route,
            "status": status,
            "latencyMs": latency_ms,
            "videoId": noted.video_id,
            "reason": noted.reason,
        }
        # makeRecord + handle is Logger.log minus findCaller's stack walk, which
        # would only ever name this line: a third of the cost of a log line.
        record = access_log.makeRecord(
            access_log.name,
            level,
            __file__,
            0,
            "%s %s %d %.2fms",
            (method, route, status, latency_ms),
            None,
            extra={"fields": fields},
        )
        access_log.handle(record)


def _level(status: int) -> int:
    if status in (499, 503):  # the client left; Cassandra is slow or we are busy
        return logging.WARNING
    return logging.ERROR if status >= 500 else logging.INFO


# Our own ids: a random prefix per process and a counter, unique across workers
# and restarts without a getrandom(2) per request (a syscall that hands the GIL
# to the driver's thread under load).
_ID_PREFIX = os.urandom(8).hex()
_ids = itertools.count(int.from_bytes(os.urandom(3)))


def _request_id(headers: list[tuple[bytes, bytes]]) -> str:
    for name, value in headers:
        if name == b"x-request-id":
            if _SANE_ID.fullmatch(value):
                return value.decode()
            break  # not a token we would echo into a header and a log: make our own
    return f"{_ID_PREFIX}{next(_ids) & 0xFFFFFFFF:08x}"


async def _answer_500(send: Send) -> None:
    await _answer(send, 500, "internal error")


async def _answer(send: Send, status: int, message: str, *headers: tuple[bytes, bytes]) -> None:
    """An answer in the spec's failure shape, sent straight to the ASGI server."""
    body = _encode({"status": "failed", "message": message})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})

"""uvicorn's httptools protocol, with the limits a public HTTP server needs.

uvicorn closes idle keep-alive connections, and nothing else: a connection that
never finishes its headers, or its body, stays open for ever; request headers
have no size or count limit (httptools buffers an 8 MB header line whole); any
number of connections may be open; and the answer to a request it cannot parse
is plain text. This subclass adds, per connection:

- a deadline for the request headers, from the first byte of a request (or
  the connection's opening) to the end of its headers: 408, then close;
- a deadline for the body, from the end of the headers to its last byte: 408;
- a bound on the header section's bytes (431, or 414 for the URL alone) and on
  the number of header lines (431);
- a bound on open connections per process: the one over it gets 503 at once;
- the spec's JSON failure shape for every answer sent before the app runs;
- a lingering close: an answer that closes the connection before the request's
  body has all arrived (the drain's 503) half-closes, then reads
  and discards what the client still sends, up to ``LINGER_BYTES`` and
  ``LINGER_S``, as nginx's ``lingering_close`` does. Closing at once with
  unread bytes makes the kernel send a reset, and a client still writing its
  body gets ``BrokenPipeError`` instead of the answer.

Other servers were weighed: hypercorn (h11, pure Python) has these limits but
parses far slower than httptools, and granian's Rust front end lacks the
header and body deadlines. A small subclass keeps the parser that the hot
path's throughput was measured with (docs/endpoint.md, "Hostile input and slow clients").
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httptools
import msgspec
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from ..config import Settings, load_settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Limits:
    header_timeout_s: float
    body_timeout_s: float
    max_connections: int
    max_header_bytes: int
    max_headers: int

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(
            header_timeout_s=settings.header_timeout_s,
            body_timeout_s=settings.body_timeout_s,
            max_connections=settings.max_connections,
            max_header_bytes=settings.max_header_bytes,
            max_headers=settings.max_headers,
        )


# The lingering close's bounds: enough for the rest of a KV_MAX_BODY_BYTES body
# from a client on a fair link, small against a client that never stops.
LINGER_BYTES = 1024 * 1024
LINGER_S = 2.0


class _CycleTransport:
    """What uvicorn's request cycle sees as its transport: ``close`` may linger."""

    __slots__ = ("_protocol",)

    def __init__(self, protocol: GuardedHttpToolsProtocol) -> None:
        self._protocol = protocol

    def write(self, data: bytes) -> None:
        self._protocol.transport.write(data)

    def is_closing(self) -> bool:
        return self._protocol.lingering or self._protocol.transport.is_closing()

    def close(self) -> None:
        self._protocol.close_after_answer()


@functools.cache
def _process_limits() -> Limits:
    # Read once per worker process: uvicorn builds a protocol per connection.
    return Limits.of(load_settings())


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Throttle:
    """At most one log line a second for a flood (of refused connections, say)."""

    def __init__(self) -> None:
        self._last = 0.0
        self._skipped = 0

    def warning(self, message: str) -> None:
        now = time.monotonic()
        if now - self._last < 1.0:
            self._skipped += 1
            return
        skipped, self._skipped, self._last = self._skipped, 0, now
        log.warning("%s%s", message, f" ({skipped} more since the last report)" * bool(skipped))


_over_capacity = _Throttle()
_too_slow = _Throttle()
_malformed = _Throttle()


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        limits: Limits | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._limits = limits or _process_limits()
        self._deadline: asyncio.TimerHandle | None = None
        self._in_head = False  # a request has begun and its headers have not ended
        self._head_bytes = 0  # raw bytes received since it began (an upper bound)
        self._url_bytes = 0
        self._header_bytes = 0  # exact, from the parsed header lines
        self._header_count = 0
        self._body_pending = False  # a request's headers have ended and its body has not
        self.lingering = False
        self._linger_left = 0

    # -- connection -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        if len(self.connections) > self._limits.max_connections:
            _over_capacity.warning(
                f"refused a connection: {self._limits.max_connections} are open "
                "(KV_MAX_CONNECTIONS)"
            )
            self._answer(503, "too many open connections; retry later", retry_after=True)
            return
        # A connection that never sends a request is closed like a slow one.
        self._arm(self._limits.header_timeout_s, self._on_header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            self._linger_left -= len(data)
            if self._linger_left <= 0:
                self._stop_lingering()
            return
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # No route takes an upgrade (no WebSockets here): as uvicorn does.
            if self._should_upgrade():  # pragma: no cover - no websocket routes
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError as exc:
            refused = exc.__context__
            if isinstance(refused, _Refused):
                self._answer(refused.status, refused.message)
            else:
                _malformed.warning(f"refused a malformed HTTP request: {exc}")
                self._answer(400, f"malformed HTTP request: {exc}")
            return
        if self._in_head:
            # httptools buffers a header line whole before it calls on_header:
            # count what it holds, so that an endless line is cut off too.
            self._head_bytes += len(data)
            if self._head_bytes > self._limits.max_header_bytes:
                self._answer(431, self._too_large_message())

    # -- parser callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = self._url_bytes = self._header_bytes = self._header_count = 0
        self._arm(self._limits.header_timeout_s, self._on_header_timeout)

    def on_url(self, url: bytes) -> None:
        self._url_bytes += len(url)
        if self._url_bytes > self._limits.max_header_bytes:
            raise _Refused(414, f"the URL exceeds {self._limits.max_header_bytes} bytes")
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        self._header_bytes += len(name) + len(value) + 4  # ": " and CRLF
        if (
            self._header_count > self._limits.max_headers
            or self._url_bytes + self._header_bytes > self._limits.max_header_bytes
        ):
            raise _Refused(431, self._too_large_message())
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._body_pending = True
        self._arm(self._limits.body_timeout_s, self._on_body_timeout)
        super().on_headers_complete()
        if self.cycle is not None:
            self.cycle.transport = _CycleTransport(self)  # type: ignore[assignment]

    def on_message_complete(self) -> None:
        self._body_pending = False
        self._disarm()
        super().on_message_complete()

    # -- lingering close -------------------------------------------------------------

    def close_after_answer(self) -> None:
        """The app's answer is sent and says ``Connection: close``: close, or linger."""
        transport = self.transport
        if self.lingering or transport.is_closing():
            return
        if not self._body_pending or not transport.can_write_eof():
            transport.close()
            return
        # The answer is written; the client is still sending its body. Send FIN
        # after the answer, and read and drop the rest, within bounds.
        self.lingering = True
        self._linger_left = LINGER_BYTES
        transport.write_eof()
        self.flow.resume_reading()  # uvicorn pauses reads on a large unread body
        self._arm(LINGER_S, self._stop_lingering)

    def _stop_lingering(self) -> None:
        self._deadline = None
        self._disarm()
        if not self.transport.is_closing():
            self.transport.close()

    def on_response_complete(self) -> None:
        if self.lingering:
            self.server_state.total_requests += 1
            return  # no keep-alive timer, no pipelined request: the connection ends
        super().on_response_complete()

    def shutdown(self) -> None:
        """uvicorn's graceful shutdown: close idle connections, the others after answering."""
        if self.lingering:
            return  # it closes itself within LINGER_S
        if self._in_head:
            # A request has begun: let its head end (KV_HEADER_TIMEOUT_S bounds
            # that), so the client gets the drain's 503 rather than a reset.
            return
        super().shutdown()

    # -- deadlines -------------------------------------------------------------------

    def _arm(self, delay_s: float, callback: Callable[[], None]) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(delay_s, callback)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _on_header_timeout(self) -> None:
        self._deadline = None
        if not self._in_head:
            # Nothing of a request arrived: close without a word, as for keep-alive.
            if not self.transport.is_closing():
                self.transport.close()
            return
        _too_slow.warning("closed a connection that did not send its headers in time")
        self._answer(
            408,
            f"the request headers did not arrive within {self._limits.header_timeout_s:g} s "
            "(KV_HEADER_TIMEOUT_S)",
        )

    def _on_body_timeout(self) -> None:
        self._deadline = None
        _too_slow.warning("closed a connection that did not send its body in time")
        self._answer(
            408,
            f"the request body did not arrive within {self._limits.body_timeout_s:g} s "
            "(KV_BODY_TIMEOUT_S)",
            during_body=True,
        )

    # -- answers ---------------------------------------------------------------------------

    def send_400_response(self, msg: str) -> None:
        self._answer(400, msg)

    def _too_large_message(self) -> str:
        return (
            f"the request headers exceed {self._limits.max_header_bytes} bytes or "
            f"{self._limits.max_headers} lines (KV_MAX_HEADER_BYTES, KV_MAX_HEADERS)"
        )

    def _answer(
        self, status: int, message: str, *, during_body: bool = False, retry_after: bool = False
    ) -> None:
        """Answer in the spec's failure shape, unless a response is under way, and close.

        ``during_body``: the request being cut off is ``self.cycle``'s own, so
        if the app already answered it there is nothing left to say.
        """
        self._disarm()
        self._in_head = False
        cycle = self.cycle
        unanswered = cycle is not None and not cycle.response_complete
        if cycle is not None and unanswered:
            # The app, if it is reading the body, sees the client leave, and
            # whatever it sends later is dropped rather than mixed with ours.
            cycle.disconnected = True
            cycle.message_event.set()
        if self.transport.is_closing():
            return
        if (unanswered and not cycle.response_started) or (not unanswered and not during_body):
            body = msgspec.json.encode({"status": "failed", "message": message})
            head = [STATUS_LINE[status]]
            for name, value in self.server_state.default_headers:
                head += [name, b": ", value, b"\r\n"]
            if retry_after:
                head.append(b"retry-after: 1\r\n")
            head += [
                b"content-type: application/json\r\n",
                b"content-length: %d\r\n" % len(body),
                b"connection: close\r\n\r\n",
                body,
            ]
            self.transport.write(b"".join(head))
        self.transport.close()

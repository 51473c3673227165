"""The ingest write on the event loop's own thread, one lean connection per node.

With the driver, every write crosses to its I/O thread and back and spends
over a millisecond of CPU (request objects, query plans, timers, v5 framing in
Python). Here an EXECUTE of the already-prepared statement is a few struct
packs on a connection owned by the event loop, sent to a replica of the
partition (token-aware, from the driver's token map).

Anything unusual goes back to the driver path: no connection to the replica
yet, a statement the node does not know (UNPREPARED), a lost connection. The
caller sees the same results and the same error types either way.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
from collections.abc import Callable
from typing import Any

from ..errors import InvalidRequest, RecoError, StorageUnavailable
from . import _wire
from ._futures import expire

log = logging.getLogger(__name__)
_MAX_STREAM = 32767


class FallBack(Exception):
    """This request should take the driver path instead."""


class _Connection(asyncio.Protocol):
    def __init__(self, address: str, on_lost: Callable[[_Connection], None]) -> None:
        self.address = address
        self._on_lost = on_lost
        self._transport: Any = None  # uvloop's transports are not asyncio.Transport
        self._buffer = bytearray()
        # A stream whose request timed out maps to None until its late answer
        # arrives: reusing the id earlier could hand that answer to a new request.
        self._pending: dict[int, asyncio.Future[tuple[int, bytes]] | None] = {}
        self._next_stream = 0
        self.ready = False

    # -- asyncio.Protocol -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:  # a vector frame is ~6 KiB: never wait on Nagle
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        buf = self._buffer
        buf += data
        while len(buf) >= _wire.HEADER_SIZE:
            version, _flags, stream, opcode, length = _wire.HEADER.unpack_from(buf)
            end = _wire.HEADER_SIZE + length
            if len(buf) < end:
                return
            body = bytes(buf[_wire.HEADER_SIZE : end])
            del buf[:end]
            if version != _wire.RESPONSE_VERSION:
                self._fail(_wire.WireError(f"unexpected protocol version 0x{version:02x}"))
                return
            future = self._pending.pop(stream, None)
            if future is not None and not future.done():
                future.set_result((opcode, body))

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exc or ConnectionError("connection closed"))

    # -- requests -------------------------------------------------------------------

    def _fail(self, exc: BaseException) -> None:
        if self.ready or self._pending:
            log.warning("fast-path connection to %s lost: %s", self.address, exc)
        self.ready = False
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if future is not None and not future.done():
                future.set_exception(FallBack(str(exc)))
        if self._transport is not None:
            self._transport.abort()
        self._on_lost(self)

    def request(self, opcode: int, body: bytes) -> asyncio.Future[tuple[int, bytes]]:
        if self._transport is None or self._transport.is_closing():
            raise FallBack("not connected")
        if len(self._pending) >= _MAX_STREAM:
            raise FallBack("no free stream id")
        stream = self._next_stream
        while stream in self._pending:
            stream = (stream + 1) & _MAX_STREAM
        self._next_stream = (stream + 1) & _MAX_STREAM
        future: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
        self._pending[stream] = future
        self._transport.write(_wire.frame(opcode, stream, body))
        return future

    def forget(self, future: asyncio.Future[tuple[int, bytes]]) -> None:
        """Drop a request that timed out; its stream id stays taken until the late answer."""
        for stream, pending in self._pending.items():
            if pending is future:
                self._pending[stream] = None
                return

    def close(self) -> None:
        self.ready = False
        if self._transport is not None:
            self._transport.close()


class FastPath:
    """Lean connections, one per node, opened lazily on the running loop."""

    def __init__(
        self,
        *,
        port: int,
        connect_timeout_s: float,
        request_timeout_s: float,
        replicas_for: Callable[[bytes], list[str]],
    ) -> None:
        self._port = port
        self._connect_timeout_s = connect_timeout_s
        self._request_timeout_s = request_timeout_s
        self._replicas_for = replicas_for
        self._connections: dict[str, _Connection] = {}
        self._connecting: dict[str, asyncio.Task[None]] = {}

    def _connection_for(self, routing_key: bytes) -> _Connection:
        loop = asyncio.get_running_loop()
        for address in self._replicas_for(routing_key):
            conn = self._connections.get(address)
            if conn is not None and conn.ready:
                return conn
            if address not in self._connecting:
                task = loop.create_task(self._connect(address))
                self._connecting[address] = task
                task.add_done_callback(functools.partial(self._connected, address))
        raise FallBack("no fast-path connection to a replica yet")

    def _connected(self, address: str, _task: asyncio.Task[None]) -> None:
        self._connecting.pop(address, None)

    async def _connect(self, address: str) -> None:
        loop = asyncio.get_running_loop()
        conn: _Connection | None = None
        try:
            _transport, opened = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Connection(address, self._lost), address, self._port
                ),
                self._connect_timeout_s,
            )
            conn = opened
            opcode, _body = await asyncio.wait_for(
                opened.request(_wire.STARTUP, _wire.startup_body()), self._connect_timeout_s
            )
            if opcode != _wire.READY:
                # AUTHENTICATE, or anything else: this node needs more than we speak.
                raise FallBack(f"node answered STARTUP with opcode 0x{opcode:02x}")
        except (OSError, TimeoutError, FallBack) as exc:
            log.info("fast path to %s unavailable (%s); using the driver", address, exc)
            if conn is not None:
                conn.close()
            await asyncio.sleep(1)  # requests keep using the driver meanwhile
            return
        except asyncio.CancelledError:
            if conn is not None:
                conn.close()
            raise
        opened.ready = True
        self._connections[address] = opened

    def _lost(self, conn: _Connection) -> None:
        if self._connections.get(conn.address) is conn:
            del self._connections[conn.address]

    async def execute(
        self, encoder: _wire.ExecuteEncoder, values: tuple[bytes, ...], routing_key: bytes
    ) -> bytes | None:
        """Run the prepared statement; return the first cell of the result.

        Raises FallBack when the driver should run it instead, or our own
        errors (StorageUnavailable, InvalidRequest) for a server ERROR.
        """
        conn = self._connection_for(routing_key)
        future = conn.request(_wire.EXECUTE, encoder.body(values))
        # A bare timer on the future, not wait_for(shield()): those cost a task
        # and two more futures per write. A cancelled caller cancels the future,
        # and the late answer finds it done and is dropped.
        timer = asyncio.get_running_loop().call_later(self._request_timeout_s, expire, future)
        try:
            opcode, body = await future
        except TimeoutError:
            conn.forget(future)
            raise StorageUnavailable(
                f"Cassandra did not answer within {self._request_timeout_s} s",
                kind="OperationTimedOut",
            ) from None
        finally:
            timer.cancel()
        if opcode == _wire.RESULT:
            return _wire.parse_first_cell(body)
        if opcode == _wire.ERROR:
            raise _translate(_wire.parse_error(body))
        conn._fail(_wire.WireError(f"unexpected opcode 0x{opcode:02x}"))
        raise FallBack("unexpected response")

    async def aclose(self) -> None:
        """Close every connection; call it on the loop that opened them."""
        for task in list(self._connecting.values()):
            task.cancel()
        await asyncio.gather(*self._connecting.values(), return_exceptions=True)
        for conn in list(self._connections.values()):
            conn.close()
        self._connections.clear()
        await asyncio.sleep(0)  # let the transports finish closing


def _translate(failure: _wire.ServerFailure) -> RecoError | FallBack:
    if failure.code == _wire.UNPREPARED:
        return FallBack("statement not prepared on this node")  # the driver re-prepares
    if failure.code == _wire.INVALID:
        log.error("Cassandra refused a request we had validated: %s", failure.message)
        return InvalidRequest(f"Cassandra refused the value: {failure.message}")
    return StorageUnavailable(
        f"Cassandra is unavailable ({failure.kind}): {failure.message}", kind=failure.kind
    )


def routing(cluster: Any, keyspace: str) -> Callable[[bytes], list[str]]:
    """Replica addresses for a partition key, from the driver's live token map."""

    def replicas_for(key: bytes) -> list[str]:
        token_map = cluster.metadata.token_map
        if token_map is None:
            return [h.endpoint.address for h in cluster.metadata.all_hosts() if h.is_up]
        token = token_map.token_class.from_key(key)
        return [
            h.endpoint.address
            for h in token_map.get_replicas(keyspace, token)
            if h.is_up is not False
        ]

    return replicas_for

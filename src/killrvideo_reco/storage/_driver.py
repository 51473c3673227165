"""The only module that knows the driver's cluster, session and error classes."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from cassandra import (
    ConsistencyLevel,
    CoordinationFailure,
    DriverException,
    Timeout,
    Unavailable,
)
from cassandra import InvalidRequest as CqlInvalidRequest
from cassandra.cluster import (
    EXEC_PROFILE_DEFAULT,
    Cluster,
    ExecutionProfile,
    NoHostAvailable,
    ResponseFuture,
    Session,
)
from cassandra.connection import ConnectionException
from cassandra.policies import (
    DCAwareRoundRobinPolicy,
    ExponentialReconnectionPolicy,
    TokenAwarePolicy,
)
from cassandra.pool import NoConnectionsAvailable
from cassandra.protocol import ErrorMessage, InvalidRequestException
from cassandra.query import tuple_factory

from ..config import Settings
from ..errors import InvalidRequest, RecoError, StorageUnavailable
from ._connect import cluster_options, explain_connect_failure, one_line_logs

try:  # libev is the driver's fastest reactor; the wheels ship it
    from cassandra.io.libevreactor import LibevConnection as _Connection
except ImportError:  # pragma: no cover - platforms without the extension
    from cassandra.io.asyncorereactor import AsyncoreConnection as _Connection

log = logging.getLogger(__name__)

__all__ = ["DRIVER_ERRORS", "CqlInvalidRequest", "connect", "run_async", "translate", "translated"]

# Everything the driver raises about the cluster: its own exception tree, the
# server's error messages, and the connection errors outside that tree. Only
# these are translated; anything else is a bug of ours and must surface as a
# logged 500 with its traceback, never as a 503 that hides it.
DRIVER_ERRORS: tuple[type[BaseException], ...] = (
    DriverException,
    ErrorMessage,
    NoHostAvailable,
    ConnectionException,
    NoConnectionsAvailable,
)


def translate(exc: BaseException) -> RecoError:
    """Map a driver exception to ours, keeping its class name, message and replica counts."""
    kind = type(exc).__name__
    if isinstance(exc, CqlInvalidRequest | InvalidRequestException):
        # We validate everything Cassandra checks; reaching this is a gap in our rules.
        log.error("Cassandra refused a request we had validated: %s", exc)
        return InvalidRequest(f"Cassandra refused the value: {exc}")
    if isinstance(exc, NoHostAvailable) and exc.errors:
        # Every host was tried: the first one's answer says why (Unavailable at a
        # level, a timeout...), unless none was reached at all.
        first = next(iter(exc.errors.values()))
        if isinstance(first, DRIVER_ERRORS) and not isinstance(first, NoHostAvailable):
            inner = translate(first)
            if isinstance(inner, StorageUnavailable):
                return StorageUnavailable(
                    f"no Cassandra node could serve the request: {inner.message}",
                    kind=inner.kind,
                    consistency=inner.consistency,
                    required=inner.required,
                    received=inner.received,
                )
    required = received = None
    if isinstance(exc, Unavailable):
        required, received = exc.required_replicas, exc.alive_replicas
    elif isinstance(exc, Timeout | CoordinationFailure):
        required, received = exc.required_responses, exc.received_responses
    level = getattr(exc, "consistency", None)
    return StorageUnavailable(
        f"Cassandra is unavailable ({kind}): {exc}",
        kind=kind,
        consistency=ConsistencyLevel.value_to_name.get(level) if level is not None else None,
        required=required,
        received=received,
    )


@contextmanager
def translated() -> Iterator[None]:
    """Run a block whose driver errors become ours (StorageUnavailable, InvalidRequest)."""
    try:
        yield
    except DRIVER_ERRORS as exc:
        raise translate(exc) from exc


def connect(settings: Settings) -> tuple[Cluster, Session]:
    """Open a cluster and a session; raise StorageUnavailable if no node answers.

    Its message is one line naming the setting to check (storage/_connect.py).
    """
    profile = ExecutionProfile(
        load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc=settings.local_dc)),
        request_timeout=settings.request_timeout_s,
        row_factory=tuple_factory,
    )
    cluster = Cluster(
        **cluster_options(settings),  # endpoints, credentials, TLS or Astra
        protocol_version=settings.cassandra_protocol_version,
        connection_class=_Connection,
        # Without TCP_NODELAY a ~6 KiB vector frame meets Nagle plus delayed ACK
        # and every write waits ~40 ms (shared/notes/cassandra-5.md, trap 1).
        sockopts=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        reconnection_policy=ExponentialReconnectionPolicy(base_delay=0.5, max_delay=30),
        connect_timeout=settings.connect_timeout_s,
        control_connection_timeout=settings.connect_timeout_s,
    )
    try:
        with one_line_logs():
            session = cluster.connect()
    except DRIVER_ERRORS as exc:
        cluster.shutdown()
        kind = type(exc).__name__
        raise StorageUnavailable(explain_connect_failure(exc, settings), kind=kind) from exc
    except BaseException:
        cluster.shutdown()
        raise
    return cluster, session


def consistency(name: str) -> int:
    try:
        return int(getattr(ConsistencyLevel, name.upper()))
    except AttributeError:
        raise ValueError(f"unknown consistency level {name!r}") from None


def serial_consistency_for(name: str) -> int:
    local = name.upper().startswith("LOCAL") or name.upper() == "ONE"
    return int(ConsistencyLevel.LOCAL_SERIAL if local else ConsistencyLevel.SERIAL)


def run_async(session: Session, statement: Any, parameters: Any = None) -> asyncio.Future[Any]:
    """Execute on the driver's I/O thread; resolve an asyncio future on this loop.

    The event loop never waits on the driver: the callbacks hop back with
    ``call_soon_threadsafe``, and driver errors arrive already translated.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    try:
        response: ResponseFuture = session.execute_async(statement, parameters)
    except DRIVER_ERRORS as exc:
        future.set_exception(translate(exc))
        return future
    response.add_callbacks(
        _hop,
        _hop,
        callback_args=(loop, future, _set_result),
        errback_args=(loop, future, _set_error),
    )
    return future


def _hop(
    value: Any,
    loop: asyncio.AbstractEventLoop,
    future: asyncio.Future[Any],
    apply: Callable[[asyncio.Future[Any], Any], None],
) -> None:
    # Runs on the driver's I/O thread: hand the outcome back to the event loop.
    loop.call_soon_threadsafe(apply, future, value)


def _set_result(future: asyncio.Future[Any], rows: Any) -> None:
    if not future.done():
        future.set_result(rows)


def _set_error(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(translate(exc) if isinstance(exc, DRIVER_ERRORS) else exc)

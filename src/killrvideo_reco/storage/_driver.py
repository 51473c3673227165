"""The only module that knows the driver's cluster, session and error classes."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Any

from cassandra import (
    ConsistencyLevel,
    CoordinationFailure,
    OperationTimedOut,
    ReadTimeout,
    Unavailable,
    WriteTimeout,
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
from cassandra.protocol import (
    IsBootstrappingErrorMessage,
    OverloadedErrorMessage,
    ServerError,
    TruncateError,
)
from cassandra.query import tuple_factory

from ..config import Settings
from ..errors import InvalidRequest, RecoError, StorageUnavailable
from ._connect import cluster_options, explain_connect_failure, one_line_logs

try:  # libev is the driver's fastest reactor; the wheels ship it
    from cassandra.io.libevreactor import LibevConnection as _Connection
except ImportError:  # pragma: no cover - platforms without the extension
    from cassandra.io.asyncorereactor import AsyncoreConnection as _Connection

log = logging.getLogger(__name__)

# Errors after which the client may retry: the cluster is slow, short of
# replicas, overloaded or unreachable. The write is idempotent, so a retry is safe.
_TRANSIENT: tuple[type[BaseException], ...] = (
    WriteTimeout,
    ReadTimeout,
    Unavailable,
    CoordinationFailure,
    OperationTimedOut,
    NoHostAvailable,
    ConnectionException,
    OverloadedErrorMessage,
    IsBootstrappingErrorMessage,
    TruncateError,
    ServerError,  # e.g. CASSANDRA-21644's pool exhaustion: transient, not the client's fault
)


def translate(exc: BaseException) -> RecoError:
    """Map a driver exception to ours, keeping its class name and message."""
    kind = type(exc).__name__
    if isinstance(exc, _TRANSIENT):
        return StorageUnavailable(f"Cassandra is unavailable ({kind}): {exc}", kind=kind)
    if isinstance(exc, CqlInvalidRequest):
        # We validate everything Cassandra checks; reaching this is a gap in our rules.
        log.error("Cassandra refused a request we had validated: %s", exc)
        return InvalidRequest(f"Cassandra refused the value: {exc}")
    return StorageUnavailable(f"Cassandra request failed ({kind}): {exc}", kind=kind)


def connect(
    settings: Settings,
    *,
    local_dc: str | None,
    connect_timeout_s: float,
    request_timeout_s: float,
) -> tuple[Cluster, Session]:
    """Open a cluster and a session; raise StorageUnavailable if no node answers.

    Its message is one line naming the setting to check (storage/_connect.py).
    """
    profile = ExecutionProfile(
        load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc=local_dc)),
        request_timeout=request_timeout_s,
        row_factory=tuple_factory,
    )
    cluster = Cluster(
        **cluster_options(settings),  # endpoints, credentials, TLS or Astra
        protocol_version=5,
        connection_class=_Connection,
        # Without TCP_NODELAY a ~6 KiB vector frame meets Nagle plus delayed ACK
        # and every write waits ~40 ms (shared/notes/cassandra-5.md, trap 1).
        sockopts=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        reconnection_policy=ExponentialReconnectionPolicy(base_delay=0.5, max_delay=30),
        connect_timeout=connect_timeout_s,
        control_connection_timeout=connect_timeout_s,
    )
    try:
        with one_line_logs():
            session = cluster.connect()
    except Exception as exc:
        cluster.shutdown()
        kind = type(exc).__name__
        raise StorageUnavailable(explain_connect_failure(exc, settings), kind=kind) from exc
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
    except Exception as exc:
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
        future.set_exception(translate(exc))

"""Resources opened once in the lifespan and handed to requests."""

from __future__ import annotations

from fastapi import Request

from ..auth import TokenVerifier
from ..config import Settings
from ..errors import StorageUnavailable, Unauthenticated
from ..storage import CassandraStore


class Services:
    """What a request needs. ``store`` raises StorageUnavailable (503) until connected.

    The service starts whether or not Cassandra answers yet: the lifespan keeps
    trying in the background and attaches the store when the cluster appears.
    """

    __slots__ = ("_store", "_waiting_for", "settings", "verifier")

    def __init__(
        self, *, settings: Settings, verifier: TokenVerifier, store: CassandraStore | None = None
    ) -> None:
        self.settings = settings
        self.verifier = verifier
        self._store = store
        self._waiting_for = "Cassandra is not connected yet"

    @property
    def store(self) -> CassandraStore:
        store = self._store
        if store is None:
            raise StorageUnavailable(self._waiting_for, kind="NotConnected")
        return store

    @property
    def connected(self) -> bool:
        return self._store is not None

    def attach(self, store: CassandraStore) -> None:
        self._store = store

    def waiting(self, reason: str) -> None:
        """Why there is no store yet: the 503s and /readyz say it."""
        self._waiting_for = f"not connected to Cassandra yet: {reason}"


async def services(request: Request) -> Services:
    # async on purpose: FastAPI runs a plain `def` dependency in a thread pool,
    # which costs two thread hops on every request.
    svc: Services = request.app.state.services
    return svc


def authorization(request: Request) -> str | None:
    """The one Authorization header; two are ambiguous (which one did a proxy check?)."""
    values = request.headers.getlist("authorization")
    if len(values) > 1:
        raise Unauthenticated("send exactly one Authorization header")
    return values[0] if values else None

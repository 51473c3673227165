"""Resources opened once in the lifespan and handed to requests."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from ..auth import TokenVerifier
from ..config import Settings
from ..errors import Unauthenticated
from ..storage import CassandraStore


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    store: CassandraStore
    verifier: TokenVerifier


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

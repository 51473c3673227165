"""Resources opened once in the lifespan and handed to requests."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from ..auth import TokenVerifier
from ..config import Settings
from ..storage import CassandraStore


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    store: CassandraStore
    verifier: TokenVerifier


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc

"""Application factory: the lifespan opens Cassandra once, shares it, and closes it last."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp

from .. import logs
from ..auth import TokenVerifier
from ..config import Settings, load_settings
from ..errors import SchemaNotReady
from ..storage import CassandraStore
from . import errors
from .deps import Services
from .front import Drain, Front
from .metrics import FROM_STORES, OBSERVER
from .routes import docs, health, ingest, related

log = logging.getLogger("killrvideo_reco")


class _App(FastAPI):
    """FastAPI with ``Front`` outside everything, even the 500 handler, so it sees every answer."""

    drain: Drain
    retry_after_s: int

    def build_middleware_stack(self) -> ASGIApp:
        return Front(
            super().build_middleware_stack(), drain=self.drain, retry_after_s=self.retry_after_s
        )

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            self.openapi_schema = docs.add_security_scheme(super().openapi())
        return self.openapi_schema


def create_app(settings: Settings) -> FastAPI:
    drain = Drain()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        verifier = TokenVerifier(settings)
        if settings.uses_local_dev_key:
            log.warning(
                "using the local development JWT key in %s; set KV_JWT_SECRET or "
                "KV_JWT_PUBLIC_KEY_FILE in production",
                settings.state_dir,
            )
        store = CassandraStore.open(settings)
        try:
            spec = store.load_schema()
            log.info(
                "ingesting %s vectors, %s similarity, into %s.videos",
                spec.cql_type,
                spec.similarity.value,
                settings.keyspace,
            )
        except SchemaNotReady as exc:
            log.error("%s; ingest answers 503 until it exists", exc.message)
        store.observe(OBSERVER)
        FROM_STORES.stores.add(store)
        app.state.services = Services(settings=settings, store=store, verifier=verifier)
        drain.install()
        try:
            yield
        finally:
            # The server has stopped accepting and waited for in-flight requests
            # (KV_SHUTDOWN_TIMEOUT_S): nothing uses the session any more.
            drain.start()
            drain.uninstall()
            store.close()
            log.info("closed the Cassandra session")

    app = _App(
        title="killrvideo-reco",
        summary="Recommendation ingest: video embeddings into Apache Cassandra 5.0",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # ours, with its assets served here: routes/docs.py
        redoc_url=None,
    )
    app.drain, app.retry_after_s = drain, settings.retry_after_s
    errors.install(app, retry_after_s=settings.retry_after_s)
    app.add_middleware(ingest.IngestShortcut)
    app.include_router(ingest.router, tags=["reco"])
    app.include_router(related.router, tags=["videos"])
    app.include_router(health.router, tags=["health"])
    docs.install(app)
    return app


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` and multi-worker serving (each worker logs alike)."""
    settings = load_settings()
    logs.configure(level=settings.log_level, fmt=settings.log_format)
    return create_app(settings)

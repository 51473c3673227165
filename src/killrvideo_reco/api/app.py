"""Application factory: the lifespan opens Cassandra once and shares it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from ..auth import TokenVerifier
from ..config import Settings, load_settings
from ..errors import SchemaNotReady
from ..storage import CassandraStore
from . import errors
from .deps import Services
from .routes import health, ingest, related

log = logging.getLogger("killrvideo_reco")


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        verifier = TokenVerifier(settings)
        if settings.uses_local_dev_key:
            log.warning(
                "using the local development JWT key in %s; set KV_JWT_SECRET or "
                "KV_JWT_PUBLIC_KEY_FILE in production",
                settings.state_dir,
            )
        with CassandraStore.open(settings) as store:
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
            app.state.services = Services(settings=settings, store=store, verifier=verifier)
            yield

    app = FastAPI(
        title="killrvideo-reco",
        summary="Recommendation ingest: video embeddings into Apache Cassandra 5.0",
        version="0.1.0",
        lifespan=lifespan,
    )
    errors.install(app, retry_after_s=settings.retry_after_s)
    app.add_middleware(ingest.IngestShortcut)
    app.include_router(ingest.router, tags=["reco"])
    app.include_router(related.router, tags=["videos"])
    app.include_router(health.router, tags=["health"])
    return app


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` and multi-worker serving."""
    return create_app(load_settings())

"""Application factory: the lifespan opens Cassandra once, shares it, and closes it last."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp

from .. import logs
from ..auth import TokenVerifier
from ..config import Settings, load_settings
from ..errors import SchemaNotReady, StorageUnavailable
from ..jwks import Jwks
from ..storage import CassandraStore
from . import errors
from .deps import Services
from .front import Drain, Front
from .metrics import FROM_STORES, OBSERVER, publish_loop, worker_exited
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
        keys = await _open_keys(settings)
        verifier = TokenVerifier(settings, keys=keys)
        if settings.uses_local_dev_key:
            log.warning(
                "using the local development JWT key in %s; set KV_JWT_SECRET or "
                "KV_JWT_PUBLIC_KEY_FILE in production",
                settings.state_dir,
            )
        svc = Services(settings=settings, verifier=verifier)
        app.state.services = svc
        connector: asyncio.Task[None] | None = None
        try:
            # At once when the cluster answers: tests and `make run` find the
            # store attached when start-up ends.
            store = CassandraStore.open(settings)
        except StorageUnavailable as exc:
            # Start anyway: answer 503 (not ready) and keep trying, so that a
            # service started before its cluster needs no restart.
            log.error("%s; answering 503 and retrying in the background", exc.message)
            svc.waiting(exc.message)
            connector = asyncio.create_task(_connect_later(svc, settings))
        else:
            _load_schema(store, settings.keyspace)
            _attach(svc, store)
        drain.install()
        publisher = asyncio.create_task(publish_loop())  # --workers N: the store gauges
        try:
            yield
        finally:
            publisher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await publisher
            # The server has stopped accepting and waited for in-flight requests
            # (KV_SHUTDOWN_TIMEOUT_S): nothing uses the session any more.
            drain.start()
            drain.uninstall()
            if connector is not None:
                connector.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await connector
            if svc.connected:
                svc.store.close()
                log.info("closed the Cassandra session")
            if keys is not None:
                await keys.aclose()
            worker_exited()

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


async def _open_keys(settings: Settings) -> Jwks | None:
    """The identity provider's key set, first fetched (or not: it says so), when configured."""
    if not settings.uses_jwks:
        return None
    keys = Jwks.from_settings(settings)
    await keys.open()
    loaded = keys.status().loaded
    if loaded:
        log.info(
            "checking tokens of %s for %s with %d signing keys from %s",
            settings.jwt_issuer,
            settings.jwt_audience,
            loaded,
            keys.source,
        )
    return keys


def _load_schema(store: CassandraStore, keyspace: str) -> None:
    try:
        spec = store.load_schema()
        log.info(
            "ingesting %s vectors, %s similarity, into %s.videos; index graph: %s",
            spec.cql_type,
            spec.similarity.value,
            keyspace,
            spec.graph,
        )
    except SchemaNotReady as exc:
        log.error("%s; ingest answers 503 until it exists", exc.message)


def _attach(svc: Services, store: CassandraStore) -> None:
    store.observe(OBSERVER)
    FROM_STORES.stores.add(store)
    svc.attach(store)


_RETRY_FIRST_S, _RETRY_MAX_S = 0.5, 10.0


async def _connect_later(svc: Services, settings: Settings) -> None:
    """Open the store once the cluster answers; back off between attempts."""
    delay, last = _RETRY_FIRST_S, ""
    while True:
        await asyncio.sleep(delay)
        attempt = asyncio.ensure_future(asyncio.to_thread(_open_and_load, settings))
        try:
            store = await asyncio.shield(attempt)
        except StorageUnavailable as exc:
            if exc.message != last:  # one line per new reason, not per attempt
                log.warning("still %s", exc.message)
                last = exc.message
            svc.waiting(exc.message)
            delay = min(delay * 2, _RETRY_MAX_S)
            continue
        except asyncio.CancelledError:
            # Shutting down mid-attempt: close what the attempt opens, if anything.
            attempt.add_done_callback(_close_if_opened)
            raise
        _attach(svc, store)
        log.info("connected to Cassandra; accepting requests")
        return


def _open_and_load(settings: Settings) -> CassandraStore:
    store = CassandraStore.open(settings)
    _load_schema(store, settings.keyspace)
    return store


def _close_if_opened(attempt: asyncio.Future[CassandraStore]) -> None:
    if not attempt.cancelled() and attempt.exception() is None:
        attempt.result().close()


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` and multi-worker serving (each worker logs alike)."""
    settings = load_settings()
    logs.configure(level=settings.log_level, fmt=settings.log_format)
    return create_app(settings)

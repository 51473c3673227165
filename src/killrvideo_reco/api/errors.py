"""The one place where exceptions become HTTP responses.

Every failure has the spec's response shape: ``{videoId?, status: "failed",
message}``. 503s carry ``Retry-After``. Nothing the client sends can produce a
500; an unexpected exception does, logged with its traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import msgspec
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from ..errors import ClientDisconnected, RecoError, StorageUnavailable
from .metrics import CASSANDRA_ERRORS

log = logging.getLogger(__name__)
_encode = msgspec.json.encode


def failure(
    status_code: int,
    message: str,
    *,
    video_id: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {"status": "failed", "message": message}
    if video_id is not None:
        body = {"videoId": video_id, **body}
    return Response(
        _encode(body), status_code=status_code, headers=headers, media_type="application/json"
    )


def reco_error_response(exc: RecoError, *, method: str, path: str, retry_after_s: int) -> Response:
    """Our exception in the spec's failure shape; a 503 is counted, logged, gets Retry-After."""
    headers = None
    if isinstance(exc, ClientDisconnected):
        # Routine on the internet, and nobody reads this answer: not an error.
        log.info("client disconnected during %s %s: %s", method, path, exc.message)
    elif exc.status_code == 503:
        headers = {"Retry-After": str(retry_after_s)}
        kind = exc.kind if isinstance(exc, StorageUnavailable) else type(exc).__name__
        CASSANDRA_ERRORS.labels(kind).inc()
        log.warning("503 for %s %s: %s", method, path, exc.message)
    return failure(exc.status_code, exc.message, video_id=exc.video_id, headers=headers)


def install(app: FastAPI, *, retry_after_s: int) -> None:

    async def on_reco_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RecoError)
        return reco_error_response(
            exc, method=request.method, path=request.url.path, retry_after_s=retry_after_s
        )

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return failure(exc.status_code, str(exc.detail), headers=exc.headers)

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return failure(422, "; ".join(str(e.get("msg", e)) for e in exc.errors()))

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return failure(500, "internal error")

    app.add_exception_handler(RecoError, on_reco_error)
    app.add_exception_handler(HTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(Exception, on_unexpected)

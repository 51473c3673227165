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
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import Scope

from ..errors import RecoError
from .front import note

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


def reco_error_response(exc: RecoError, *, scope: Scope, retry_after_s: int) -> Response:
    """Our exception in the spec's failure shape; a 503 gets Retry-After.

    The request's log line (api/front.py) gets the message as its reason.
    """
    noted = note(scope)
    noted.reason = exc.message
    if exc.video_id is not None:
        noted.video_id = exc.video_id
    after = exc.retry_after_s if exc.retry_after_s is not None else retry_after_s
    headers = {"Retry-After": str(after)} if exc.status_code == 503 else None
    return failure(exc.status_code, exc.message, video_id=exc.video_id, headers=headers)


def install(app: FastAPI, *, retry_after_s: int) -> None:

    async def on_reco_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RecoError)
        return reco_error_response(exc, scope=request.scope, retry_after_s=retry_after_s)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        note(request.scope).reason = str(exc.detail)
        return failure(exc.status_code, str(exc.detail), headers=exc.headers)

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        message = "; ".join(str(e.get("msg", e)) for e in exc.errors())
        note(request.scope).reason = message
        return failure(422, message)

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        if isinstance(exc, ClientDisconnect):
            # The client's choice, not our bug: no traceback. Nobody reads the
            # answer; 499 (nginx's "client closed request") is for the log line.
            note(request.scope).reason = "the client disconnected"
            return failure(499, "the client disconnected")
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return failure(500, "internal error")

    app.add_exception_handler(RecoError, on_reco_error)
    app.add_exception_handler(HTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(Exception, on_unexpected)

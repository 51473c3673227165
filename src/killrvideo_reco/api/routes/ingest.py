"""POST /api/v1/reco/ingest — the endpoint of shared/spec/reco-ingest-endpoint.md."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Annotated

import msgspec
from fastapi import APIRouter, Depends, Request
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ...auth import CREATOR
from ...domain.ingest import IngestCommand, decode_batch, decode_ingest
from ...domain.vectors import VectorSpec
from ...errors import (
    ClientDisconnected,
    PayloadTooLarge,
    RecoError,
    SchemaNotReady,
    UnsupportedMediaType,
)
from ..deps import Services, authorization, services
from ..errors import reco_error_response
from ..front import note
from ..metrics import ACCEPTED_SECONDS, count_accepted, count_refused
from ..schemas import BatchRequest, BatchResult, IngestAccepted, IngestRequest, failure_doc
from .docs import REQUIRES_TOKEN

log = logging.getLogger(__name__)
router = APIRouter()
# What both endpoints answer alike, before any item is looked at.
_AUTH_AND_BODY: dict[int | str, dict[str, object]] = {
    400: failure_doc("The body is not valid JSON"),
    401: failure_doc("Missing, malformed, expired or forged bearer token"),
    403: failure_doc("The token lacks the creator role"),
    415: failure_doc("The body is not declared as JSON, or has a Content-Encoding"),
}
PATH = "/api/v1/reco/ingest"
_ACCEPTED_MESSAGE = "Embedding ingested successfully"
_encode = msgspec.json.encode


def _check_media_type(content_type: str | None) -> None:
    media_type, _, params = (content_type or "").partition(";")
    media_type = media_type.strip().lower()
    if media_type != "application/json" and not (
        media_type.startswith("application/") and media_type.endswith("+json")
    ):
        got = content_type or "none"
        raise UnsupportedMediaType(
            f"the body must be JSON (Content-Type: application/json), got {got!r}"
        )
    charset = params.partition("charset=")[2].strip().strip('"').lower()
    if charset and charset not in ("utf-8", "utf8"):
        raise UnsupportedMediaType(f"JSON must be UTF-8, got charset {charset!r}")


def _check_content_encoding(content_encoding: str | None) -> None:
    # Decoding a compressed body is not offered; reading one as JSON would only
    # fail later with a misleading message.
    if content_encoding is not None and content_encoding.strip().lower() != "identity":
        raise UnsupportedMediaType(
            f"Content-Encoding {_cut(content_encoding)!r} is not supported: send the body "
            "uncompressed"
        )


def _cut(value: str, limit: int = 64) -> str:
    return value if len(value) <= limit else value[:limit] + "..."


async def read_body(request: Request, *, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is {declared} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():  # chunked bodies have no declared length
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"the body exceeds the limit of {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise ClientDisconnected(
            f"the client disconnected after {size} bytes of the body"
        ) from None
    return b"".join(chunks)


async def _authorized_body(
    request: Request, svc: Services, *, limit: int
) -> tuple[bytes, VectorSpec]:
    """Auth, media type and size checks, in that order; the body and the live vector spec."""
    await svc.verifier.authorize(authorization(request), role=CREATOR)
    _check_media_type(request.headers.get("content-type"))
    _check_content_encoding(request.headers.get("content-encoding"))
    body = await read_body(request, limit=limit)
    spec = svc.store.spec
    if spec is None:
        raise SchemaNotReady("the vector schema is not loaded: run `kv-reco schema apply`")
    return body, spec


@router.post(
    PATH,
    status_code=202,
    summary="Ingest a video embedding",
    description=(
        "Stores `vector` in `content_features` of an existing video and nothing else. "
        "Idempotent: the last write wins, so a retry is harmless."
    ),
    response_model=IngestAccepted,
    responses={
        **_AUTH_AND_BODY,
        404: failure_doc("No video with this videoId; nothing was written"),
        413: failure_doc("The body is larger than KV_MAX_BODY_BYTES"),
        422: failure_doc(
            "The body breaks a rule: videoId not a UUID, vector not numbers, wrong "
            "dimension (the message names the expected one), non-finite or out-of-bounds "
            "value (the message gives its index), all-zero vector under cosine"
        ),
        503: failure_doc(
            "Cassandra is unavailable, slow or overloaded, or the identity provider could not "
            "be asked for the token's key; retry after Retry-After"
        ),
    },
    openapi_extra={
        **REQUIRES_TOKEN,
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": IngestRequest.model_json_schema()}},
        },
    },
)
async def ingest(request: Request, svc: Annotated[Services, Depends(services)]) -> Response:
    started = time.perf_counter()
    noted = note(request.scope)
    try:
        body, spec = await _authorized_body(request, svc, limit=svc.settings.max_body_bytes)
        # Admit before decoding: a request refused for overload costs next to nothing.
        async with svc.store.writer.admission():
            command = decode_ingest(body, spec)
            noted.video_id = video_id = str(command.video_id)  # for the log line, 404 included
            await svc.store.writer.set_content_features(
                command.video_id, command.vector, admitted=True
            )
    except RecoError as exc:
        count_refused(exc)
        raise
    count_accepted()
    ACCEPTED_SECONDS.observe(time.perf_counter() - started)
    payload = {"videoId": video_id, "status": "accepted", "message": _ACCEPTED_MESSAGE}
    return Response(_encode(payload), status_code=202, media_type="application/json")


@router.post(
    "/api/v1/reco/ingest/batch",
    status_code=200,
    summary="Ingest many video embeddings",
    description=(
        "Items are independent: each gets the result the single endpoint would give it, "
        "in order. A failed item writes nothing; the others still go through. Only a "
        "problem with the whole request (auth, body, too many items) fails it all."
    ),
    response_model=BatchResult,
    responses={
        **_AUTH_AND_BODY,
        413: failure_doc("The body is larger than KV_MAX_BATCH_BODY_BYTES"),
        422: failure_doc(
            "The envelope breaks a rule: no items array, more than KV_MAX_BATCH_ITEMS, "
            "unknown field, writeTimestamp not an integer or in the future"
        ),
        503: failure_doc(
            "The schema is not loaded, or the identity provider could not be asked for the "
            "token's key; retry after Retry-After"
        ),
    },
    openapi_extra={
        **REQUIRES_TOKEN,
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": BatchRequest.model_json_schema()}},
        },
    },
)
async def ingest_batch(request: Request, svc: Annotated[Services, Depends(services)]) -> Response:
    body, spec = await _authorized_body(request, svc, limit=svc.settings.max_batch_body_bytes)
    batch = decode_batch(
        body, spec, max_items=svc.settings.max_batch_items, now_us=time.time_ns() // 1000
    )
    results: list[RecoError | None] = [
        item if isinstance(item, RecoError) else None for item in batch.items
    ]
    todo = [(i, item) for i, item in enumerate(batch.items) if isinstance(item, IngestCommand)]
    store, stamp = svc.store, batch.write_timestamp_us

    async def worker() -> None:
        # Concurrent single-row writes, never a CQL BATCH (its size guardrail
        # fails at about 8 vectors). Each takes a slot of the same in-flight
        # bound as single ingests, so a batch cannot starve them.
        while todo:
            index, command = todo.pop()
            try:
                await store.writer.set_content_features(
                    command.video_id, command.vector, timestamp_us=stamp
                )
            except RecoError as exc:
                exc.video_id = str(command.video_id)
                results[index] = exc
            except Exception:
                # A bug of ours, isolated to this item: it reports 500, the rest go on.
                log.exception("unexpected error writing batch item %d", index)
                failed = RecoError("internal error")
                failed.video_id = str(command.video_id)
                results[index] = failed

    workers = min(len(todo), store.writer.limit)  # the limit now, adaptive or fixed
    await asyncio.gather(*(worker() for _ in range(workers)))
    items = []
    for item, error in zip(batch.items, results, strict=True):
        if error is None:
            count_accepted()
            assert isinstance(item, IngestCommand)
            items.append(
                {
                    "videoId": str(item.video_id),
                    "status": "accepted",
                    "code": 202,
                    "message": _ACCEPTED_MESSAGE,
                }
            )
        else:
            count_refused(error)
            entry: dict[str, object] = {
                "status": "failed",
                "code": error.status_code,
                "message": error.message,
            }
            if error.video_id is not None:
                entry = {"videoId": error.video_id, **entry}
            items.append(entry)
    failed = sum(error is not None for error in results)
    if failed:
        note(request.scope).reason = f"{failed} of {len(items)} items failed"
    payload = {
        "status": "completed",
        "accepted": len(items) - failed,
        "failed": failed,
        "items": items,
    }
    # Items that got 503 are to be sent again: say when, as a whole-request 503 would.
    retry = any(error is not None and error.status_code == 503 for error in results)
    headers = {"Retry-After": str(svc.settings.retry_after_s)} if retry else None
    return Response(
        _encode(payload), status_code=200, headers=headers, media_type="application/json"
    )


class IngestShortcut:
    """ASGI middleware: POST /api/v1/reco/ingest goes straight to ``ingest``.

    The same handler as the route above, minus FastAPI's routing, request
    validation and dependency solving, which a profile under load put at about
    a fifth of the service's CPU per ingest (bench/profile.py). Every other
    request, and the OpenAPI document, go through FastAPI as usual.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        svc: Services = scope["app"].state.services
        note(scope).route = PATH
        try:
            response = await ingest(Request(scope, receive), svc)
        except RecoError as exc:
            response = reco_error_response(
                exc, scope=scope, retry_after_s=svc.settings.retry_after_s
            )
        await response(scope, receive, send)

"""GET related videos: the ANN read path that the ingested vectors exist for."""

from __future__ import annotations

from typing import Annotated

import msgspec
from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from ...domain.ingest import parse_video_id
from ...domain.related import DEFAULT_LIMIT, MAX_LIMIT, MIN_LIMIT, check_limit
from ..deps import Services, authorization, services
from ..schemas import RelatedItem, failure_doc
from .docs import TOKEN_OPTIONAL

router = APIRouter()
_encode = msgspec.json.encode

_DOC = {
    "summary": "Videos most similar to this one",
    "description": (
        "The `limit` nearest videos by the SAI index's similarity, never the video itself. "
        "Anonymous reads are allowed (related videos show on public pages); a bearer token, "
        "when sent, must be valid. A video without an embedding yet gets an empty list."
    ),
    "response_model": list[RelatedItem],
    "openapi_extra": TOKEN_OPTIONAL,
    "responses": {
        401: failure_doc("A bearer token was sent and is invalid"),
        404: failure_doc("No video with this id"),
        422: failure_doc("videoId is not a UUID, or limit is outside 1..100"),
        503: failure_doc(
            "Cassandra is unavailable, or the identity provider could not be asked for the "
            "token's key; retry after Retry-After"
        ),
    },
}


@router.get("/api/v1/videos/id/{videoId}/related", **_DOC)  # type: ignore[arg-type]
@router.get("/api/v1/videos/{videoId}/related", include_in_schema=False)
async def related(
    videoId: str,  # noqa: N803 - the path parameter's public name
    request: Request,
    svc: Annotated[Services, Depends(services)],
    limit: Annotated[int, Query(description=f"{MIN_LIMIT} to {MAX_LIMIT}")] = DEFAULT_LIMIT,
) -> Response:
    bearer = authorization(request)
    if bearer is not None:
        await svc.verifier.authenticate(bearer)
    video_id = parse_video_id(videoId)
    items = await svc.store.related.nearest(video_id, limit=check_limit(limit))
    payload = [
        {"videoId": str(v.video_id), "title": v.title, "score": v.score}
        | ({"thumbnailUrl": v.thumbnail_url} if v.thumbnail_url else {})
        for v in items
    ]
    return Response(_encode(payload), media_type="application/json")

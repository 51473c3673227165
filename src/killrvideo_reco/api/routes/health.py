"""Liveness, readiness and metrics."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends
from starlette.responses import JSONResponse, Response

from ...errors import RecoError
from ..deps import Services, services
from ..errors import failure
from ..metrics import exposition

router = APIRouter()


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Connected to Cassandra, a node answers, and the vector schema is present",
    responses={503: {"description": "Not ready; the message says why"}},
)
async def readyz(svc: Annotated[Services, Depends(services)]) -> Response:
    """Ready means this instance can serve: it is not about the cluster's quorum.

    With too few replicas for a quorum, ingest answers 503 with Retry-After
    while related videos (KV_RELATED_CONSISTENCY, LOCAL_ONE by default) still
    answer; /readyz stays 200 and its body counts the nodes up. Taking every
    instance out of rotation for a cluster-wide fault would turn those quick,
    retryable 503s into connection errors and stop reads that still work.
    """
    try:
        await svc.store.ping()
        spec = svc.store.spec
        if spec is None:
            # The schema may have been applied since start-up; preparing blocks,
            # so it runs off the event loop.
            spec = await asyncio.to_thread(svc.store.load_schema)
    except RecoError as exc:
        return failure(503, exc.message)
    up, known = svc.store.nodes_up()
    return JSONResponse(
        {
            "status": "ready",
            "dimension": spec.dimension,
            "similarity": spec.similarity.value,
            "column": svc.store.column,
            "nodesUp": up,
            "nodes": known,
        }
    )


@router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
async def metrics() -> Response:
    body, media_type = exposition()
    return Response(body, media_type=media_type)

"""Liveness, readiness and metrics."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import JSONResponse, Response

from ...errors import RecoError
from ..deps import Services, services
from ..errors import failure

router = APIRouter()


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Cassandra answers and the vector schema is present",
    responses={503: {"description": "Not ready; the message says why"}},
)
async def readyz(svc: Annotated[Services, Depends(services)]) -> Response:
    try:
        await svc.store.ping()
        spec = svc.store.spec
        if spec is None:
            # The schema may have been applied since start-up; preparing blocks,
            # so it runs off the event loop.
            spec = await asyncio.to_thread(svc.store.load_schema)
    except RecoError as exc:
        return failure(503, exc.message)
    return JSONResponse(
        {
            "status": "ready",
            "dimension": spec.dimension,
            "similarity": spec.similarity.value,
            "column": svc.store.column,
        }
    )


@router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

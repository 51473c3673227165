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
    summary=(
        "Connected to Cassandra, a node answers, the vector schema is present, and (with an "
        "identity provider) its signing keys are loaded"
    ),
    responses={503: {"description": "Not ready; the message says why"}},
)
async def readyz(svc: Annotated[Services, Depends(services)]) -> Response:
    """Ready means this instance can serve: it is not about the cluster's quorum.

    With too few replicas for a quorum, ingest answers 503 with Retry-After
    while related videos (KV_RELATED_CONSISTENCY, LOCAL_ONE by default) still
    answer; /readyz stays 200 and its body counts the nodes up. Taking every
    instance out of rotation for a cluster-wide fault would turn those quick,
    retryable 503s into connection errors and stop reads that still work.

    With an identity provider (KV_JWT_JWKS_URL), an instance that has never
    loaded its keys is not ready: it could check no token. Once loaded, keys
    stay usable while the provider is down, so a failed refresh only shows in
    the body (``signingKeysProblem``), with the keys' age.
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
    keys = svc.verifier.key_status()
    if keys is not None and not keys.loaded:
        return failure(503, f"no signing keys from the identity provider yet: {keys.problem}")
    up, known = svc.store.nodes_up()
    body: dict[str, object] = {
        "status": "ready",
        "dimension": spec.dimension,
        "similarity": spec.similarity.value,
        "column": svc.store.column,
        "nodesUp": up,
        "nodes": known,
    }
    if keys is not None:
        body["signingKeys"] = keys.loaded
        body["signingKeysAgeS"] = round(keys.age_s or 0.0)
        if keys.problem is not None:
            body["signingKeysProblem"] = keys.problem
    return JSONResponse(body)


@router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
async def metrics() -> Response:
    body, media_type = exposition()
    return Response(body, media_type=media_type)

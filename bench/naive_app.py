"""The reference "naive" ingest endpoint, written the way most teams would.

FastAPI with a pydantic ``list[float]`` body, a sync handler (so FastAPI runs
it in its thread pool), an existence SELECT and then an UPDATE that lets the
driver serialise the vector element by element. Used by `make bench` only.
"""

from __future__ import annotations

import os
import socket
from uuid import UUID

import jwt
from cassandra.cluster import Cluster
from fastapi import Depends, FastAPI, Header, HTTPException
from pydantic import BaseModel

KEYSPACE = os.environ["KV_KEYSPACE"]
cluster = Cluster(
    ["127.0.0.1"], protocol_version=5, sockopts=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
)
session = cluster.connect(KEYSPACE)
exists = session.prepare("SELECT videoid FROM videos WHERE videoid = ?")
update = session.prepare("UPDATE videos SET content_features = ? WHERE videoid = ?")
SECRET = os.environ["KV_JWT_SECRET"]
app = FastAPI()


def creator(authorization: str = Header()) -> None:
    try:
        claims = jwt.decode(authorization.removeprefix("Bearer "), SECRET, algorithms=["HS256"])
    except jwt.InvalidTokenError as exc:
        raise HTTPException(401, str(exc)) from None
    if "creator" not in claims.get("roles", []):
        raise HTTPException(403, "creator role required")


class IngestBody(BaseModel):
    videoId: UUID
    vector: list[float]


@app.post("/api/v1/reco/ingest", status_code=202, dependencies=[Depends(creator)])
def ingest(body: IngestBody) -> dict[str, str]:
    if session.execute(exists, (body.videoId,)).one() is None:
        raise HTTPException(404, "video not found")
    session.execute(update, (body.vector, body.videoId))
    return {"videoId": str(body.videoId), "status": "accepted", "message": "ok"}

"""Response and request shapes, for the OpenAPI document.

The hot path does not go through these pydantic models: it decodes with
msgspec (``domain/ingest.py``) and encodes bytes directly. These describe the
same shapes for clients and docs.
"""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import BaseModel, Field


class IngestRequest(BaseModel):
    videoId: UUID = Field(description="An existing video (canonical 8-4-4-4-12 form)")
    vector: list[float] | str = Field(
        description="The embedding: exactly N finite numbers, N being the dimension of "
        "the live vector<float, N> column (1536 by default); |value| <= 1e17 as float32; "
        "not all-zero under cosine similarity; unit-length (L2 norm 1 ± 1e-3) under "
        "dot_product. Either a JSON array of numbers, or a base64 string of the N packed "
        "float32 values (4N bytes), little-endian unless byteOrder says big, as OpenAI's "
        'encoding_format: "base64" returns them'
    )
    byteOrder: Literal["little", "big"] | None = Field(
        default=None,
        description="Byte order of a base64 vector: little (the default) or big "
        "(Cassandra's own wire order). Not allowed with an array.",
    )


class IngestAccepted(BaseModel):
    videoId: UUID
    status: Literal["accepted"]
    message: str


class Failure(BaseModel):
    videoId: UUID | None = Field(
        default=None, description="Present when the request named a valid one"
    )
    status: Literal["failed"]
    message: str = Field(description="What was wrong, human-readable")


def failure_doc(description: str) -> dict[str, object]:
    return {"model": Failure, "description": description}


class RelatedItem(BaseModel):
    videoId: UUID
    title: str | None = Field(description="The video's name")
    thumbnailUrl: str | None = Field(default=None, description="Present when the video has one")
    score: float = Field(
        ge=0, le=1, description="Similarity under the index's function; higher is closer"
    )


class BatchRequest(BaseModel):
    items: list[IngestRequest] = Field(
        description="Up to KV_MAX_BATCH_ITEMS (500 by default) independent items, each "
        "exactly the body of POST /api/v1/reco/ingest; one vector per video"
    )
    writeTimestamp: int | None = Field(
        default=None,
        description="Optional write time in microseconds since the Unix epoch (CQL USING "
        "TIMESTAMP), never in the future: pass the time the embeddings were computed, and "
        "a slow backfill cannot overwrite a vector that a newer model wrote after it. "
        "Without it, the write is conditional (IF EXISTS) and the last write wins.",
    )


class BatchItemResult(BaseModel):
    videoId: UUID | None = Field(
        default=None, description="Present when the item named a valid one"
    )
    status: Literal["accepted", "failed"]
    code: int = Field(
        description="The status the single endpoint gives the same item: 202, 400, 404, 422 or "
        "503 (retry that item later); 500 only for a bug of ours in that item, which is logged"
    )
    message: str


class BatchResult(BaseModel):
    status: Literal["completed"]
    accepted: int
    failed: int
    items: list[BatchItemResult] = Field(description="One result per item, in order")

"""Related videos: what an ANN neighbour is, and how many may be asked for."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from ..errors import InvalidRequest

MIN_LIMIT, MAX_LIMIT, DEFAULT_LIMIT = 1, 100, 10


@dataclass(frozen=True, slots=True)
class RelatedVideo:
    video_id: uuid.UUID
    title: str | None
    thumbnail_url: str | None
    score: float  # the index's similarity function, in [0, 1]; higher is closer


def check_limit(limit: int) -> int:
    if not MIN_LIMIT <= limit <= MAX_LIMIT:
        raise InvalidRequest(f"limit must be between {MIN_LIMIT} and {MAX_LIMIT}, got {limit}")
    return limit

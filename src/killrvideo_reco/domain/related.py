"""Related videos: what an ANN neighbour is, and how many may be asked for."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import InvalidRequest

MIN_LIMIT, MAX_LIMIT, DEFAULT_LIMIT = 1, 100, 10
# Cassandra refuses an ANN query whose LIMIT is above 1,000.
MAX_CANDIDATES = 1000


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


def candidate_count(limit: int, overfetch: int) -> int:
    """How many neighbours to ask the index for, to answer ``limit`` of them.

    The on-disk index walks its graph with compressed vectors, so its top few
    are approximate; a wider search (the ANN LIMIT also sizes the search) and
    the exact score decide the final ``limit``. The one more is the video
    itself, which is always among its own nearest.
    """
    return min(limit * overfetch + 1, MAX_CANDIDATES)


def best_related(
    candidates: Iterable[RelatedVideo], *, video_id: uuid.UUID, limit: int
) -> list[RelatedVideo]:
    """The ``limit`` candidates with the highest exact score, never the video itself."""
    others = [c for c in candidates if c.video_id != video_id]
    others.sort(key=lambda c: c.score, reverse=True)  # stable: the index's order breaks ties
    return others[:limit]

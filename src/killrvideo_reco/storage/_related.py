"""The related-videos read: the video's own vector, then the ANN index around it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from ..config import Settings
from ..domain.related import RelatedVideo, best_related, candidate_count
from ..domain.vectors import VectorSpec
from ..errors import SchemaNotReady, VideoNotFound
from . import _driver, schema
from ._observe import StoreObserver, Unobserved, observed


@dataclass(frozen=True, slots=True)
class _Statements:
    read_vector: Any
    nearest: Any


class RelatedReader:
    """Nearest videos by the vector index of ``KV_VECTOR_COLUMN``."""

    def __init__(self, session: Any, settings: Settings) -> None:
        self._session = session
        self._keyspace = settings.keyspace
        self.column = settings.vector_column
        # The point read of the video's vector; LOCAL_ONE by default, so related
        # videos still answer when a write quorum is lost (docs/failure-testing.md).
        self._consistency = _driver.consistency(settings.related_consistency)
        self._overfetch = settings.related_overfetch
        self._statements: _Statements | None = None
        self.observer: StoreObserver = Unobserved()

    def prepare(self, spec: VectorSpec) -> None:
        """Prepare the reads; the column must carry its vector index."""
        table = f"{self._keyspace}.{schema.TABLE}"
        with _driver.translated():
            read_vector = self._session.prepare(
                f"SELECT {self.column} FROM {table} WHERE videoid = ?"
            )
            # The score is the index's own similarity function, in [0, 1].
            nearest = self._session.prepare(
                f"SELECT videoid, name, thumbnail_url, "
                f"similarity_{spec.similarity.value}({self.column}, ?) "
                f"FROM {table} ORDER BY {self.column} ANN OF ? LIMIT ?"
            )
        read_vector.consistency_level = self._consistency
        # ANN queries run at ONE/LOCAL_ONE only in Cassandra 5.0.
        nearest.consistency_level = _driver.consistency("LOCAL_ONE")
        self._statements = _Statements(read_vector, nearest)

    async def nearest(
        self, video_id: uuid.UUID, *, limit: int, overfetch: int | None = None
    ) -> list[RelatedVideo]:
        """The ``limit`` videos nearest to this one, best first, never itself.

        VideoNotFound for an unknown video; an empty list when it has no vector yet.
        ``overfetch`` overrides KV_RELATED_OVERFETCH (the recall benchmark compares).
        """
        statements = self._statements
        if statements is None:
            raise SchemaNotReady("the vector index is not loaded yet: run `kv-reco schema apply`")
        rows = await observed(
            self.observer,
            "read_vector",
            _driver.run_async(self._session, statements.read_vector.bind((video_id,))),
        )
        if not rows:
            raise VideoNotFound(f"video {video_id} does not exist")
        vector = rows[0][0]
        if vector is None:
            return []
        wanted = candidate_count(limit, overfetch or self._overfetch)
        found = await observed(
            self.observer,
            "nearest",
            _driver.run_async(self._session, statements.nearest.bind((vector, vector, wanted))),
        )
        return best_related(
            (
                RelatedVideo(video_id=vid, title=name, thumbnail_url=thumb, score=float(score))
                for vid, name, thumb, score in found
            ),
            video_id=video_id,
            limit=limit,
        )

"""Video rows for the command line and tests: insert, scan, read back."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

from ..config import Settings
from ..domain.videos import Video
from . import _driver, schema

# Murmur3Partitioner's token range; no key hashes to the minimum itself.
_MIN_TOKEN, _MAX_TOKEN = -(2**63), 2**63 - 1


class VideoRows:
    """The catalogue's rows of ``videos``, as the video service would write them."""

    def __init__(self, session: Any, settings: Settings) -> None:
        self._session = session
        self._table = f"{settings.keyspace}.{schema.TABLE}"
        self.column = settings.vector_column
        self._consistency = _driver.consistency(settings.consistency)

    def insert(self, videos: Iterable[Video], *, concurrency: int = 32) -> int:
        """Insert video rows (all columns but the vectors); return how many."""
        from cassandra.concurrent import execute_concurrent_with_args

        args = (
            (v.videoid, v.userid, v.name, v.description, set(v.tags) or None,
             v.thumbnail_url, v.added_date, v.preview_image_location)
            for v in videos
        )  # fmt: skip
        with _driver.translated():
            stmt = self._session.prepare(
                f"INSERT INTO {self._table} "
                "(videoid, userid, name, description, tags, thumbnail_url, added_date, "
                "preview_image_location) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            )
            stmt.consistency_level = self._consistency
            results = execute_concurrent_with_args(
                self._session, stmt, args, concurrency=concurrency, raise_on_first_error=True
            )
        return len(results)

    def scan(self, *, only_missing: bool = False, splits: int = 64) -> Iterator[Video]:
        """Every video (with a name), in token order; ``only_missing``: those without a vector.

        The ring is read in ``splits`` token ranges, each paged, so a catalogue of
        any size streams through in bounded memory and no single query runs long.
        writetime() of the vector is null when it was never written: the filter
        needs no index and reads no vector.
        """
        with _driver.translated():
            query = self._session.prepare(
                f"SELECT videoid, name, description, tags, thumbnail_url, "
                f"writetime({self.column}) FROM {self._table} "
                "WHERE token(videoid) > ? AND token(videoid) <= ?"
            )
        query.fetch_size = 500
        query.consistency_level = self._consistency
        step = (_MAX_TOKEN - _MIN_TOKEN) // splits
        bounds = [_MIN_TOKEN + i * step for i in range(splits)] + [_MAX_TOKEN]
        for low, high in itertools.pairwise(bounds):
            # Pages are fetched while the rows are iterated, inside the block.
            with _driver.translated():
                rows = self._session.execute(query, (low, high), timeout=schema.ADMIN_TIMEOUT_S)
                for videoid, name, description, tags, thumb, written in rows:
                    if (only_missing and written is not None) or not (name or "").strip():
                        continue  # a row without a name has nothing to embed
                    yield Video(
                        name=name,
                        description=description,
                        tags=frozenset(tags or ()),
                        thumbnail_url=thumb,
                        videoid=videoid,
                    )

    def copy_vectors(
        self, *, source: str, target: str, only_missing: bool = False, concurrency: int = 8
    ) -> int:
        """Copy every vector of column ``source`` into ``target``; return how many were written.

        Each copy keeps its source's write time (USING TIMESTAMP), so a newer
        vector written to ``target`` meanwhile (a second service on the new
        column) is never overwritten by an older copy, and a row deleted since
        it was read stays deleted: its tombstone is newer than the copy.
        ``only_missing`` skips rows whose ``target`` is already written: a
        second pass that catches up cheaply. The same vectors, so no model runs;
        the new column's index builds its graph with its own options.
        """
        from cassandra.concurrent import execute_concurrent_with_args

        with _driver.translated():
            query = self._session.prepare(
                f"SELECT videoid, {source}, writetime({source}), writetime({target}) "
                f"FROM {self._table} WHERE token(videoid) > ? AND token(videoid) <= ?"
            )
            write = self._session.prepare(
                f"UPDATE {self._table} USING TIMESTAMP ? SET {target} = ? WHERE videoid = ?"
            )
        query.fetch_size = 500
        query.consistency_level = write.consistency_level = self._consistency

        # One token range at a time, read whole before its writes start: the
        # concurrent writer pulls arguments from the driver's I/O thread, where
        # a paged read would block the very loop that must answer it.
        step = (_MAX_TOKEN - _MIN_TOKEN) // 64
        bounds = [_MIN_TOKEN + i * step for i in range(64)] + [_MAX_TOKEN]
        copied = 0
        for low, high in itertools.pairwise(bounds):
            with _driver.translated():
                rows = self._session.execute(query, (low, high), timeout=schema.ADMIN_TIMEOUT_S)
                copies = [
                    (written, vector, videoid)
                    for videoid, vector, written, target_written in rows
                    if vector is not None and not (only_missing and target_written is not None)
                ]
                execute_concurrent_with_args(
                    self._session, write, copies, concurrency=concurrency, raise_on_first_error=True
                )
            copied += len(copies)
        return copied

    def read(self, video_id: uuid.UUID) -> dict[str, Any] | None:
        """The whole row as a dict (vectors as lists of floats), or None."""
        with _driver.translated():
            result = self._session.execute(
                f"SELECT * FROM {self._table} WHERE videoid = %s",
                (video_id,),
                timeout=schema.ADMIN_TIMEOUT_S,
            )
            row = result.one()
        return dict(zip(result.column_names, row, strict=True)) if row else None

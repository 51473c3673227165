"""The storage boundary: one session, statements prepared once, our errors out.

Callers never see the driver. What a request awaits never blocks the event
loop: the ingest write goes over the fast path (``_fastpath``) when it is open,
else on the driver's I/O thread (``run_async``), as do the related-videos
reads. The synchronous methods serve the CLI, start-up and tests.
"""

from __future__ import annotations

import itertools
import logging
import struct
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from ..config import Settings
from ..domain.related import RelatedVideo, best_related, candidate_count
from ..domain.vectors import Similarity, VectorSpec
from ..domain.videos import Video
from ..errors import SchemaMismatch, SchemaNotReady, VideoNotFound
from . import _driver, _wire, schema
from ._codec import bind_packed_vectors
from ._fastpath import FallBack, FastPath, routing
from ._limiter import InFlightLimiter

log = logging.getLogger(__name__)


_BIGINT = struct.Struct(">q")
# Murmur3Partitioner's token range; no key hashes to the minimum itself.
_MIN_TOKEN, _MAX_TOKEN = -(2**63), 2**63 - 1


@dataclass(frozen=True, slots=True)
class _Prepared:
    statement: Any  # the driver's PreparedStatement
    encoder: _wire.ExecuteEncoder  # the same statement, for the fast path


@dataclass(frozen=True, slots=True)
class _Statements:
    set_features: _Prepared  # UPDATE … IF EXISTS
    set_features_at: _Prepared  # UPDATE … USING TIMESTAMP ?, after exists
    exists: _Prepared
    read_vector: Any
    nearest: Any
    spec: VectorSpec


class CassandraStore:
    def __init__(self, *, cluster: Any, session: Any, settings: Settings) -> None:
        self._cluster = cluster
        self._session = session
        self.keyspace = settings.keyspace
        self.column = settings.vector_column  # content_features unless mid-migration
        self._consistency = _driver.consistency(settings.consistency)
        self._serial = _driver.serial_consistency_for(settings.consistency)
        self._prepared: _Statements | None = None
        self._limiter = InFlightLimiter(
            limit=settings.max_in_flight, timeout_s=settings.queue_timeout_ms / 1000
        )
        self._settings = settings
        self._fast: FastPath | None = None
        # Which path each write took ("fast" or "driver"): visible in tests and metrics.
        self.writes_by_path: Counter[str] = Counter()

    @classmethod
    def open(cls, settings: Settings) -> CassandraStore:
        """Connect to the cluster; raise StorageUnavailable when no node answers."""
        cluster, session = _driver.connect(
            settings,
            local_dc=settings.local_dc,
            connect_timeout_s=settings.connect_timeout_s,
            request_timeout_s=settings.request_timeout_s,
        )
        return cls(cluster=cluster, session=session, settings=settings)

    def close(self) -> None:
        self._cluster.shutdown()

    async def open_fast_path(self) -> None:
        """Send ingest writes over lean connections owned by the running loop.

        Call it from the loop that will serve requests (the API lifespan does),
        and close_fast_path() before that loop ends. Without it, or with
        KV_FAST_PATH=false, every write goes through the driver.
        """
        if self._settings.fast_path and self._fast is None:
            self._fast = FastPath(
                port=self._settings.cassandra_port,
                connect_timeout_s=self._settings.connect_timeout_s,
                request_timeout_s=self._settings.request_timeout_s,
                replicas_for=routing(self._cluster, self.keyspace),
            )

    async def close_fast_path(self) -> None:
        fast, self._fast = self._fast, None
        if fast is not None:
            await fast.aclose()

    # -- schema ------------------------------------------------------------------

    def apply_schema(
        self,
        *,
        dimension: int,
        similarity: Similarity,
        replication_factor: int,
        column: str | None = None,
    ) -> VectorSpec:
        """Create what is missing for ``column`` (KV_VECTOR_COLUMN by default)."""
        return schema.apply_schema(
            self._session,
            keyspace=self.keyspace,
            dimension=dimension,
            similarity=similarity,
            replication_factor=replication_factor,
            column=column or self.column,
        )

    def drop_vector_column(self, column: str) -> None:
        try:
            schema.drop_vector_column(self._session, self.keyspace, column)
        except SchemaNotReady:
            raise
        except Exception as exc:
            raise _driver.translate(exc) from exc

    def load_schema(self) -> VectorSpec:
        """Read the live vector shape and prepare the write statements for it.

        Raises SchemaNotReady when the table or its index is missing.
        """
        try:
            spec = schema.read_vector_spec(self._session, self.keyspace, self.column)
        except (SchemaNotReady, SchemaMismatch):
            raise
        except Exception as exc:
            raise _driver.translate(exc) from exc
        self.prepare_writes(spec, indexed=True)
        return spec

    def prepare_writes(self, spec: VectorSpec, *, indexed: bool = False) -> None:
        """Prepare the statements for ``spec`` (load_schema does this).

        The ANN query for related videos needs the vector index, so it is only
        prepared when the caller knows the column is ``indexed``.
        """
        table = f"{self.keyspace}.{schema.TABLE}"
        # IF EXISTS makes the existence check and the write one atomic step (a
        # Paxos round): an unknown video gets 404 and no ghost row, even when a
        # delete races the ingest. A read-then-UPDATE could resurrect the row.
        set_features = self._prepare(
            f"UPDATE {table} SET {self.column} = ? WHERE videoid = ? IF EXISTS",
            binds_vector=True,
        )
        # Cassandra refuses USING TIMESTAMP on a conditional write, so an explicit
        # timestamp takes a read and a plain UPDATE. A delete racing them still
        # wins: the timestamp is never ahead of the clock (checked by the caller),
        # so the row's tombstone is newer than the cell and shadows it.
        set_features_at = self._prepare(
            f"UPDATE {table} USING TIMESTAMP ? SET {self.column} = ? WHERE videoid = ?",
            binds_vector=True,
        )
        exists = self._prepare(f"SELECT videoid FROM {table} WHERE videoid = ?")
        read_vector = self._session.prepare(
            f"SELECT {self.column} FROM {self.keyspace}.{schema.TABLE} WHERE videoid = ?"
        )
        read_vector.consistency_level = _driver.consistency(self._settings.related_consistency)
        # ANN queries run at ONE/LOCAL_ONE only in 5.0; the score is the index's
        # own similarity function, in [0, 1].
        nearest = None
        if indexed:
            nearest = self._session.prepare(
                f"SELECT videoid, name, thumbnail_url, "
                f"similarity_{spec.similarity.value}({self.column}, ?) "
                f"FROM {self.keyspace}.{schema.TABLE} "
                f"ORDER BY {self.column} ANN OF ? LIMIT ?"
            )
            nearest.consistency_level = _driver.consistency("LOCAL_ONE")
        self._prepared = _Statements(
            set_features=set_features,
            set_features_at=set_features_at,
            exists=exists,
            read_vector=read_vector,
            nearest=nearest,
            spec=spec,
        )

    def _prepare(self, query: str, *, binds_vector: bool = False) -> _Prepared:
        stmt = self._session.prepare(query)
        if binds_vector:
            bind_packed_vectors(stmt, column=self.column)
        stmt.consistency_level = self._consistency
        stmt.serial_consistency_level = self._serial
        stmt.is_idempotent = True  # same vector, same outcome: safe to retry
        encoder = _wire.ExecuteEncoder(
            query_id=stmt.query_id, consistency=self._consistency, serial_consistency=self._serial
        )
        return _Prepared(statement=stmt, encoder=encoder)

    @property
    def spec(self) -> VectorSpec | None:
        return self._prepared.spec if self._prepared else None

    # -- the hot path --------------------------------------------------------------

    def admission(self) -> InFlightLimiter:
        """The bound on writes in flight, for callers that admit a request early.

        The API takes a slot before it decodes a body, so that a request it must
        refuse (503) costs next to nothing; it then writes with ``admitted=True``.
        """
        return self._limiter

    async def set_content_features(
        self,
        video_id: uuid.UUID,
        vector: bytes,
        *,
        admitted: bool = False,
        timestamp_us: int | None = None,
    ) -> None:
        """Write only ``content_features`` of an existing video; VideoNotFound otherwise.

        Waits for a slot among KV_MAX_IN_FLIGHT unless the caller holds one
        (``admitted``); StorageUnavailable (kind "Overloaded") if none frees in time.
        ``timestamp_us`` writes the cell with that timestamp (CQL ``USING
        TIMESTAMP``), so that a newer vector already stored is kept; it must not be
        ahead of the clock (domain.ingest.check_write_timestamp).
        """
        prepared = self._prepared
        if prepared is None:
            raise SchemaNotReady("the schema is not loaded yet: run `kv-reco schema apply`")
        if admitted:
            found = await self._write(prepared, video_id, vector, timestamp_us)
        else:
            async with self._limiter:
                found = await self._write(prepared, video_id, vector, timestamp_us)
        if not found:
            raise VideoNotFound(f"video {video_id} does not exist")

    async def _write(
        self, prepared: _Statements, video_id: uuid.UUID, vector: bytes, timestamp_us: int | None
    ) -> bool:
        """Write the vector; True when the video existed."""
        key = video_id.bytes
        if timestamp_us is None:
            return await self._run(prepared.set_features, (vector, key), (vector, video_id), key)
        if not await self._run(prepared.exists, (key,), (video_id,), key):
            return False
        stamp = _BIGINT.pack(timestamp_us)
        await self._run(
            prepared.set_features_at, (stamp, vector, key), (timestamp_us, vector, video_id), key
        )
        return True

    async def _run(
        self,
        prepared: _Prepared,
        wire_values: tuple[bytes, ...],
        values: tuple[Any, ...],
        key: bytes,
    ) -> bool:
        """Execute over the fast path, else the driver; is the first cell there and true?

        That is ``[applied]`` for a conditional write, and "a row" for a read.
        """
        if self._fast is not None:
            try:
                cell = await self._fast.execute(prepared.encoder, wire_values, key)
            except FallBack:
                pass
            else:
                self.writes_by_path["fast"] += 1
                return cell is not None and cell != b"\x00"
        self.writes_by_path["driver"] += 1
        rows = await _driver.run_async(self._session, prepared.statement.bind(values))
        return bool(rows and rows[0][0])

    async def related(
        self, video_id: uuid.UUID, *, limit: int, overfetch: int | None = None
    ) -> list[RelatedVideo]:
        """The ``limit`` videos nearest to this one, best first, never itself.

        VideoNotFound for an unknown video; an empty list when it has no vector yet.
        ``overfetch`` overrides KV_RELATED_OVERFETCH (the recall benchmark compares).
        """
        prepared = self._prepared
        if prepared is None or prepared.nearest is None:
            raise SchemaNotReady("the vector index is not loaded yet: run `kv-reco schema apply`")
        rows = await _driver.run_async(self._session, prepared.read_vector.bind((video_id,)))
        if not rows:
            raise VideoNotFound(f"video {video_id} does not exist")
        vector = rows[0][0]
        if vector is None:
            return []
        wanted = candidate_count(limit, overfetch or self._settings.related_overfetch)
        found = await _driver.run_async(
            self._session, prepared.nearest.bind((vector, vector, wanted))
        )
        return best_related(
            (
                RelatedVideo(video_id=vid, title=name, thumbnail_url=thumb, score=float(score))
                for vid, name, thumb, score in found
            ),
            video_id=video_id,
            limit=limit,
        )

    async def ping(self) -> None:
        await _driver.run_async(self._session, "SELECT release_version FROM system.local")

    def nodes_up(self) -> tuple[int, int]:
        """(nodes the driver sees up, nodes it knows): for /readyz, no query sent."""
        hosts = self._cluster.metadata.all_hosts()
        return sum(1 for h in hosts if h.is_up), len(hosts)

    # -- videos (CLI, tests) ---------------------------------------------------------

    def insert_videos(self, videos: Iterable[Video], *, concurrency: int = 32) -> int:
        """Insert video rows (all columns but content_features); return how many."""
        from cassandra.concurrent import execute_concurrent_with_args

        stmt = self._session.prepare(
            f"INSERT INTO {self.keyspace}.{schema.TABLE} "
            "(videoid, userid, name, description, tags, thumbnail_url, added_date, "
            "preview_image_location) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        )
        stmt.consistency_level = self._consistency
        args = (
            (v.videoid, v.userid, v.name, v.description, set(v.tags) or None,
             v.thumbnail_url, v.added_date, v.preview_image_location)
            for v in videos
        )  # fmt: skip
        try:
            results = execute_concurrent_with_args(
                self._session, stmt, args, concurrency=concurrency, raise_on_first_error=True
            )
        except Exception as exc:
            raise _driver.translate(exc) from exc
        return len(results)

    def scan_videos(self, *, only_missing: bool = False, splits: int = 64) -> Iterator[Video]:
        """Every video (with a name), in token order; ``only_missing``: those without a vector.

        The ring is read in ``splits`` token ranges, each paged, so a catalogue of
        any size streams through in bounded memory and no single query runs long.
        writetime() of the vector is null when it was never written: the filter
        needs no index and reads no vector.
        """
        query = self._session.prepare(
            f"SELECT videoid, name, description, tags, thumbnail_url, writetime({self.column}) "
            f"FROM {self.keyspace}.{schema.TABLE} "
            "WHERE token(videoid) > ? AND token(videoid) <= ?"
        )
        query.fetch_size = 500
        query.consistency_level = self._consistency
        step = (_MAX_TOKEN - _MIN_TOKEN) // splits
        bounds = [_MIN_TOKEN + i * step for i in range(splits)] + [_MAX_TOKEN]
        for low, high in itertools.pairwise(bounds):
            try:
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
            except Exception as exc:
                raise _driver.translate(exc) from exc

    def read_video(self, video_id: uuid.UUID) -> dict[str, Any] | None:
        """The whole row as a dict (content_features as floats), or None."""
        try:
            result = self._session.execute(
                f"SELECT * FROM {self.keyspace}.{schema.TABLE} WHERE videoid = %s",
                (video_id,),
                timeout=schema.ADMIN_TIMEOUT_S,
            )
        except Exception as exc:
            raise _driver.translate(exc) from exc
        row = result.one()
        return dict(zip(result.column_names, row, strict=True)) if row else None

    def execute(self, cql: str, parameters: Any = None) -> list[tuple[Any, ...]]:
        """Run one CQL statement synchronously (CLI and tests)."""
        try:
            return list(self._session.execute(cql, parameters, timeout=schema.ADMIN_TIMEOUT_S))
        except Exception as exc:
            raise _driver.translate(exc) from exc

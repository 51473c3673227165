"""The ingest write: only the vector column of an existing video, bounded in flight."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from ..config import Settings
from ..domain.vectors import VectorSpec
from ..errors import SchemaNotReady, StorageUnavailable, VideoNotFound
from . import _driver, schema
from ._codec import bind_packed_vectors
from ._limiter import FixedLimit, Gradient2Limit, InFlightLimiter, Limit
from ._observe import StoreObserver, Unobserved, observed


def limit_policy(settings: Settings) -> Limit:
    """KV_LIMIT_MODE's bound on writes in flight, one per process (per writer)."""
    if settings.limit_mode == "fixed":
        return FixedLimit(settings.max_in_flight)
    return Gradient2Limit(
        initial=settings.max_in_flight,
        minimum=settings.adaptive_min_in_flight,
        maximum=settings.adaptive_max_in_flight,
    )


@dataclass(frozen=True, slots=True)
class _Statements:
    set_features: Any  # UPDATE … IF EXISTS
    set_features_at: Any  # UPDATE … USING TIMESTAMP ?, after exists
    exists: Any
    spec: VectorSpec


class VectorWriter:
    """Writes ``KV_VECTOR_COLUMN`` of existing videos, through the driver's session."""

    def __init__(self, session: Any, settings: Settings) -> None:
        self._session = session
        self._table = f"{settings.keyspace}.{schema.TABLE}"
        self.column = settings.vector_column
        self._consistency = _driver.consistency(settings.consistency)
        self._serial = _driver.serial_consistency_for(settings.consistency)
        self._statements: _Statements | None = None
        self._limiter = InFlightLimiter(
            limit=limit_policy(settings), timeout_s=settings.queue_timeout_ms / 1000
        )
        self._observer: StoreObserver = Unobserved()

    def observe(self, observer: StoreObserver) -> None:
        """Report statement times, failures and slot waits to ``observer`` from now on."""
        self._observer = observer
        self._limiter.on_wait = observer.slot_waited

    @property
    def in_flight(self) -> int:
        """Ingest writes holding a slot now."""
        return self._limiter.in_use

    @property
    def waiting(self) -> int:
        """Ingest writes waiting for a slot now."""
        return self._limiter.waiting

    @property
    def limit(self) -> int:
        """Ingest writes allowed in flight now (KV_MAX_IN_FLIGHT when fixed)."""
        return self._limiter.limit

    @property
    def latency_floor_s(self) -> float | None:
        """The adaptive limit's measured write latency floor; None when fixed or unmeasured."""
        return getattr(self._limiter.policy, "floor_s", None)

    def prepare(self, spec: VectorSpec) -> None:
        """Prepare the writes for the live vector shape ``spec``."""
        # IF EXISTS makes the existence check and the write one atomic step (a
        # Paxos round): an unknown video gets 404 and no ghost row, even when a
        # delete races the ingest. A read-then-UPDATE could resurrect the row.
        set_features = self._prepare(
            f"UPDATE {self._table} SET {self.column} = ? WHERE videoid = ? IF EXISTS",
            binds_vector=True,
        )
        # Cassandra refuses USING TIMESTAMP on a conditional write, so an explicit
        # timestamp takes a read and a plain UPDATE. A delete racing them still
        # wins: the timestamp is never ahead of the clock (checked by the caller),
        # so the row's tombstone is newer than the cell and shadows it.
        set_features_at = self._prepare(
            f"UPDATE {self._table} USING TIMESTAMP ? SET {self.column} = ? WHERE videoid = ?",
            binds_vector=True,
        )
        exists = self._prepare(f"SELECT videoid FROM {self._table} WHERE videoid = ?")
        self._statements = _Statements(set_features, set_features_at, exists, spec)

    def _prepare(self, query: str, *, binds_vector: bool = False) -> Any:
        with _driver.translated():
            stmt = self._session.prepare(query)
        if binds_vector:
            bind_packed_vectors(stmt, column=self.column)
        stmt.consistency_level = self._consistency
        stmt.serial_consistency_level = self._serial
        stmt.is_idempotent = True  # same vector, same outcome: safe to retry
        return stmt

    @property
    def spec(self) -> VectorSpec | None:
        return self._statements.spec if self._statements else None

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
        """Write only the vector column of an existing video; VideoNotFound otherwise.

        ``vector`` is the packed big-endian float32 of domain.vectors.pack_vector.
        Waits for a slot among KV_MAX_IN_FLIGHT unless the caller holds one
        (``admitted``); StorageUnavailable (kind "Overloaded") if none frees in time.
        ``timestamp_us`` writes the cell with that timestamp (CQL ``USING
        TIMESTAMP``), so that a newer vector already stored is kept; it must not be
        ahead of the clock (domain.ingest.check_write_timestamp).
        """
        statements = self._statements
        if statements is None:
            raise SchemaNotReady("the schema is not loaded yet: run `kv-reco schema apply`")
        if admitted:
            found = await self._write(statements, video_id, vector, timestamp_us)
        else:
            async with self._limiter:
                found = await self._write(statements, video_id, vector, timestamp_us)
        if not found:
            raise VideoNotFound(f"video {video_id} does not exist")

    async def _write(
        self, statements: _Statements, video_id: uuid.UUID, vector: bytes, timestamp_us: int | None
    ) -> bool:
        """Write the vector; True when the video existed."""
        if timestamp_us is None:
            rows = await self._run("set_features", statements.set_features, (vector, video_id))
            return bool(rows[0][0])  # [applied]
        if not await self._run("exists", statements.exists, (video_id,)):
            return False
        await self._run(
            "set_features_at", statements.set_features_at, (timestamp_us, vector, video_id)
        )
        return True

    async def _run(self, name: str, statement: Any, values: tuple[Any, ...]) -> Any:
        pending = _driver.run_async(self._session, statement.bind(values))
        started = time.perf_counter()
        try:
            result = await observed(self._observer, name, pending)
        except StorageUnavailable:
            # A timeout, an unavailable replica, no host: the adaptive limit backs off.
            self._limiter.dropped()
            raise
        # Every write statement holds a slot (the API's or ours): its latency
        # is what the adaptive limit follows.
        self._limiter.sample(time.perf_counter() - started)
        return result

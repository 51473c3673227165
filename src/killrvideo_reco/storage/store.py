"""The storage boundary: one driver session, opened once, and the parts that use it.

Callers never see the driver. Each kind of query has its home, all sharing the
session that ``CassandraStore.open`` connects::

    store.schema   SchemaAdmin    apply, read and drop the schema; raw DDL
    store.writer   VectorWriter   the ingest write, bounded in flight
    store.related  RelatedReader  the related-videos read through the ANN index
    store.videos   VideoRows      video rows for the CLI and tests

What a request awaits never blocks the event loop: statements run on the
driver's I/O thread and resolve asyncio futures (``_driver.run_async``). The
synchronous methods serve the CLI, start-up and tests. Only driver errors are
translated (StorageUnavailable, InvalidRequest); anything else propagates.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self

from ..config import Settings
from ..domain.vectors import VectorSpec
from . import _driver
from ._observe import StoreObserver
from ._related import RelatedReader
from ._videos import VideoRows
from ._writer import VectorWriter
from .schema import SchemaAdmin


class CassandraStore:
    def __init__(self, *, cluster: Any, session: Any, settings: Settings) -> None:
        self._cluster = cluster
        self._session = session
        self.keyspace = settings.keyspace
        self.column = settings.vector_column  # content_features unless mid-migration
        self.schema = SchemaAdmin(session, settings)
        self.writer = VectorWriter(session, settings)
        self.related = RelatedReader(session, settings)
        self.videos = VideoRows(session, settings)

    @classmethod
    def open(cls, settings: Settings) -> CassandraStore:
        """Connect to the cluster; raise StorageUnavailable when no node answers."""
        cluster, session = _driver.connect(settings)
        return cls(cluster=cluster, session=session, settings=settings)

    def close(self) -> None:
        self._cluster.shutdown()

    def observe(self, observer: StoreObserver) -> None:
        """Report statement times, failures and slot waits to ``observer`` from now on."""
        self.writer.observe(observer)
        self.related.observer = observer

    @property
    def in_flight(self) -> int:
        """Ingest writes holding a slot now."""
        return self.writer.in_flight

    @property
    def waiting(self) -> int:
        """Ingest writes waiting for a slot now."""
        return self.writer.waiting

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def load_schema(self) -> VectorSpec:
        """Read the live vector shape and prepare the writes and reads for it.

        Raises SchemaNotReady when the table or its index is missing.
        """
        spec = self.schema.vector_spec()
        self.writer.prepare(spec)
        self.related.prepare(spec)
        return spec

    @property
    def spec(self) -> VectorSpec | None:
        """The vector shape the writes are prepared for; None before load_schema()."""
        return self.writer.spec

    async def ping(self) -> None:
        await _driver.run_async(self._session, "SELECT release_version FROM system.local")

    def nodes_up(self) -> tuple[int, int]:
        """(nodes the driver sees up, nodes it knows): for /readyz, no query sent."""
        hosts = self._cluster.metadata.all_hosts()
        return sum(1 for h in hosts if h.is_up), len(hosts)

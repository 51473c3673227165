"""The killrvideo schema: apply it idempotently, read its live vector shape."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ..config import Settings
from ..domain.vectors import (
    STOCK_BEAM_WIDTH,
    STOCK_GRAPH,
    STOCK_MAX_CONNECTIONS,
    GraphOptions,
    Similarity,
    VectorSpec,
)
from ..errors import GraphOptionsRefused, SchemaMismatch, SchemaNotReady
from ._driver import CqlInvalidRequest, translated

TABLE = "videos"
VECTOR_COLUMN = "content_features"  # the spec's column; KV_VECTOR_COLUMN names another
# DDL waits for schema agreement, and start-up should not fail on a slow first
# read: administrative statements get a longer timeout than ingest requests.
ADMIN_TIMEOUT_S = 30.0
_VECTOR_TYPE = re.compile(r"^vector<float,\s*(\d+)>$")
# The JVM property that lets CREATE INDEX set graph options, and the marker of
# Cassandra's refusal ("... cannot be set without enabling
# SAI_VECTOR_ALLOW_CUSTOM_PARAMETERS").
CUSTOM_OPTIONS_PROPERTY = "cassandra.sai.vector.allow_custom_parameters"
_REFUSED_MARKER = "SAI_VECTOR_ALLOW_CUSTOM_PARAMETERS"


def index_name(column: str) -> str:
    """videos_content_features_idx for the spec's column, and likewise for others."""
    return f"{TABLE}_{column}_idx"


# Every compaction builds the vector index's graph again, so the strategy sets
# much of a bulk load's cost. Over 100,000 vectors with the 100/8 graph, UCS
# cost the node 16.71 ms of CPU per vector against STCS's 18.51, and its
# sharded output kept recall@10 at 0.964 against 0.913 (overfetch 3;
# `make bench-index`, docs/index-options.md). Only a new table gets it: an
# existing table keeps the strategy its operator gave it.
COMPACTION = "UnifiedCompactionStrategy"


def _table_ddl(keyspace: str, column: str, dimension: int) -> str:
    return f"""
        CREATE TABLE IF NOT EXISTS {keyspace}.{TABLE} (
            videoid uuid PRIMARY KEY,
            userid uuid,
            name text,
            description text,
            tags set<text>,
            thumbnail_url text,
            added_date timestamp,
            preview_image_location text,
            {column} vector<float, {dimension}>
        ) WITH compaction = {{'class': '{COMPACTION}'}}"""


def _index_ddl(keyspace: str, column: str, similarity: Similarity, graph: GraphOptions) -> str:
    # USING 'StorageAttachedIndex' explicitly: the default custom index is still
    # the legacy one, which cannot serve ANN queries.
    options = {"similarity_function": similarity.cql, **graph.cql_options()}
    body = ", ".join(f"'{key}': '{value}'" for key, value in options.items())
    return (
        f"CREATE CUSTOM INDEX IF NOT EXISTS {index_name(column)} ON {keyspace}.{TABLE}({column}) "
        f"USING 'StorageAttachedIndex' WITH OPTIONS = {{{body}}}"
    )


def _column_dimension(session: Any, keyspace: str, column: str) -> int | None:
    row = session.execute(
        "SELECT type FROM system_schema.columns "
        "WHERE keyspace_name = %s AND table_name = %s AND column_name = %s",
        (keyspace, TABLE, column),
        timeout=ADMIN_TIMEOUT_S,
    ).one()
    if row is None:
        return None
    match = _VECTOR_TYPE.match(row[0])
    if match is None:
        raise SchemaMismatch(f"{keyspace}.{TABLE}.{column} has type {row[0]}, not a vector")
    return int(match.group(1))


def _index_options(session: Any, keyspace: str, column: str) -> dict[str, str] | None:
    row = session.execute(
        "SELECT options FROM system_schema.indexes "
        "WHERE keyspace_name = %s AND table_name = %s AND index_name = %s",
        (keyspace, TABLE, index_name(column)),
        timeout=ADMIN_TIMEOUT_S,
    ).one()
    return None if row is None else dict(row[0])


def _similarity_of(options: dict[str, str]) -> Similarity:
    # SAI's default similarity is COSINE when the option is absent.
    return Similarity(options.get("similarity_function", "COSINE").lower())


def _graph_of(options: dict[str, str]) -> GraphOptions:
    # Absent options mean Cassandra's defaults (IndexWriterConfig.fromOptions).
    return GraphOptions(
        beam_width=int(options.get("construction_beam_width", STOCK_BEAM_WIDTH)),
        max_connections=int(options.get("maximum_node_connections", STOCK_MAX_CONNECTIONS)),
    )


def read_vector_spec(session: Any, keyspace: str, column: str = VECTOR_COLUMN) -> VectorSpec:
    """The dimension, similarity and graph options of the live schema; SchemaNotReady if absent."""
    dimension = _column_dimension(session, keyspace, column)
    options = _index_options(session, keyspace, column) if dimension is not None else None
    if dimension is None or options is None:
        raise SchemaNotReady(
            f"{keyspace}.{TABLE}.{column} or its index {index_name(column)} does not exist: "
            "run `kv-reco schema apply`"
        )
    return VectorSpec(
        dimension=dimension, similarity=_similarity_of(options), graph=_graph_of(options)
    )


def _create_index(
    session: Any,
    *,
    keyspace: str,
    column: str,
    similarity: Similarity,
    graph: GraphOptions,
    graph_explicit: bool,
    note: Callable[[str], None],
) -> GraphOptions:
    """CREATE INDEX with ``graph``; on a cluster that refuses it, stock or stop.

    Returns the graph options the index was created with.

    Options left at their defaults give way to the stock graph, with a note;
    options an operator set explicitly are never silently replaced.
    """
    try:
        session.execute(_index_ddl(keyspace, column, similarity, graph), timeout=ADMIN_TIMEOUT_S)
        return graph
    except CqlInvalidRequest as exc:
        if _REFUSED_MARKER not in str(exc):
            raise
    refused = (
        f"this cluster refuses custom SAI graph options ({graph}): its JVMs run without "
        f"-D{CUSTOM_OPTIONS_PROPERTY}=true"
    )
    if graph_explicit:
        raise GraphOptionsRefused(
            f"{refused}; KV_INDEX_BEAM_WIDTH / KV_INDEX_MAX_CONNECTIONS are set, so no index "
            f"was created: enable the property, or unset them to accept the stock {STOCK_GRAPH}"
        )
    session.execute(_index_ddl(keyspace, column, similarity, STOCK_GRAPH), timeout=ADMIN_TIMEOUT_S)
    note(f"{refused}; created {index_name(column)} with the stock {STOCK_GRAPH} instead")
    return STOCK_GRAPH


def apply_schema(
    session: Any,
    *,
    keyspace: str,
    dimension: int,
    similarity: Similarity,
    replication_factor: int,
    column: str = VECTOR_COLUMN,
    graph: GraphOptions = STOCK_GRAPH,
    graph_explicit: bool = False,
    note: Callable[[str], None] = lambda _: None,
) -> VectorSpec:
    """Create keyspace, table and index if missing; refuse to silently differ.

    An existing table with another dimension, or an index with another
    similarity, is reported as SchemaMismatch: changing either is a migration
    of every stored vector, not something `apply` may do behind your back.
    An existing index with other graph options is kept: ``note`` says so, or
    SchemaMismatch when ``graph_explicit`` (the operator set them). Changing
    them is a new column's migration (docs/index-options.md).
    """
    local_dc = session.execute(
        "SELECT data_center FROM system.local", timeout=ADMIN_TIMEOUT_S
    ).one()[0]
    session.execute(
        f"CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = "
        f"{{'class': 'NetworkTopologyStrategy', '{local_dc}': {replication_factor}}}",
        timeout=ADMIN_TIMEOUT_S,
    )
    session.execute(_table_ddl(keyspace, column, dimension), timeout=ADMIN_TIMEOUT_S)
    existing = _column_dimension(session, keyspace, column)
    if existing is None:  # the table predates this column: a model migration adds it
        try:
            session.execute(
                f"ALTER TABLE {keyspace}.{TABLE} ADD {column} vector<float, {dimension}>",
                timeout=ADMIN_TIMEOUT_S,
            )
        except CqlInvalidRequest as exc:  # e.g. a dropped column of another dimension
            raise SchemaMismatch(f"cannot add {keyspace}.{TABLE}.{column}: {exc}") from None
        existing = dimension
    if existing != dimension:
        raise SchemaMismatch(
            f"{keyspace}.{TABLE}.{column} already exists as vector<float, {existing}>, "
            f"not vector<float, {dimension}>; changing the dimension means "
            "re-embedding every video into a new column (see docs/pipelines/migration.md)"
        )
    # CREATE INDEX IF NOT EXISTS accepts other options for an existing index in
    # silence (measured): the live index is read back and compared instead.
    if _index_options(session, keyspace, column) is None:
        graph = _create_index(
            session,
            keyspace=keyspace,
            column=column,
            similarity=similarity,
            graph=graph,
            graph_explicit=graph_explicit,
            note=note,
        )
    live = read_vector_spec(session, keyspace, column)
    if live.similarity is not similarity:
        raise SchemaMismatch(
            f"index {keyspace}.{index_name(column)} already uses "
            f"{live.similarity.value} similarity, not {similarity.value}; "
            "changing it means dropping the index and "
            "reindexing every vector"
        )
    if live.graph != graph:
        differs = (
            f"index {keyspace}.{index_name(column)} exists with {live.graph}, not {graph}; "
            "an index's graph options cannot change in place: fill a new column "
            "(docs/index-options.md, `kv-reco schema copy-vectors`)"
        )
        if graph_explicit:
            raise SchemaMismatch(differs)
        note(differs)
    return live


def drop_vector_column(session: Any, keyspace: str, column: str) -> None:
    """Drop a vector column and its index (the last step of a model migration).

    Cassandra never lets the name come back with another dimension: re-adding a
    dropped column of an incompatible type is refused.
    """
    if _column_dimension(session, keyspace, column) is None:
        raise SchemaNotReady(f"{keyspace}.{TABLE}.{column} does not exist")
    session.execute(
        f"DROP INDEX IF EXISTS {keyspace}.{index_name(column)}", timeout=ADMIN_TIMEOUT_S
    )
    session.execute(f"ALTER TABLE {keyspace}.{TABLE} DROP {column}", timeout=ADMIN_TIMEOUT_S)


class SchemaAdmin:
    """Schema administration for one keyspace: apply, read, drop, and raw DDL."""

    def __init__(self, session: Any, settings: Settings) -> None:
        self._session = session
        self.keyspace = settings.keyspace
        self.column = settings.vector_column
        self._graph = settings.index_graph
        self._graph_explicit = settings.index_graph_explicit

    def apply(
        self,
        *,
        dimension: int,
        similarity: Similarity,
        replication_factor: int,
        column: str | None = None,
        graph: GraphOptions | None = None,
        graph_explicit: bool | None = None,
        note: Callable[[str], None] = lambda _: None,
    ) -> VectorSpec:
        """Create what is missing for ``column`` (KV_VECTOR_COLUMN by default).

        The index gets ``graph`` (the KV_INDEX_* settings by default); see
        apply_schema for what happens when the cluster refuses them.
        """
        with translated():
            return apply_schema(
                self._session,
                keyspace=self.keyspace,
                dimension=dimension,
                similarity=similarity,
                replication_factor=replication_factor,
                column=column or self.column,
                graph=self._graph if graph is None else graph,
                graph_explicit=(self._graph_explicit if graph_explicit is None else graph_explicit),
                note=note,
            )

    def vector_spec(self) -> VectorSpec:
        """The live shape of the vector column; SchemaNotReady without it or its index."""
        return self.vector_spec_of(self.column)

    def vector_spec_of(self, column: str) -> VectorSpec:
        """The live shape of another vector column (a migration's source or target)."""
        with translated():
            return read_vector_spec(self._session, self.keyspace, column)

    def drop_vector_column(self, column: str) -> None:
        with translated():
            drop_vector_column(self._session, self.keyspace, column)

    def execute(self, cql: str, parameters: Any = None) -> list[tuple[Any, ...]]:
        """Run one administrative CQL statement synchronously (CLI, tests, benchmarks)."""
        with translated():
            return list(self._session.execute(cql, parameters, timeout=ADMIN_TIMEOUT_S))

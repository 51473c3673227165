"""The killrvideo schema: apply it idempotently, read its live vector shape."""

from __future__ import annotations

import re
from typing import Any

from ..config import Settings
from ..domain.vectors import Similarity, VectorSpec
from ..errors import SchemaMismatch, SchemaNotReady
from ._driver import CqlInvalidRequest, translated

TABLE = "videos"
VECTOR_COLUMN = "content_features"  # the spec's column; KV_VECTOR_COLUMN names another
# DDL waits for schema agreement, and start-up should not fail on a slow first
# read: administrative statements get a longer timeout than ingest requests.
ADMIN_TIMEOUT_S = 30.0
_VECTOR_TYPE = re.compile(r"^vector<float,\s*(\d+)>$")


def index_name(column: str) -> str:
    """videos_content_features_idx for the spec's column, and likewise for others."""
    return f"{TABLE}_{column}_idx"


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
        )"""


def _index_ddl(keyspace: str, column: str, similarity: Similarity) -> str:
    # USING 'StorageAttachedIndex' explicitly: the default custom index is still
    # the legacy one, which cannot serve ANN queries.
    return (
        f"CREATE CUSTOM INDEX IF NOT EXISTS {index_name(column)} ON {keyspace}.{TABLE}({column}) "
        f"USING 'StorageAttachedIndex' "
        f"WITH OPTIONS = {{'similarity_function': '{similarity.cql}'}}"
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


def _index_similarity(session: Any, keyspace: str, column: str) -> Similarity | None:
    row = session.execute(
        "SELECT options FROM system_schema.indexes "
        "WHERE keyspace_name = %s AND table_name = %s AND index_name = %s",
        (keyspace, TABLE, index_name(column)),
        timeout=ADMIN_TIMEOUT_S,
    ).one()
    if row is None:
        return None
    # SAI's default similarity is COSINE when the option is absent.
    return Similarity(row[0].get("similarity_function", "COSINE").lower())


def read_vector_spec(session: Any, keyspace: str, column: str = VECTOR_COLUMN) -> VectorSpec:
    """The dimension and similarity of the live schema; SchemaNotReady if absent."""
    dimension = _column_dimension(session, keyspace, column)
    similarity = _index_similarity(session, keyspace, column) if dimension is not None else None
    if dimension is None or similarity is None:
        raise SchemaNotReady(
            f"{keyspace}.{TABLE}.{column} or its index {index_name(column)} does not exist: "
            "run `kv-reco schema apply`"
        )
    return VectorSpec(dimension=dimension, similarity=similarity)


def apply_schema(
    session: Any,
    *,
    keyspace: str,
    dimension: int,
    similarity: Similarity,
    replication_factor: int,
    column: str = VECTOR_COLUMN,
) -> VectorSpec:
    """Create keyspace, table and index if missing; refuse to silently differ.

    An existing table with another dimension, or an index with another
    similarity, is reported as SchemaMismatch: changing either is a migration
    of every stored vector, not something `apply` may do behind your back.
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
    session.execute(_index_ddl(keyspace, column, similarity), timeout=ADMIN_TIMEOUT_S)
    live = read_vector_spec(session, keyspace, column)
    if live.similarity is not similarity:
        raise SchemaMismatch(
            f"index {keyspace}.{index_name(column)} already uses "
            f"{live.similarity.value} similarity, not {similarity.value}; "
            "changing it means dropping the index and "
            "reindexing every vector"
        )
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

    def apply(
        self,
        *,
        dimension: int,
        similarity: Similarity,
        replication_factor: int,
        column: str | None = None,
    ) -> VectorSpec:
        """Create what is missing for ``column`` (KV_VECTOR_COLUMN by default)."""
        with translated():
            return apply_schema(
                self._session,
                keyspace=self.keyspace,
                dimension=dimension,
                similarity=similarity,
                replication_factor=replication_factor,
                column=column or self.column,
            )

    def vector_spec(self) -> VectorSpec:
        """The live shape of the vector column; SchemaNotReady without it or its index."""
        with translated():
            return read_vector_spec(self._session, self.keyspace, self.column)

    def drop_vector_column(self, column: str) -> None:
        with translated():
            drop_vector_column(self._session, self.keyspace, column)

    def execute(self, cql: str, parameters: Any = None) -> list[tuple[Any, ...]]:
        """Run one administrative CQL statement synchronously (CLI, tests, benchmarks)."""
        with translated():
            return list(self._session.execute(cql, parameters, timeout=ADMIN_TIMEOUT_S))

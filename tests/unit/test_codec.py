"""The packed-vector binding relies on the pinned driver's bind path: guard it here."""

from __future__ import annotations

import struct
import uuid

import pytest
from cassandra.cqltypes import UUIDType, VectorType, lookup_casstype
from cassandra.protocol import ColumnMetadata
from cassandra.query import PreparedStatement

from killrvideo_reco.storage._codec import bind_packed_vectors, packed_vector_type

DIM = 3
VECTOR = lookup_casstype(
    f"org.apache.cassandra.db.marshal.VectorType(org.apache.cassandra.db.marshal.FloatType, {DIM})"
)


def prepared() -> PreparedStatement:
    columns = [
        ColumnMetadata("ks", "videos", "content_features", VECTOR),
        ColumnMetadata("ks", "videos", "videoid", UUIDType),
    ]
    return PreparedStatement(
        column_metadata=columns,
        query_id=b"\x01" * 16,
        routing_key_indexes=[1],
        query="UPDATE ks.videos SET content_features = ? WHERE videoid = ?",
        keyspace="ks",
        protocol_version=4,
        result_metadata=None,
        result_metadata_id=None,
    )


def test_packed_bytes_are_bound_as_they_are() -> None:
    stmt = prepared()
    bind_packed_vectors(stmt, column="content_features")
    packed = struct.pack(">3f", 0.25, -1.5, 3.0)
    bound = stmt.bind((packed, uuid.uuid4()))
    # What goes on the wire for the vector is exactly the packed float32.
    assert bound.values[0] == packed
    # And it is what the driver's own serializer makes of the floats.
    assert packed == VECTOR.serialize([0.25, -1.5, 3.0], 4)


def test_lists_still_bind_and_wrong_lengths_are_refused() -> None:
    stmt = prepared()
    bind_packed_vectors(stmt, column="content_features")
    assert stmt.bind(([0.25, -1.5, 3.0], uuid.uuid4())).values[0] == struct.pack(
        ">3f", 0.25, -1.5, 3.0
    )
    with pytest.raises(ValueError, match="packed vector has 8 bytes, expected 12"):
        packed_vector_type(DIM).serialize(b"\0" * 8, 4)


def test_only_the_named_vector_column_changes() -> None:
    stmt = prepared()
    bind_packed_vectors(stmt, column="other")
    assert stmt.column_metadata[0].type is VECTOR
    bind_packed_vectors(stmt, column="content_features")
    assert issubclass(stmt.column_metadata[0].type, VectorType)
    assert stmt.column_metadata[0].type is not VECTOR
    assert stmt.column_metadata[1].type is UUIDType

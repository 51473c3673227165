"""Bind pre-packed vectors without the driver re-serialising them.

The driver's ``VectorType.serialize`` walks a vector element by element (about
150 µs for 1536 floats). The domain layer already produced the exact wire bytes
(big-endian float32), so for our own prepared statements we swap the bind
type of the vector column for one that takes those bytes as they are, after a
length check. ``PreparedStatement.column_metadata`` is the driver's public bind
metadata; nothing global changes, and reads decode vectors as usual.
"""

from __future__ import annotations

from typing import Any

from cassandra.cqltypes import VectorType, lookup_casstype


class _PackedFloatVector(VectorType):  # type: ignore[misc]
    """``vector<float, N>`` that also accepts its wire bytes."""

    @classmethod
    def serialize(cls, v: Any, protocol_version: int) -> bytes:
        if isinstance(v, bytes | bytearray | memoryview):
            if len(v) != 4 * cls.vector_size:
                raise ValueError(
                    f"packed vector has {len(v)} bytes, expected {4 * cls.vector_size}"
                )
            return bytes(v)
        return super().serialize(v, protocol_version)  # type: ignore[no-any-return]


def packed_vector_type(dimension: int) -> type:
    base = lookup_casstype(
        "org.apache.cassandra.db.marshal.VectorType("
        f"org.apache.cassandra.db.marshal.FloatType, {dimension})"
    )
    return type(base.__name__, (_PackedFloatVector, base), {})


def bind_packed_vectors(prepared: Any, *, column: str) -> None:
    """Let ``prepared`` take packed float32 bytes for ``column``'s bind markers."""
    prepared.column_metadata = [
        meta._replace(type=packed_vector_type(meta.type.vector_size))
        if meta.name == column and issubclass(meta.type, VectorType)
        else meta
        for meta in prepared.column_metadata
    ]

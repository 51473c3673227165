"""Send pre-packed vectors to the driver without re-serialising them.

The driver's ``VectorType.serialize`` walks a vector element by element (about
150 µs for 1536 floats). Our domain layer already produced the exact wire bytes
(big-endian float32), so for the vector columns we route binding through the
driver's ``ColumnEncryptionPolicy`` hook: it lets a policy choose the type that
serialises a column, and we choose one that passes the bytes through after a
length check. Reads are untouched: the same type deserialises normally.
"""

from __future__ import annotations

from typing import Any

from cassandra.cqltypes import VectorType, lookup_casstype
from cassandra.policies import ColDesc, ColumnEncryptionPolicy


class _PackedFloatVector(VectorType):  # type: ignore[misc]
    """``vector<float, N>`` that accepts its wire bytes as they are."""

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
    base = lookup_casstype(f"org.apache.cassandra.db.marshal.VectorType("
                           f"org.apache.cassandra.db.marshal.FloatType, {dimension})")
    return type(base.__name__, (_PackedFloatVector, base), {})


class PackedVectorPolicy(ColumnEncryptionPolicy):  # type: ignore[misc]
    """Binds pre-packed float32 bytes for the registered vector columns; encrypts nothing."""

    def __init__(self) -> None:
        self._types: dict[ColDesc, type] = {}

    def register(self, *, keyspace: str, table: str, column: str, dimension: int) -> None:
        self._types[ColDesc(keyspace, table, column)] = packed_vector_type(dimension)

    def contains_column(self, coldesc: ColDesc) -> bool:
        return coldesc in self._types

    def column_type(self, coldesc: ColDesc) -> type:
        return self._types[coldesc]

    def encrypt(self, coldesc: ColDesc, obj_bytes: bytes) -> bytes:
        return obj_bytes

    def decrypt(self, coldesc: ColDesc, encrypted_bytes: bytes) -> bytes:
        return encrypted_bytes

    def add_column(self, coldesc: ColDesc, key: object) -> None:
        raise NotImplementedError("PackedVectorPolicy encrypts nothing")

    def encode_and_encrypt(self, coldesc: ColDesc, obj: object) -> bytes:
        raise NotImplementedError("PackedVectorPolicy encrypts nothing")

"""What makes an embedding storable, and its wire form.

The rules mirror what Cassandra 5.0 itself enforces, so that anything it would
refuse is refused here, before a write is attempted or acknowledged:

- the length equals the column's dimension (``vector<float, N>``);
- every value is finite and, as float32, within Cassandra's bound of 1e17
  (``VectorValidation.MAX_FLOAT32_COMPONENT``, chosen so dot products cannot
  overflow); values beyond float32's range fail this bound too;
- under COSINE, a vector whose every float32 component lies in [-1e-6, 1e-6]
  is refused, as Cassandra's ``isEffectivelyZero`` refuses it.

One rule is ours: under DOT_PRODUCT the vector must be unit-length (L2 norm
within ``UNIT_NORM_TOLERANCE`` of 1). Cassandra accepts any vector there, but
dot product only ranks like cosine for unit vectors; an unnormalised vector
would silently skew every related-videos query it takes part in.
"""

from __future__ import annotations

import functools
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from ..errors import InvalidVector

MAX_COMPONENT = np.float32(1e17)
ZERO_EPSILON = np.float64(1e-6)
# float32 rounding leaves a normalised 1536-dim embedding within ~1e-6 of 1;
# 1e-3 accepts every honest unit vector and refuses unnormalised ones.
UNIT_NORM_TOLERANCE = 1e-3
_BIG_ENDIAN_F32 = np.dtype(">f4")
_LITTLE_ENDIAN_F32 = np.dtype("<f4")


class Similarity(StrEnum):
    COSINE = "cosine"
    DOT_PRODUCT = "dot_product"
    EUCLIDEAN = "euclidean"

    @property
    def cql(self) -> str:
        return self.value.upper()


# The SAI vector graph's build options in Cassandra 5.0.9
# (index.sai.disk.v1.IndexWriterConfig): its defaults and its maxima.
STOCK_BEAM_WIDTH = 100
STOCK_MAX_CONNECTIONS = 16
MAX_BEAM_WIDTH = 3200
MAX_MAX_CONNECTIONS = 512


@dataclass(frozen=True, slots=True)
class GraphOptions:
    """How the index builds its graph: ``construction_beam_width``, ``maximum_node_connections``.

    Both set the index's CPU cost per vector (every insert, and every vector
    again at each compaction) against its recall; neither changes results'
    shape, so they are not part of what a writer validates against.
    """

    beam_width: int = STOCK_BEAM_WIDTH
    max_connections: int = STOCK_MAX_CONNECTIONS

    @property
    def is_stock(self) -> bool:
        return self == STOCK_GRAPH

    def cql_options(self) -> dict[str, str]:
        """The index OPTIONS that differ from Cassandra's defaults.

        Stock values are left out: a cluster that refuses custom graph options
        (the JVM property off, Astra) refuses them even when they equal the defaults.
        """
        options = {}
        if self.beam_width != STOCK_BEAM_WIDTH:
            options["construction_beam_width"] = str(self.beam_width)
        if self.max_connections != STOCK_MAX_CONNECTIONS:
            options["maximum_node_connections"] = str(self.max_connections)
        return options

    def __str__(self) -> str:
        return f"beam width {self.beam_width}, max connections {self.max_connections}"


STOCK_GRAPH = GraphOptions()


@dataclass(frozen=True, slots=True)
class VectorSpec:
    """The live shape of ``content_features``: read from the schema, not from code."""

    dimension: int
    similarity: Similarity
    # The graph options of the live index, when read from the schema (None
    # when the shape came from elsewhere, e.g. /readyz). Not compared: they
    # change what the index costs, not what a vector must look like.
    graph: GraphOptions | None = field(default=None, compare=False)

    @property
    def cql_type(self) -> str:
        return f"vector<float, {self.dimension}>"


def pack_vector(values: Sequence[float], spec: VectorSpec) -> bytes:
    """Validate ``values`` against ``spec``; return them as big-endian float32 bytes.

    The bytes are exactly what Cassandra stores for a ``vector<float, N>``, so the
    driver can send them without serialising element by element.
    """
    n = len(values)
    if n == 0:
        raise InvalidVector(f"vector must not be empty: expected {spec.dimension} numbers")
    if n != spec.dimension:
        raise InvalidVector(
            f"vector has {n} values, expected {spec.dimension} (the index is {spec.cql_type})"
        )
    # struct packs a list of Python floats about twice as fast as np.asarray.
    wide = np.frombuffer(_native_doubles(n).pack(*values), dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        narrow = wide.astype(np.float32)
    return _checked(narrow, spec, shown=values)


def pack_float32_bytes(raw: bytes, spec: VectorSpec, *, big_endian: bool = False) -> bytes:
    """Validate packed float32 values (little-endian unless ``big_endian``), as pack_vector.

    This is the compact wire form pipelines send as base64, the way OpenAI's
    ``encoding_format: "base64"`` returns embeddings (little-endian).
    """
    expected = 4 * spec.dimension
    if len(raw) != expected:
        whole = (
            f"{len(raw) // 4} float32 values"
            if len(raw) % 4 == 0
            else "not a whole number of float32 values"
        )
        raise InvalidVector(
            f"vector has {len(raw)} bytes ({whole}), expected {expected} bytes: "
            f"{spec.dimension} float32 values (the index is {spec.cql_type})"
        )
    narrow = np.frombuffer(raw, dtype=_BIG_ENDIAN_F32 if big_endian else _LITTLE_ENDIAN_F32)
    return _checked(narrow, spec, shown=narrow)


def _checked(narrow: np.ndarray, spec: VectorSpec, *, shown: Sequence[float] | np.ndarray) -> bytes:
    with np.errstate(over="ignore", invalid="ignore"):
        magnitude = np.abs(narrow)
        # NaN compares false, so this one test catches NaN, ±inf, float32
        # overflow and Cassandra's out-of-bounds rule together.
        in_bounds = magnitude <= MAX_COMPONENT
    if not in_bounds.all():
        index = int(np.argmin(in_bounds))
        raise InvalidVector(_out_of_bounds(float(shown[index]), index), index=index)
    if spec.similarity is Similarity.COSINE and not (magnitude > ZERO_EPSILON).any():
        raise InvalidVector(
            "vector is zero or near-zero (every |value| <= 1e-6): "
            "cosine similarity cannot index it; send a non-zero embedding"
        )
    if spec.similarity is Similarity.DOT_PRODUCT:
        exact = narrow.astype(np.float64)
        norm = math.sqrt(float(exact @ exact))
        if abs(norm - 1.0) > UNIT_NORM_TOLERANCE:
            raise InvalidVector(
                f"vector has L2 norm {norm:.6g}, expected 1 ± {UNIT_NORM_TOLERANCE}: "
                "dot_product similarity needs unit-length vectors (normalise it first)"
            )
    return narrow.astype(_BIG_ENDIAN_F32).tobytes()


@functools.lru_cache(maxsize=16)
def _native_doubles(n: int) -> struct.Struct:
    return struct.Struct(f"={n}d")


def _out_of_bounds(value: float, index: int) -> str:
    if not math.isfinite(value):
        return f"vector[{index}] is {value}: every value must be a finite number"
    return (
        f"vector[{index}] = {value!r} is out of bounds: "
        f"Cassandra refuses float32 values with |value| > 1e17"
    )


def unpack_vector(blob: bytes) -> list[float]:
    """The inverse of :func:`pack_vector`, for reading a stored vector back."""
    values: list[float] = np.frombuffer(blob, dtype=_BIG_ENDIAN_F32).astype(np.float64).tolist()
    return values

import math
import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from killrvideo_reco.domain.vectors import (
    MAX_COMPONENT,
    Similarity,
    VectorSpec,
    pack_vector,
    unpack_vector,
)
from killrvideo_reco.errors import InvalidVector

COSINE4 = VectorSpec(4, Similarity.COSINE)
DOT4 = VectorSpec(4, Similarity.DOT_PRODUCT)
EUCLID4 = VectorSpec(4, Similarity.EUCLIDEAN)
finite32 = st.floats(
    min_value=-float(MAX_COMPONENT), max_value=float(MAX_COMPONENT), allow_nan=False, width=32
)


def test_packs_big_endian_float32() -> None:
    assert pack_vector([1.0, -2.0, 0.5, 3], COSINE4) == struct.pack(">4f", 1.0, -2.0, 0.5, 3)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([], "vector must not be empty: expected 4 numbers"),
        ([1.0, 2.0], "vector has 2 values, expected 4 (the index is vector<float, 4>)"),
        ([1.0] * 5, "vector has 5 values, expected 4"),
    ],
)
def test_length_must_match_the_dimension(values: list[float], message: str) -> None:
    with pytest.raises(InvalidVector, match=message.replace("(", r"\(").replace(")", r"\)")):
        pack_vector(values, COSINE4)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (math.nan, r"vector\[2\] is nan: every value must be a finite number"),
        (math.inf, r"vector\[2\] is inf"),
        (-math.inf, r"vector\[2\] is -inf"),
        (
            1e18,
            r"vector\[2\] = 1e\+18 is out of bounds: Cassandra refuses float32 values with \|value\| > 1e17",
        ),
        (-3.5e38, r"vector\[2\] = -3.5e\+38 is out of bounds"),
        (1e39, r"vector\[2\] = 1e\+39 is out of bounds"),  # beyond float32 altogether
    ],
)
def test_non_finite_and_out_of_bounds_values_name_their_index(bad: float, message: str) -> None:
    with pytest.raises(InvalidVector, match=message) as info:
        pack_vector([0.5, 0.1, bad, 0.2], COSINE4)
    assert info.value.index == 2


def test_the_first_bad_index_is_reported() -> None:
    with pytest.raises(InvalidVector) as info:
        pack_vector([0.5, math.inf, math.nan, 0.2], COSINE4)
    assert info.value.index == 1


def test_cassandras_bound_itself_is_accepted() -> None:
    assert unpack_vector(pack_vector([float(MAX_COMPONENT), 0, 0, -1e17], EUCLID4))[0] == float(
        MAX_COMPONENT
    )


@pytest.mark.parametrize("values", [[0, 0, 0, 0], [1e-6, -1e-6, 0, 5e-7], [-0.0, 0.0, 1e-30, 0]])
def test_cosine_refuses_zero_and_near_zero_vectors(values: list[float]) -> None:
    with pytest.raises(InvalidVector, match="zero or near-zero"):
        pack_vector(values, COSINE4)


def test_near_zero_threshold_matches_cassandra() -> None:
    # Cassandra: effectively zero when every float32 component is within [-1e-6, 1e-6].
    pack_vector([0, 0, 0, 1.1e-6], COSINE4)
    assert pack_vector([0, 0, 0, 0], EUCLID4) == bytes(16)


@given(st.lists(finite32, min_size=4, max_size=4))
def test_valid_vectors_round_trip_as_float32(values: list[float]) -> None:
    spec = EUCLID4  # no zero or norm rule: every finite in-bounds vector is valid
    assert unpack_vector(pack_vector(values, spec)) == np.float32(values).tolist()


def storable(value: float) -> bool:
    """The oracle: what Cassandra accepts for one component, computed independently."""
    if not math.isfinite(value):
        return False
    with np.errstate(over="ignore"):
        return bool(abs(np.float32(value)) <= np.float32(1e17))


@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=4, max_size=4))
def test_accepted_iff_every_value_is_storable(values: list[float]) -> None:
    bad = [i for i, v in enumerate(values) if not storable(v)]
    if bad:
        with pytest.raises(InvalidVector) as info:
            pack_vector(values, EUCLID4)
        assert info.value.index == bad[0]
    else:
        assert pack_vector(values, EUCLID4) == np.asarray(values, dtype=">f4").tobytes()


@given(st.lists(st.floats(min_value=-1e-6, max_value=1e-6), min_size=4, max_size=4))
def test_cosine_refuses_every_vector_inside_the_epsilon_box(values: list[float]) -> None:
    with pytest.raises(InvalidVector, match="zero"):
        pack_vector(values, COSINE4)


def test_dot_product_needs_unit_vectors() -> None:
    pack_vector([0.6, 0.8, 0, 0], DOT4)
    pack_vector([0.6, 0.8 + 9e-4, 0, 0], DOT4)  # within the documented tolerance
    with pytest.raises(InvalidVector, match=r"vector has L2 norm 1.01, expected 1 ± 0.001"):
        pack_vector([0.6 * 1.01, 0.8 * 1.01, 0, 0], DOT4)
    with pytest.raises(InvalidVector, match="L2 norm 0, expected 1"):
        pack_vector([0, 0, 0, 0], DOT4)


@given(
    st.lists(st.floats(min_value=-1e3, max_value=1e3), min_size=4, max_size=4).filter(
        lambda v: any(abs(x) > 1e-3 for x in v)
    )
)
def test_any_vector_normalised_is_accepted_under_dot_product(values: list[float]) -> None:
    unit = np.asarray(values) / np.linalg.norm(values)
    assert unpack_vector(pack_vector(unit.tolist(), DOT4)) == np.float32(unit).tolist()


def test_graph_options_name_only_what_differs_from_stock() -> None:
    from killrvideo_reco.domain.vectors import STOCK_GRAPH, GraphOptions

    # A refusing cluster refuses stock values too, so they are never sent.
    assert STOCK_GRAPH.cql_options() == {}
    assert GraphOptions(100, 8).cql_options() == {"maximum_node_connections": "8"}
    assert GraphOptions(40, 16).cql_options() == {"construction_beam_width": "40"}
    assert GraphOptions(40, 8).cql_options() == {
        "construction_beam_width": "40",
        "maximum_node_connections": "8",
    }

import base64
import json
import uuid

import msgspec
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from killrvideo_reco.domain.ingest import decode_ingest
from killrvideo_reco.domain.vectors import Similarity, VectorSpec
from killrvideo_reco.errors import InvalidRequest, MalformedJSON

SPEC = VectorSpec(3, Similarity.COSINE)
VID = "550e8400-e29b-41d4-a716-446655440000"


def body(**fields: object) -> bytes:
    return json.dumps({"videoId": VID, "vector": [0.1, 0.2, 0.3]} | fields).encode()


def test_a_valid_body_becomes_a_command() -> None:
    command = decode_ingest(body(), SPEC)
    assert command.video_id == uuid.UUID(VID)
    assert command.vector == np.float32([0.1, 0.2, 0.3]).astype(">f4").tobytes()


def test_integers_are_numbers() -> None:
    assert (
        decode_ingest(body(vector=[1, -2, 3]), SPEC).vector
        == np.float32([1, -2, 3]).astype(">f4").tobytes()
    )


@pytest.mark.parametrize(
    "raw", [b"", b"{", b'{"videoId": "x",}', b"\xff\xfe", b"[NaN]", b'{"vector": [NaN]}']
)
def test_malformed_json_is_400(raw: bytes) -> None:
    with pytest.raises(MalformedJSON, match="not valid JSON"):
        decode_ingest(raw, SPEC)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"[]", "must be a JSON object with videoId and vector, got an array"),
        (b'"hi"', "got a string"),
        (b'{"vector": [1, 2, 3]}', "missing required field 'videoId'"),
        (json.dumps({"videoId": VID}).encode(), "missing required field 'vector'"),
        (body(extra=1), "unknown field 'extra'"),
        (body(videoId="not-a-uuid"), "videoId must be a UUID"),
        (body(videoId=123), "videoId must be a UUID .*got 'a number'"),
        (body(videoId="{" + VID + "}"), "videoId must be a UUID"),
        (body(videoId=VID.replace("-", "")), "videoId must be a UUID"),
        (body(vector="0.1,0.2,0.3"), "vector is a string but not valid base64"),
        (
            body(vector=None),
            "vector must be an array of 3 numbers or a base64 string of float32 values, got null",
        ),
        (body(vector=[0.1, "0.2", 0.3]), r"vector\[1\] must be a number, got a string"),
        (body(vector=[0.1, 0.2, True]), r"vector\[2\] must be a number, got a boolean"),
        (body(vector=[None, 0.2, 0.3]), r"vector\[0\] must be a number, got null"),
        (body(vector=[[0.1], 0.2, 0.3]), r"vector\[0\] must be a number, got an array"),
        (body(vector=[]), "vector must not be empty: expected 3 numbers"),
        (body(vector=[0.1] * 4), r"vector has 4 values, expected 3"),
        (body(vector=[0, 0, 0]), "zero or near-zero"),
        (
            b'{"videoId": "%s", "vector": [1, 1e999, 2]}' % VID.encode(),
            r"vector\[1\] is out of range",
        ),
        (
            b'{"videoId": "%s", "vector": [1, 2, 1%s]}' % (VID.encode(), b"0" * 400),
            r"vector\[2\] is out of range",
        ),
        (body(vector=[1, 2e20, 3]), r"vector\[1\] = 2e\+20 is out of bounds"),
    ],
)
def test_invalid_bodies_are_422_with_a_precise_message(raw: bytes, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        decode_ingest(raw, SPEC)


def test_vector_errors_echo_the_valid_video_id() -> None:
    with pytest.raises(InvalidRequest) as info:
        decode_ingest(body(vector=[1, "x", 3]), SPEC)
    assert info.value.video_id == VID


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.text(max_size=3),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
)


def as_float32(item: object) -> np.float32 | None:
    """The value as the spec reads it (float32), or None for a non-number."""
    if not isinstance(item, int | float) or isinstance(item, bool):
        return None
    try:
        wide = float(item)
    except OverflowError:
        return np.float32(np.inf)
    with np.errstate(over="ignore"):
        return np.float32(wide)


@given(st.lists(json_scalars, min_size=1, max_size=5))
def test_any_vector_is_accepted_exactly_when_the_rules_allow(items: list[object]) -> None:
    raw = msgspec.json.encode({"videoId": VID, "vector": items})
    values = [as_float32(i) for i in items]
    # The spec's rules for vector<float, 3> under cosine, restated: three
    # numbers, each within 1e17 as float32, not all within 1e-6 of zero.
    valid = (
        len(values) == 3
        and all(v is not None and abs(v) <= np.float32(1e17) for v in values)
        and any(v is not None and abs(v) > 1e-6 for v in values)
    )
    if not valid:
        with pytest.raises(InvalidRequest):
            decode_ingest(raw, SPEC)
        return
    command = decode_ingest(raw, SPEC)  # a valid vector wrongly refused fails here
    assert command.vector == np.array(values, dtype=">f4").tobytes()


def b64(values: list[float], order: str = "<") -> str:
    return base64.b64encode(np.asarray(values, dtype=f"{order}f4").tobytes()).decode()


@pytest.mark.parametrize(
    ("order", "field"), [("<", {}), ("<", {"byteOrder": "little"}), (">", {"byteOrder": "big"})]
)
def test_base64_vectors_in_either_byte_order(order: str, field: dict[str, str]) -> None:
    command = decode_ingest(body(vector=b64([0.1, -0.2, 0.3], order), **field), SPEC)
    assert command.vector == np.float32([0.1, -0.2, 0.3]).astype(">f4").tobytes()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"vector": b64([0.1, 0.2])},
            r"vector has 8 bytes \(2 float32 values\), expected 12 bytes: 3 float32 values",
        ),
        (
            {"vector": base64.b64encode(b"12345").decode()},
            "5 bytes \\(not a whole number of float32 values\\)",
        ),
        ({"vector": "!!!!"}, "not valid base64"),
        ({"vector": b64([0.0, 0.0, 0.0])}, "zero or near-zero"),
        ({"vector": b64([0.1, float("nan"), 0.3])}, r"vector\[1\] is nan"),
        ({"vector": b64([0.1, 0.2, 3e38])}, r"vector\[2\] = 3.*e\+38 is out of bounds"),
        (
            {"vector": [0.1, 0.2, 0.3], "byteOrder": "big"},
            "byteOrder applies only to a base64 vector",
        ),
        (
            {"vector": b64([0.1, 0.2, 0.3]), "byteOrder": "middle"},
            "byteOrder must be 'little' or 'big', got 'middle'",
        ),
    ],
)
def test_base64_vectors_follow_the_same_rules(fields: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        decode_ingest(body(**fields), SPEC)


def test_the_wrong_byte_order_is_caught_by_the_rules_it_breaks() -> None:
    # 0.1 as little-endian bytes read big-endian is a denormal or huge value:
    # here the vector's values come out tiny, so the cosine zero rule refuses it.
    with pytest.raises(InvalidRequest):
        decode_ingest(body(vector=b64([1e-30, 1e-30, 1e-30], ">"), byteOrder="little"), SPEC)

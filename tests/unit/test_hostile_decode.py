"""Property tests: whatever bytes arrive, decoding gives a command or a 4xx, never a crash.

The strategies generate what a well-meaning client never sends: deep nesting,
invalid UTF-8 inside strings, control characters, numbers of hundreds of
digits, non-ASCII in every string field, keys named twice.
"""

from __future__ import annotations

import base64
import json

import msgspec
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from killrvideo_reco.domain.ingest import IngestCommand, decode_batch, decode_ingest
from killrvideo_reco.domain.vectors import Similarity, VectorSpec
from killrvideo_reco.errors import InvalidRequest, RequestError

SPEC = VectorSpec(3, Similarity.COSINE)
VID = "550e8400-e29b-41d4-a716-446655440000"
NOW_US = 1_800_000_000_000_000

# -- JSON fragments, as raw bytes so that they can be wrong in any way ----------------

# Any text, control characters and astral planes included, encoded so that
# lone surrogates become invalid UTF-8 in the body.
_texts = st.text(alphabet=st.characters(codec=None), max_size=40).map(
    lambda t: t.encode("utf-8", "surrogatepass")
)


def _string(raw: bytes) -> bytes:
    # Quotes and backslashes escaped, every other byte left as it is (control
    # characters and invalid UTF-8 included): what a careless encoder writes.
    return b'"' + raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


strings = st.one_of(
    _texts.map(_string),
    st.binary(max_size=40).map(_string),
    st.text(max_size=40).map(lambda t: json.dumps(t).encode()),  # valid, \\u-escaped
    st.sampled_from([VID, VID + "\n", VID.upper(), " " + VID, VID + "\x00"]).map(
        lambda t: json.dumps(t).encode()
    ),
)
numbers = st.one_of(
    st.integers(min_value=-(10**400), max_value=10**400).map(lambda n: str(n).encode()),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda f: repr(f).encode()),
    st.sampled_from([b"1e999", b"-1e999", b"1e-999", b"NaN", b"Infinity", b"-0", b"01", b"1."]),
    st.integers(min_value=1, max_value=600).map(lambda n: b"1" + b"0" * n),
)
scalars = st.one_of(strings, numbers, st.sampled_from([b"true", b"false", b"null"]))
deep = st.integers(min_value=1, max_value=5000).map(lambda n: b"[" * n + b"]" * n)


def _object(pairs: list[tuple[bytes, bytes]]) -> bytes:
    return b"{" + b",".join(k + b":" + v for k, v in pairs) + b"}"


values = st.recursive(
    scalars | deep,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5).map(lambda xs: b"[" + b",".join(xs) + b"]"),
        st.lists(st.tuples(strings, inner), max_size=4).map(_object),
    ),
    max_leaves=20,
)
vectors = st.one_of(
    values,
    st.lists(numbers, min_size=0, max_size=5).map(lambda xs: b"[" + b",".join(xs) + b"]"),
    st.binary(max_size=16).map(lambda b: json.dumps(base64.b64encode(b).decode()).encode()),
    strings,
)
keys = st.one_of(
    st.sampled_from([b'"videoId"', b'"vector"', b'"byteOrder"', b'"vid\\u0065oId"']), strings
)
bodies = st.one_of(
    st.lists(
        st.one_of(
            st.tuples(st.just(b'"videoId"'), strings),
            st.tuples(st.just(b'"vector"'), vectors),
            st.tuples(st.just(b'"byteOrder"'), st.one_of(strings, scalars)),
            st.tuples(keys, values),
        ),
        max_size=5,
    ).map(_object),
    values,
    st.binary(max_size=64),
)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(bodies)
def test_any_single_body_is_a_command_or_a_4xx(body: bytes) -> None:
    try:
        decode_ingest(body, SPEC)
    except RequestError as exc:
        status, message = exc.status_code, exc.message
        assert 400 <= status < 500
        assert len(message) < 1000, message


class _Envelope(msgspec.Struct):
    items: list[msgspec.Raw]  # kept raw, as decode_batch keeps them


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(bodies, max_size=4), st.sampled_from([b"", b',"writeTimestamp":null']))
def test_any_batch_is_per_item_results_or_a_4xx(items: list[bytes], tail: bytes) -> None:
    body = b'{"items":[' + b",".join(items) + b"]" + tail + b"}"
    try:
        batch = decode_batch(body, SPEC, max_items=10, now_us=NOW_US)
    except RequestError as exc:
        status = exc.status_code
        assert 400 <= status < 500
        return
    # Generated fragments need not be whole values ('"' twice is one string):
    # count the items the accepted envelope really holds.
    assert len(batch.items) == len(msgspec.json.decode(body, type=_Envelope).items)
    for item in batch.items:
        assert isinstance(item, IngestCommand) or 400 <= item.status_code < 500


# -- duplicate keys ---------------------------------------------------------------------

good_vectors = st.one_of(
    st.lists(st.floats(0.1, 10), min_size=3, max_size=3).map(lambda v: json.dumps(v).encode()),
    st.lists(st.floats(0.25, 10, width=32), min_size=3, max_size=3).map(
        lambda v: json.dumps(base64.b64encode(np.float32(v).tobytes()).decode()).encode()
    ),
)
pairs = st.tuples(good_vectors, st.sampled_from([None, b"null", b'"little"'])).map(
    lambda p: (
        [(b'"videoId"', json.dumps(VID).encode()), (b'"vector"', p[0])]
        + ([(b'"byteOrder"', p[1])] if p[1] is not None else [])
    )
)


@given(pairs, st.randoms(use_true_random=False))
def test_a_valid_body_in_any_key_order_is_accepted(
    fields: list[tuple[bytes, bytes]], rnd: object
) -> None:
    rnd.shuffle(fields)  # type: ignore[attr-defined]
    body = _object(fields)
    if b'"little"' in body and b"[" in body:
        return  # byteOrder with an array: refused for its own reason
    assert isinstance(decode_ingest(body, SPEC), IngestCommand)


@given(pairs, st.data())
def test_any_key_named_twice_is_refused(
    fields: list[tuple[bytes, bytes]], data: st.DataObject
) -> None:
    twice = data.draw(st.sampled_from(fields))
    again = (twice[0], data.draw(st.one_of(st.just(twice[1]), good_vectors, st.just(b"null"))))
    position = data.draw(st.integers(0, len(fields)))
    body = _object([*fields[:position], again, *fields[position:]])
    try:
        decode_ingest(body, SPEC)
    except InvalidRequest:
        return
    raise AssertionError(f"accepted a key named twice: {body!r}")

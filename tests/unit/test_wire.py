"""The protocol v4 subset, byte for byte against the spec's layouts."""

import struct

from killrvideo_reco.storage import _wire


def s(text: str) -> bytes:
    return struct.pack(">H", len(text)) + text.encode()


def test_frame_header() -> None:
    assert _wire.frame(_wire.EXECUTE, 7, b"abc") == b"\x04\x00\x00\x07\x0a\x00\x00\x00\x03abc"


def test_execute_body_layout() -> None:
    body = _wire.ExecuteEncoder(query_id=b"\xaa\xbb", consistency=6, serial_consistency=9).body(
        (b"\x01\x02", b"\x03")
    )
    assert body == (
        b"\x00\x02\xaa\xbb"  # [short bytes] id
        + b"\x00\x06\x11"  # LOCAL_QUORUM, flags: values | serial consistency
        + b"\x00\x02"
        + b"\x00\x00\x00\x02\x01\x02"
        + b"\x00\x00\x00\x01\x03"
        + b"\x00\x09"  # LOCAL_SERIAL
    )


def test_startup_body() -> None:
    assert _wire.startup_body() == b"\x00\x01" + s("CQL_VERSION") + s("3.0.0")


def test_error_bodies_keep_code_kind_and_message() -> None:
    body = (
        struct.pack(">i", 0x1100)
        + s("Operation timed out")
        + b"\x00\x06\x00\x00\x00\x00\x00\x00\x00\x01"
        + s("CAS")
    )
    failure = _wire.parse_error(body)
    assert (failure.code, failure.kind, failure.message) == (
        0x1100,
        "WriteTimeout",
        "Operation timed out",
    )
    assert _wire.parse_error(struct.pack(">i", 0x7777) + s("?")).kind == "Error0x7777"


def test_applied_cell_of_a_conditional_update() -> None:
    rows = (
        struct.pack(">iii", 2, 0x0001, 1)  # Rows, global table spec, one column
        + s("ks")
        + s("videos")
        + s("[applied]")
        + b"\x00\x04"  # boolean
        + struct.pack(">i", 1)
        + struct.pack(">i", 1)
        + b"\x01"
    )
    assert _wire.parse_first_cell(rows) == b"\x01"


def test_per_column_specs_and_nested_types_are_skipped() -> None:
    rows = (
        struct.pack(">iii", 2, 0, 2)
        + s("ks")
        + s("t")
        + s("[applied]")
        + b"\x00\x04"
        + s("ks")
        + s("t")
        + s("m")
        + b"\x00\x21\x00\x0d\x00\x20\x00\x00"
        + s("org.apache.cassandra.db.marshal.VectorType")
        + struct.pack(">i", 1)
        + struct.pack(">i", 1)
        + b"\x00"
        + struct.pack(">i", -1)
    )
    assert _wire.parse_first_cell(rows) == b"\x00"


def test_void_and_empty_results_have_no_cell() -> None:
    assert _wire.parse_first_cell(struct.pack(">i", 1)) is None
    assert _wire.parse_first_cell(struct.pack(">iiii", 2, 0x0004, 1, 0)) is None

"""Just enough of the CQL native protocol v4 to EXECUTE one prepared statement.

Pure functions over bytes, no I/O: frame headers, STARTUP and EXECUTE bodies,
and the RESULT and ERROR bodies an EXECUTE can get back. The driver remains the
client for everything else (topology, schema, preparing, admin statements);
this exists because the ingest write is the whole service, and the driver spends
over a millisecond of CPU on each one (measured by `make bench`).
Spec: https://github.com/apache/cassandra/blob/trunk/doc/native_protocol_v4.spec
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

VERSION = 0x04
RESPONSE_VERSION = 0x84
HEADER = struct.Struct(">BBhBi")  # version, flags, stream, opcode, body length
HEADER_SIZE = HEADER.size

ERROR, STARTUP, READY, AUTHENTICATE, OPTIONS = 0x00, 0x01, 0x02, 0x03, 0x05
RESULT, EXECUTE, EVENT = 0x08, 0x0A, 0x0C

_VALUES, _SERIAL_CONSISTENCY = 0x01, 0x10
_ROWS = 0x0002
_GLOBAL_TABLES_SPEC, _HAS_MORE_PAGES, _NO_METADATA = 0x0001, 0x0002, 0x0004

# Error codes of the v4 spec, named as the driver names its exceptions, so that
# our StorageUnavailable.kind reads the same whichever path met the error.
ERROR_KINDS = {
    0x0000: "ServerError",
    0x000A: "ProtocolError",
    0x0100: "AuthenticationFailed",
    0x1000: "Unavailable",
    0x1001: "OverloadedErrorMessage",
    0x1002: "IsBootstrappingErrorMessage",
    0x1003: "TruncateError",
    0x1100: "WriteTimeout",
    0x1200: "ReadTimeout",
    0x1300: "ReadFailure",
    0x1400: "FunctionFailure",
    0x1500: "WriteFailure",
    0x1600: "CDCWriteFailure",
    0x1700: "CASWriteUnknown",
    0x2000: "SyntaxException",
    0x2100: "Unauthorized",
    0x2200: "InvalidRequest",
    0x2300: "ConfigurationException",
    0x2400: "AlreadyExists",
    0x2500: "Unprepared",
}
INVALID = 0x2200
UNPREPARED = 0x2500


class WireError(Exception):
    """A frame we cannot make sense of: the connection must be dropped."""


@dataclass(frozen=True, slots=True)
class ServerFailure:
    """An ERROR response: its code, the driver-style name, and the message."""

    code: int
    kind: str
    message: str


def frame(opcode: int, stream: int, body: bytes) -> bytes:
    return HEADER.pack(VERSION, 0, stream, opcode, len(body)) + body


def _string(value: str) -> bytes:
    raw = value.encode()
    return struct.pack(">H", len(raw)) + raw


def startup_body() -> bytes:
    return struct.pack(">H", 1) + _string("CQL_VERSION") + _string("3.0.0")


class ExecuteEncoder:
    """EXECUTE bodies for one prepared statement, with its fixed parameters."""

    def __init__(
        self, *, query_id: bytes, consistency: int, serial_consistency: int | None
    ) -> None:
        flags = _VALUES | (_SERIAL_CONSISTENCY if serial_consistency is not None else 0)
        self._head = (
            struct.pack(">H", len(query_id)) + query_id + struct.pack(">HB", consistency, flags)
        )
        self._tail = (
            struct.pack(">H", serial_consistency) if serial_consistency is not None else b""
        )

    def body(self, values: tuple[bytes, ...]) -> bytes:
        parts = [self._head, struct.pack(">H", len(values))]
        for value in values:
            parts.append(struct.pack(">i", len(value)))
            parts.append(value)
        parts.append(self._tail)
        return b"".join(parts)


class _Reader:
    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.pos = 0

    def take(self, fmt: struct.Struct) -> int:
        (value,) = fmt.unpack_from(self.buf, self.pos)
        self.pos += fmt.size
        return int(value)

    def string(self) -> str:
        n = self.take(_SHORT)
        raw = self.buf[self.pos : self.pos + n]
        self.pos += n
        return raw.decode(errors="replace")

    def bytes_(self) -> bytes | None:
        n = self.take(_INT)
        if n < 0:
            return None
        raw = self.buf[self.pos : self.pos + n]
        self.pos += n
        return raw

    def option(self) -> None:
        kind = self.take(_SHORT)
        if kind == 0x0000:  # custom: a class name
            self.string()
        elif kind in (0x0020, 0x0022):  # list, set
            self.option()
        elif kind == 0x0021:  # map
            self.option()
            self.option()
        elif kind == 0x0030:  # UDT
            self.string()
            self.string()
            for _ in range(self.take(_SHORT)):
                self.string()
                self.option()
        elif kind == 0x0031:  # tuple
            for _ in range(self.take(_SHORT)):
                self.option()
        elif not 0x0001 <= kind <= 0x0015:
            raise WireError(f"unknown type option 0x{kind:04x}")


_SHORT = struct.Struct(">H")
_INT = struct.Struct(">i")


def parse_error(body: bytes) -> ServerFailure:
    reader = _Reader(body)
    code = reader.take(_INT)
    message = reader.string()
    return ServerFailure(code, ERROR_KINDS.get(code, f"Error0x{code:04x}"), message)


def parse_first_cell(body: bytes) -> bytes | None:
    """The first column of the first row of a RESULT, or None (Void, no rows, null).

    For a conditional UPDATE that is ``[applied]``, one byte.
    """
    reader = _Reader(body)
    if reader.take(_INT) != _ROWS:
        return None
    flags = reader.take(_INT)
    columns = reader.take(_INT)
    if flags & _HAS_MORE_PAGES:
        reader.bytes_()
    if not flags & _NO_METADATA:
        if flags & _GLOBAL_TABLES_SPEC:
            reader.string()
            reader.string()
        for _ in range(columns):
            if not flags & _GLOBAL_TABLES_SPEC:
                reader.string()
                reader.string()
            reader.string()
            reader.option()
    if reader.take(_INT) == 0 or columns == 0:
        return None
    return reader.bytes_()

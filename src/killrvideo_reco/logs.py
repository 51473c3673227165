"""Log set-up: readable text for a terminal, or one JSON object a line (KV_LOG_FORMAT=json).

Structured fields travel on a record as ``extra={"fields": {...}}``: the text
format appends them as ``key=value``, the JSON format merges them into the
object. msgspec encodes the JSON, so a line costs a few microseconds: the
service writes one for every request (api/front.py).
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

_encode = msgspec.json.Encoder().encode
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", **fields, "exc"?}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            line.update(fields)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return _encode(line).decode()


class TextFormatter(logging.Formatter):
    """The classic line, then the record's fields as ``key=value``."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        text = super().formatMessage(record)
        fields = getattr(record, "fields", None)
        if fields:
            text += "".join(
                f" {key}={value!r}"
                if isinstance(value, str) and " " in value
                else f" {key}={value}"
                for key, value in fields.items()
                if value is not None
            )
        return text


FLUSH_AFTER_S = float(os.environ.get("KV_EXP_LOG_FLUSH_S", "0.05"))


class TickFlushedHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that flushes once per event-loop tick, not once per line.

    A line a request made a write(2) per request, and a syscall releases the
    GIL, which the driver's I/O thread then takes: under load the access line
    cost the service about a sixth of its CPU per ingest (docs/load-and-limits.md).
    Lines logged on the loop's thread are buffered and flushed by a callback at
    the end of the tick (when nothing else is ready, a tick is short); lines from
    other threads, or with no loop running, are flushed at once.
    """

    def __init__(self, stream: io.TextIOBase) -> None:
        super().__init__(stream)
        self._scheduled = False

    def flush(self) -> None:  # StreamHandler.emit calls this after every record
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            super().flush()
            return
        if not self._scheduled:
            self._scheduled = True
            loop.call_later(FLUSH_AFTER_S, self._flush_now)

    def _flush_now(self) -> None:
        self._scheduled = False
        super().flush()


def _stderr_buffered() -> io.TextIOWrapper:
    # sys.stderr is line-buffered: every line would be a write(2) whatever the handler.
    raw = io.FileIO(sys.stderr.fileno(), "w", closefd=False)
    return io.TextIOWrapper(
        io.BufferedWriter(raw, 1 << 16), encoding="utf-8", errors="backslashreplace"
    )


def configure(*, level: str, fmt: Literal["text", "json"]) -> None:
    """Send every logger (ours, uvicorn's, the driver's) to stderr in one format."""
    handler: logging.Handler
    if os.environ.get("KV_EXP_LOG_TICK") == "1":
        handler = TickFlushedHandler(_stderr_buffered())
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # Our access line (api/front.py) replaces uvicorn's. `serve` passes
    # access_log=False, but uvicorn applies it when its Config is built, before
    # it loads the app factory, and the factory calls this function again in each
    # process: a propagating uvicorn.access would reach the root handler, and
    # uvicorn's protocol logs a line whenever ``hasHandlers()`` is true. No
    # handler and no propagation: it skips even formatting that line.
    uvicorn_access = logging.getLogger("uvicorn.access")
    uvicorn_access.handlers.clear()
    uvicorn_access.propagate = False

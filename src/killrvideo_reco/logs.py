"""Log set-up: readable text for a terminal, or one JSON object a line (KV_LOG_FORMAT=json).

Structured fields travel on a record as ``extra={"fields": {...}}``: the text
format appends them as ``key=value``, the JSON format merges them into the
object. msgspec encodes the JSON, so a line costs a few microseconds: the
service writes one for every request (api/front.py).
"""

from __future__ import annotations

import logging
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


def configure(*, level: str, fmt: Literal["text", "json"]) -> None:
    """Send every logger (ours, uvicorn's, the driver's) to stderr in one format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # httpx logs each request at INFO; the key-set fetches (jwks.py) log one
    # line of their own that says what the provider did.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, root.level))
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

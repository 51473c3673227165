"""The two log formats: fields as key=value in text, merged into one JSON object a line."""

from __future__ import annotations

import json
import logging
import sys

from killrvideo_reco.logs import JsonFormatter, TextFormatter, configure


def record(
    msg: str, *, fields: dict[str, object] | None = None, exc: bool = False
) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            exc_info = sys.exc_info()
    rec = logging.LogRecord("kv.test", logging.WARNING, __file__, 1, msg, (), exc_info)
    if fields is not None:
        rec.fields = fields
    return rec


def test_json_is_one_line_with_the_fields_and_the_traceback() -> None:
    line = JsonFormatter().format(
        record("hello\nworld", fields={"requestId": "r1", "status": 503, "videoId": None}, exc=True)
    )
    assert "\n" not in line
    obj = json.loads(line)
    assert obj["level"] == "WARNING" and obj["logger"] == "kv.test"
    assert obj["msg"] == "hello\nworld"
    assert (obj["requestId"], obj["status"], obj["videoId"]) == ("r1", 503, None)
    assert "ValueError: boom" in obj["exc"]
    assert obj["ts"].endswith("+00:00")


def test_text_appends_known_fields_and_quotes_those_with_spaces() -> None:
    text = TextFormatter().format(
        record("POST /x 422", fields={"requestId": "r1", "videoId": None, "reason": "too long"})
    )
    assert text.endswith("WARNING kv.test: POST /x 422 requestId=r1 reason='too long'")


def test_configure_silences_uvicorn_access_which_our_own_line_replaces() -> None:
    # uvicorn's protocol logs a line per request whenever the logger has a
    # handler, its own or the root's through propagation (issue 20: two lines).
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        configure(level="INFO", fmt="json")
        assert not logging.getLogger("uvicorn.access").hasHandlers()
        assert logging.getLogger("uvicorn.error").hasHandlers()  # start-up, errors: kept
        assert logging.getLogger("killrvideo_reco.access").hasHandlers()
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])

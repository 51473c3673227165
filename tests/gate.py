"""A forwarding proxy that lets a set number of requests through, then holds the rest.

A test puts it between a client process and the real service to stop the
client at an exact point (after N batches, say) instead of racing it with a
timer. Held requests are answered 503 when the proxy closes.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Self

import httpx2 as httpx
import uvicorn
from starlette.types import Receive, Scope, Send

from .conftest import free_port


class GatedProxy:
    def __init__(self, upstream: str, *, open_for: int, path: str) -> None:
        """Forward everything to ``upstream``; hold ``path`` requests after the first ``open_for``."""
        self.upstream = upstream
        self.open_for = open_for
        self.path = path
        self.passed = 0
        self.held = 0
        self.url = f"http://127.0.0.1:{free_port()}"
        self._release: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        config = uvicorn.Config(
            self._app,
            host="127.0.0.1",
            port=int(self.url.rsplit(":", 1)[1]),
            log_level="warning",
            lifespan="off",
            interface="asgi3",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        self.wait_for(lambda: self._server.started, what="the proxy to listen")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._loop is not None and self._release is not None:
            self._loop.call_soon_threadsafe(self._release.set)
        self._server.should_exit = True
        self._thread.join(timeout=30)

    def wait_for(
        self, condition: Callable[[], object], *, what: str, timeout_s: float = 120
    ) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.01)

    async def _app(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        if self._release is None:
            self._loop, self._release = asyncio.get_running_loop(), asyncio.Event()
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["path"] == self.path:
            if self.passed >= self.open_for:
                self.held += 1
                await self._release.wait()
                await _answer(send, 503, b'{"status":"failed","message":"proxy closed"}')
                return
            self.passed += 1
        headers = [(k.decode(), v.decode()) for k, v in scope["headers"] if k != b"host"]
        async with httpx.AsyncClient(base_url=self.upstream, timeout=60) as client:
            response = await client.request(
                scope["method"],
                scope["path"],
                params=scope["query_string"].decode(),
                headers=headers,
                content=body,
            )
        await _answer(send, response.status_code, response.content, response.headers)


async def _answer(
    send: Send, status: int, body: bytes, headers: httpx.Headers | None = None
) -> None:
    keep = [
        (k.encode(), v.encode())
        for k, v in (headers or {"content-type": "application/json"}).items()
        if k.lower() not in ("content-length", "transfer-encoding", "connection")
    ]
    await send({"type": "http.response.start", "status": status, "headers": keep})
    await send({"type": "http.response.body", "body": body})

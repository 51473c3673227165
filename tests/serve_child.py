"""`kv-reco serve` as a tests/proc.py ``Child``: its output readable while it runs."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import httpx2 as httpx

from .conftest import KV, free_port
from .proc import Child


def ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@contextlib.contextmanager
def serve_child(
    env: dict[str, str], *args: str, timeout_s: float = 60
) -> Iterator[tuple[Child, str]]:
    """Start `kv-reco serve` on a free port with ``args``; yield it and its URL once ready."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with Child([KV, "serve", "--port", str(port), *args], env=env) as child:
        child.wait_for(lambda: ready(url), what="serve to become ready", timeout_s=timeout_s)
        yield child, url

"""`kv-reco serve` as a tests/proc.py ``Child``: its output readable while it runs."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from .conftest import Service
from .proc import Child


@contextlib.contextmanager
def serve_child(
    env: dict[str, str], *args: str, timeout_s: float = 60
) -> Iterator[tuple[Child, str]]:
    """Start `kv-reco serve` on a free port with ``args``; yield it and its URL once ready."""
    with Service(env, *args, ready_timeout_s=timeout_s) as service:
        yield service.child, service.url

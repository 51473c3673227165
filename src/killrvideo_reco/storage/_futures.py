"""Timers on bare futures, cheaper than wait_for (no task, no extra future)."""

from __future__ import annotations

import asyncio
from typing import Any


def expire(future: asyncio.Future[Any]) -> None:
    """A loop.call_later callback: fail ``future`` with TimeoutError unless it is done."""
    if not future.done():
        future.set_exception(TimeoutError())

"""What the store reports about its statements, for whoever measures them (the API's metrics)."""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import Protocol, TypeVar

from ..errors import RecoError, StorageUnavailable

T = TypeVar("T")


class StoreObserver(Protocol):
    def statement(self, name: str, seconds: float) -> None:
        """A statement that a request awaited finished: its name and its time."""

    def statement_failed(self, name: str, kind: str) -> None:
        """A statement failed; ``kind`` names the error (WriteTimeout, OperationTimedOut…)."""

    def slot_waited(self, seconds: float) -> None:
        """An ingest write got one of the in-flight slots after waiting ``seconds``."""


class Unobserved:
    """The default: nobody listens (the CLI, tests that do not look)."""

    def statement(self, name: str, seconds: float) -> None:
        pass

    def statement_failed(self, name: str, kind: str) -> None:
        pass

    def slot_waited(self, seconds: float) -> None:
        pass


async def observed(observer: StoreObserver, name: str, pending: Awaitable[T]) -> T:
    """Await a statement, telling ``observer`` its time, or its failure's kind."""
    started = time.perf_counter()
    try:
        result = await pending
    except StorageUnavailable as exc:
        observer.statement_failed(name, exc.kind)
        raise
    except RecoError as exc:
        observer.statement_failed(name, type(exc).__name__)
        raise
    observer.statement(name, time.perf_counter() - started)
    return result

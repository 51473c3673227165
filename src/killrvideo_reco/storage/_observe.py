"""What the store reports about its statements, for whoever measures them (the API's metrics)."""

from __future__ import annotations

from typing import Protocol


class StoreObserver(Protocol):
    def statement(self, name: str, path: str, seconds: float) -> None:
        """A statement that a request awaited finished: its name, "fast" or "driver", its time."""

    def statement_failed(self, name: str, path: str, kind: str) -> None:
        """A statement failed; ``kind`` names the error (WriteTimeout, OperationTimedOut…)."""

    def slot_waited(self, seconds: float) -> None:
        """An ingest write got one of the in-flight slots after waiting ``seconds``."""


class Unobserved:
    """The default: nobody listens (the CLI, tests that do not look)."""

    def statement(self, name: str, path: str, seconds: float) -> None:
        pass

    def statement_failed(self, name: str, path: str, kind: str) -> None:
        pass

    def slot_waited(self, seconds: float) -> None:
        pass

"""A client for pipelines: batches through the API, with retries, sync or async.

    async with AsyncRecoClient("http://127.0.0.1:8080", token) as reco:
        summary = await reco.ingest_many(pairs)          # (videoId, vector) pairs

    with RecoClient("http://127.0.0.1:8080", token) as reco:
        results = reco.ingest_batch(items)

Vectors travel as base64 float32 (little-endian), about 4x smaller than JSON
text. Ingest is idempotent, so whatever did not surely land is sent again:
timeouts, connection errors, 429 and 5xx answers of the whole request, and the
items that came back 503, with exponential backoff, jitter and the server's
Retry-After. Items the server refused (404, 422) are final.

It speaks HTTP only: it needs no driver and no access to Cassandra.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from types import TracebackType
from typing import Any, Self

import httpx
import numpy as np
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from .domain.vectors import Similarity, VectorSpec

log = logging.getLogger(__name__)

BATCH_PATH = "/api/v1/reco/ingest/batch"
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class Item:
    video_id: str
    vector: Any  # a sequence of numbers or a numpy array


@dataclass(frozen=True, slots=True)
class ItemResult:
    video_id: str | None
    code: int  # what the single endpoint gives: 202 accepted, 404, 422, 503...
    message: str

    @property
    def accepted(self) -> bool:
        return self.code == 202


@dataclass(slots=True)
class Summary:
    accepted: int = 0
    failed: Counter[int] = field(default_factory=Counter)  # by status code
    retried: int = 0  # items sent more than once
    failures: list[ItemResult] = field(default_factory=list)

    def add(self, results: Iterable[ItemResult]) -> None:
        for result in results:
            if result.accepted:
                self.accepted += 1
            else:
                self.failed[result.code] += 1
                self.failures.append(result)

    @property
    def total_failed(self) -> int:
        return sum(self.failed.values())


@dataclass(frozen=True, slots=True)
class ServerSchema:
    spec: VectorSpec
    column: str  # the vector column the service writes (content_features by default)


class RequestFailed(Exception):
    """The server refused the whole request (auth, body, limits): retrying cannot help."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(f"{status_code}: {message}")
        self.status_code = status_code
        self.message = message


class _TryAgain(Exception):
    def __init__(self, reason: str, retry_after_s: float = 0.0) -> None:
        super().__init__(reason)
        self.retry_after_s = retry_after_s


def encode_vector(vector: Any) -> str:
    """base64 of little-endian float32, the API's compact form."""
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")


class AsyncRecoClient:
    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout_s: float = 60.0,
        attempts: int = 8,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout_s,
            transport=transport,
        )
        self._attempts = attempts
        self._wait = wait_exponential_jitter(
            multiplier=backoff_s, max=max_backoff_s, jitter=backoff_s
        )
        self.retried = 0  # item sends beyond the first, across all calls

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def schema(self) -> ServerSchema:
        """The live vector column, dimension and similarity, as the server reads them."""
        response = await self._http.get("/readyz")
        body = response.json()
        if response.status_code != 200:
            raise RequestFailed(response.status_code, body.get("message", response.text))
        spec = VectorSpec(dimension=body["dimension"], similarity=Similarity(body["similarity"]))
        return ServerSchema(spec=spec, column=body["column"])

    async def ingest_batch(
        self, items: Sequence[Item], *, write_timestamp_us: int | None = None
    ) -> list[ItemResult]:
        """One result per item, in order; retries what may not have landed."""
        encoded = [{"videoId": it.video_id, "vector": encode_vector(it.vector)} for it in items]
        results: list[ItemResult | None] = [None] * len(items)
        pending = list(range(len(items)))
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(_TryAgain),
            wait=self._wait_for,
            stop=stop_after_attempt(self._attempts),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    if attempt.retry_state.attempt_number > 1:
                        self.retried += len(pending)
                    await self._send(encoded, pending, results, write_timestamp_us)
        except _TryAgain as exc:
            for index in pending:  # out of attempts: report them as the server did
                if results[index] is None:
                    results[index] = ItemResult(items[index].video_id, 503, str(exc))
        return [r if r is not None else ItemResult(None, 503, "not sent") for r in results]

    async def _send(
        self,
        encoded: list[dict[str, str]],
        pending: list[int],
        results: list[ItemResult | None],
        write_timestamp_us: int | None,
    ) -> None:
        """Send the ``pending`` items; leave in it those to send again."""
        body: dict[str, Any] = {"items": [encoded[i] for i in pending]}
        if write_timestamp_us is not None:
            body["writeTimestamp"] = write_timestamp_us
        try:
            response = await self._http.post(BATCH_PATH, json=body)
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            raise _TryAgain(f"{type(exc).__name__}: {exc}") from None
        if response.status_code in _RETRY_STATUSES:
            raise _TryAgain(
                f"HTTP {response.status_code}: {_message(response)}", _retry_after(response)
            )
        if response.status_code != 200:
            raise RequestFailed(response.status_code, _message(response))
        still: list[int] = []
        for index, item in zip(pending, response.json()["items"], strict=True):
            result = ItemResult(item.get("videoId"), item["code"], item["message"])
            results[index] = result
            if result.code == 503:
                still.append(index)
        pending[:] = still
        if still:
            raise _TryAgain(f"{len(still)} items got 503", _retry_after(response))

    def _wait_for(self, state: RetryCallState) -> float:
        backoff: float = self._wait(state)
        outcome = state.outcome
        exc = outcome.exception() if outcome is not None else None
        retry_after = exc.retry_after_s if isinstance(exc, _TryAgain) else 0.0
        wait = max(backoff, retry_after)
        log.info("%s; sending again in %.2f s (Retry-After: %g s)", exc, wait, retry_after)
        return wait

    async def ingest_many(
        self,
        items: Iterable[Item],
        *,
        batch_size: int = 200,
        concurrency: int = 4,
        write_timestamp_us: int | None = None,
        on_batch: Callable[[int, list[ItemResult]], None] | None = None,
    ) -> Summary:
        """Send every item in batches, ``concurrency`` batches at a time.

        ``on_batch(number, results)`` runs after each batch, numbered from 0 in
        input order (they may finish out of order).
        """
        summary = Summary()
        batches = enumerate(_chunks(items, batch_size))

        async def worker() -> None:
            for number, batch in batches:  # one shared iterator: no batch twice
                results = await self.ingest_batch(batch, write_timestamp_us=write_timestamp_us)
                summary.add(results)
                if on_batch is not None:
                    on_batch(number, results)

        before = self.retried
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        summary.retried = self.retried - before
        return summary


class RecoClient:
    """The same client for synchronous code (an Airflow task, a notebook)."""

    def __init__(self, base_url: str, token: str, **options: Any) -> None:
        self._runner = asyncio.Runner()
        self._client: AsyncRecoClient = self._runner.run(_make(base_url, token, options))

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._runner.run(self._client.aclose())
        self._runner.close()

    def schema(self) -> ServerSchema:
        return self._runner.run(self._client.schema())

    def ingest_batch(
        self, items: Sequence[Item], *, write_timestamp_us: int | None = None
    ) -> list[ItemResult]:
        return self._runner.run(
            self._client.ingest_batch(items, write_timestamp_us=write_timestamp_us)
        )

    def ingest_many(self, items: Iterable[Item], **options: Any) -> Summary:
        return self._runner.run(self._client.ingest_many(items, **options))


async def _make(base_url: str, token: str, options: dict[str, Any]) -> AsyncRecoClient:
    # Built on the runner's loop, which its connection pool belongs to.
    return AsyncRecoClient(base_url, token, **options)


def _chunks(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def _message(response: httpx.Response) -> str:
    try:
        return str(response.json().get("message", response.text))
    except ValueError:
        return response.text[:200]


def _retry_after(response: httpx.Response) -> float:
    value = response.headers.get("retry-after", "")
    return float(value) if value.isdigit() else 0.0

"""Prometheus metrics; exposed on GET /metrics (deploy/grafana-dashboard.json charts them).

With ``kv-reco serve --workers N`` (N > 1) the workers share prometheus_client's
multiprocess mode: ``serve`` points PROMETHEUS_MULTIPROC_DIR at a fresh
directory before the workers start, each writes its samples there, and
whichever worker answers a scrape reads them all, so /metrics shows the
service's totals whichever worker answers. The gauges read from the live
stores are published there by each worker once a second (``publish_loop``).

The storage layer knows nothing of Prometheus: it reports statements and slot
waits to an observer (``storage.StoreObserver``), and the live stores are read
at scrape time for what they hold (slots in use, the schema).
"""

from __future__ import annotations

import asyncio
import math
import os
import weakref
from collections.abc import Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..errors import RecoError, StorageUnavailable
from ..storage import CassandraStore

# Fine buckets around the spec's 25 ms budget.
_LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.015,
    0.02,
    0.025,
    0.03,
    0.04,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.5,
    1,
    2.5,
    5,
)


class _RequestSeconds:
    """``kv_reco_http_request_seconds{route,method,status}``, children cached per label set."""

    def __init__(self) -> None:
        self._histogram = Histogram(
            "kv_reco_http_request_seconds",
            "HTTP request latency, from the first byte seen to the response, by route template",
            ["route", "method", "status"],
            buckets=_LATENCY_BUCKETS,
        )
        self._children: dict[tuple[str, str, int], Histogram] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self._histogram.labels(route, method, str(status))
        child.observe(seconds)


REQUEST_SECONDS = _RequestSeconds()
# Set by `serve --workers N` before the workers start (prometheus_client reads
# it when it is first imported, so it cannot be turned on later).
MULTIPROCESS = "PROMETHEUS_MULTIPROC_DIR" in os.environ

REQUESTS_IN_FLIGHT = Gauge(
    "kv_reco_http_requests_in_flight",
    "HTTP requests being served now, this scrape included",
    multiprocess_mode="livesum",
)

_INGESTS = Counter(
    "kv_reco_ingests",
    "Ingested vectors (single and batch items) by outcome and refusal reason",
    ["outcome", "reason"],
)
_ACCEPTED = _INGESTS.labels("accepted", "")
_OUTCOMES = {4: "refused", 5: "unavailable"}


def count_accepted(n: int = 1) -> None:
    _ACCEPTED.inc(n)


def count_refused(exc: RecoError) -> None:
    """One ingest refused: 4xx ``refused``, 503 ``unavailable``; the reason is the error's kind."""
    reason = exc.kind if isinstance(exc, StorageUnavailable) else type(exc).__name__
    _INGESTS.labels(_OUTCOMES.get(exc.status_code // 100, "failed"), reason).inc()


# For accepted (202) single ingests only: a fast 503 must not make an overloaded
# service look quick. `make bench` reads it.
ACCEPTED_SECONDS = Histogram(
    "kv_reco_ingest_accepted_seconds",
    "Latency of accepted (202) ingests, from routing to response",
    buckets=_LATENCY_BUCKETS[3:],
)

_STATEMENT_SECONDS = Histogram(
    "kv_reco_cassandra_statement_seconds",
    "Latency of the statements a request awaits, by statement",
    ["statement"],
    buckets=_LATENCY_BUCKETS,
)
_CASSANDRA_ERRORS = Counter(
    "kv_reco_cassandra_errors",
    "Failed Cassandra statements, by error type (the driver's or the server's name)",
    ["kind"],
)
_SLOT_WAIT_SECONDS = Histogram(
    "kv_reco_write_slot_wait_seconds",
    "Time an ingest write waited for an in-flight slot (0 when one was free)",
    buckets=(0.0, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
)


class PrometheusObserver:
    """The storage layer's observer (storage.StoreObserver), into the metrics above."""

    def __init__(self) -> None:
        self._statements: dict[str, Histogram] = {}

    def statement(self, name: str, seconds: float) -> None:
        child = self._statements.get(name)
        if child is None:
            child = self._statements[name] = _STATEMENT_SECONDS.labels(name)
        child.observe(seconds)

    def statement_failed(self, name: str, kind: str) -> None:
        _CASSANDRA_ERRORS.labels(kind).inc()

    def slot_waited(self, seconds: float) -> None:
        _SLOT_WAIT_SECONDS.observe(seconds)


OBSERVER = PrometheusObserver()


# One list for both the single-process collector and the workers' published gauge.
SCHEMA_LABELS = ("keyspace", "column", "dimension", "similarity", "beam_width", "max_connections")


class _FromStores(Collector):
    """What the live stores hold, read at scrape time."""

    def __init__(self) -> None:
        self.stores: weakref.WeakSet[CassandraStore] = weakref.WeakSet()

    def collect(self) -> Iterator[Metric]:
        stores = list(self.stores)
        yield GaugeMetricFamily(
            "kv_reco_writes_in_flight",
            "Ingest writes holding a slot now (at most kv_reco_write_limit)",
            value=sum(store.in_flight for store in stores),
        )
        yield GaugeMetricFamily(
            "kv_reco_writes_waiting",
            "Ingest writes waiting for a slot now",
            value=sum(store.waiting for store in stores),
        )
        yield GaugeMetricFamily(
            "kv_reco_write_limit",
            "Ingest writes allowed in flight now: KV_MAX_IN_FLIGHT, or the adaptive limit "
            "(KV_LIMIT_MODE)",
            value=sum(store.writer.limit for store in stores),
        )
        floors = [f for store in stores if (f := store.writer.latency_floor_s) is not None]
        yield GaugeMetricFamily(
            "kv_reco_write_latency_floor_seconds",
            "The adaptive limit's measured floor: the long average of write latency "
            "(NaN when fixed or not yet measured)",
            value=min(floors) if floors else math.nan,
        )
        schema = GaugeMetricFamily(
            "kv_reco_schema_info",
            "The vector column in force: 1 for each keyspace and column served",
            labels=list(SCHEMA_LABELS),
        )
        seen = set()
        for store in stores:
            spec = store.spec
            if spec is not None:
                graph = spec.graph
                labels = (
                    store.keyspace,
                    store.column,
                    str(spec.dimension),
                    spec.similarity.value,
                    # The live index's graph options, read with the dimension.
                    str(graph.beam_width) if graph else "",
                    str(graph.max_connections) if graph else "",
                )
                if labels not in seen:
                    seen.add(labels)
                    schema.add_metric(list(labels), 1)
        yield schema


FROM_STORES = _FromStores()


class _Published:
    """The store gauges as multiprocess gauges, for the workers of `serve --workers N`."""

    def __init__(self) -> None:
        def gauge(name: str, mode: str, labels: tuple[str, ...] = ()) -> Gauge:
            return Gauge(name, "", labels, registry=None, multiprocess_mode=mode)  # type: ignore[arg-type]

        self.gauges = {
            "kv_reco_writes_in_flight": gauge("kv_reco_writes_in_flight", "livesum"),
            "kv_reco_writes_waiting": gauge("kv_reco_writes_waiting", "livesum"),
            "kv_reco_write_limit": gauge("kv_reco_write_limit", "livesum"),
            "kv_reco_write_latency_floor_seconds": gauge(
                "kv_reco_write_latency_floor_seconds", "livemin"
            ),
        }
        self.schema = gauge("kv_reco_schema_info", "livemax", SCHEMA_LABELS)

    def publish(self) -> None:
        for family in FROM_STORES.collect():
            for sample in family.samples:
                if family.name == "kv_reco_schema_info":
                    self.schema.labels(**sample.labels).set(sample.value)
                elif not math.isnan(sample.value):
                    self.gauges[family.name].set(sample.value)


if MULTIPROCESS:
    _PUBLISHED = _Published()
else:
    REGISTRY.register(FROM_STORES)


async def publish_loop(period_s: float = 1.0) -> None:
    """With several workers: publish this worker's store gauges every ``period_s``."""
    if not MULTIPROCESS:
        return
    while True:
        _PUBLISHED.publish()
        await asyncio.sleep(period_s)


def worker_exited() -> None:
    """This worker stops: its live gauges leave the sums (prometheus_client's way)."""
    if MULTIPROCESS:
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


def exposition() -> tuple[bytes, str]:
    """The /metrics body and its content type: this process's, or every worker's."""
    if MULTIPROCESS:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST

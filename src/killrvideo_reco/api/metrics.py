"""Prometheus metrics; exposed on GET /metrics (deploy/grafana-dashboard.json charts them).

The storage layer knows nothing of Prometheus: it reports statements and slot
waits to an observer (``storage.StoreObserver``), and the live stores are read
at scrape time for what they hold (slots in use, the schema).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
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
REQUESTS_IN_FLIGHT = Gauge(
    "kv_reco_http_requests_in_flight", "HTTP requests being served now, this scrape included"
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
    "Time an ingest write waited for one of KV_MAX_IN_FLIGHT slots (0 when one was free)",
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


class _FromStores(Collector):
    """What the live stores hold, read at scrape time."""

    def __init__(self) -> None:
        self.stores: weakref.WeakSet[CassandraStore] = weakref.WeakSet()

    def collect(self) -> Iterator[Metric]:
        stores = list(self.stores)
        yield GaugeMetricFamily(
            "kv_reco_writes_in_flight",
            "Ingest writes holding a slot now (at most KV_MAX_IN_FLIGHT per process)",
            value=sum(store.in_flight for store in stores),
        )
        yield GaugeMetricFamily(
            "kv_reco_writes_waiting",
            "Ingest writes waiting for a slot now",
            value=sum(store.waiting for store in stores),
        )
        schema = GaugeMetricFamily(
            "kv_reco_schema_info",
            "The vector column in force: 1 for each keyspace and column served",
            labels=[
                "keyspace", "column", "dimension", "similarity", "beam_width", "max_connections",
            ],
        )  # fmt: skip
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
REGISTRY.register(FROM_STORES)

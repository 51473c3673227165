"""Prometheus counters; exposed on GET /metrics."""

from __future__ import annotations

import weakref
from collections import Counter as Tally
from collections.abc import Iterator

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from ..storage import CassandraStore

INGESTS = Counter("kv_reco_ingest_requests", "Ingest requests by HTTP status", ["status"])
CASSANDRA_ERRORS = Counter(
    "kv_reco_cassandra_errors", "Cassandra errors answered with 503, by driver error", ["kind"]
)

# Fine buckets around the spec's 25 ms budget, for accepted ingests only: a fast
# 503 must not make an overloaded service look quick.
ACCEPTED_SECONDS = Histogram(
    "kv_reco_ingest_accepted_seconds",
    "Latency of accepted (202) ingests, from routing to response",
    buckets=(
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
    ),
)


class _WritesByPath(Collector):
    """Ingest writes by path ("fast" or "driver"), read from the live stores."""

    def __init__(self) -> None:
        self.stores: weakref.WeakSet[CassandraStore] = weakref.WeakSet()

    def collect(self) -> Iterator[Metric]:
        totals: Tally[str] = Tally()
        for store in list(self.stores):
            totals.update(store.writes_by_path)
        family = CounterMetricFamily(
            "kv_reco_cassandra_writes", "Ingest writes sent to Cassandra, by path", labels=["path"]
        )
        for path in ("fast", "driver"):
            family.add_metric([path], totals[path])
        yield family


WRITES_BY_PATH = _WritesByPath()
REGISTRY.register(WRITES_BY_PATH)

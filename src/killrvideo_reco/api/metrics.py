"""Prometheus counters; exposed on GET /metrics."""

from __future__ import annotations

from prometheus_client import Counter

INGESTS = Counter("kv_reco_ingest_requests", "Ingest requests by HTTP status", ["status"])
CASSANDRA_ERRORS = Counter(
    "kv_reco_cassandra_errors", "Cassandra errors answered with 503, by driver error", ["kind"]
)

"""Prometheus counters; exposed on GET /metrics."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

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

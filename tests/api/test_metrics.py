"""GET /metrics: what the service exposes, and the Grafana dashboard that charts it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from killrvideo_reco.config import Settings
from killrvideo_reco.domain.videos import Video

from ..conftest import DIM

DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana-dashboard.json"
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gauge": ("",),
}


def exposed(client: TestClient) -> tuple[set[str], dict[tuple[str, frozenset[Any]], float]]:
    """Every series name /metrics can show, from its TYPE lines; and the samples now."""
    names: set[str] = set()
    samples: dict[tuple[str, frozenset[Any]], float] = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return names, samples


def expressions(node: object) -> list[str]:
    if isinstance(node, dict):
        found = [node["expr"]] if isinstance(node.get("expr"), str) else []
        return found + [e for value in node.values() for e in expressions(value)]
    if isinstance(node, list):
        return [e for value in node for e in expressions(value)]
    return []


def test_every_metric_the_dashboard_uses_is_exposed(client: TestClient) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = expressions(dashboard["panels"]) + [
        v["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"
    ]
    used = {name for e in exprs for name in re.findall(r"\bkv_reco_[a-z0-9_]+", e)}
    names, _ = exposed(client)
    assert len(used) >= 10, used
    assert used - names == set(), (
        f"the dashboard charts metrics the service does not expose: {used - names}"
    )


def test_schema_info_names_what_is_in_force(client: TestClient, settings: Settings) -> None:
    _, samples = exposed(client)
    labels = {
        "keyspace": settings.keyspace,
        "column": "content_features",
        "dimension": str(DIM),
        "similarity": "cosine",
        # The live index's graph options: the session store applied the defaults.
        "beam_width": str(settings.index_beam_width),
        "max_connections": str(settings.index_max_connections),
    }
    assert samples[("kv_reco_schema_info", frozenset(labels.items()))] == 1


def test_an_ingest_is_counted_timed_and_its_statement_measured(
    client: TestClient, video: Video, creator_headers: dict[str, str]
) -> None:
    _, before = exposed(client)
    body = {"videoId": str(video.videoid), "vector": [0.1] * DIM}
    assert client.post("/api/v1/reco/ingest", json=body, headers=creator_headers).status_code == 202
    unknown = {"videoId": "550e8400-e29b-41d4-a716-446655440000", "vector": [0.1] * DIM}
    assert (
        client.post("/api/v1/reco/ingest", json=unknown, headers=creator_headers).status_code == 404
    )
    _, after = exposed(client)

    def grew(name: str, **labels: str) -> float:
        key = (name, frozenset(labels.items()))
        return after.get(key, 0) - before.get(key, 0)

    route = "/api/v1/reco/ingest"
    assert grew("kv_reco_http_request_seconds_count", route=route, method="POST", status="202") == 1
    assert grew("kv_reco_http_request_seconds_count", route=route, method="POST", status="404") == 1
    assert grew("kv_reco_ingests_total", outcome="accepted", reason="") == 1
    assert grew("kv_reco_ingests_total", outcome="refused", reason="VideoNotFound") == 1
    assert grew("kv_reco_write_slot_wait_seconds_count") == 2
    assert grew("kv_reco_cassandra_statement_seconds_count", statement="set_features") == 2
    assert after[("kv_reco_writes_in_flight", frozenset())] == 0
    assert after[("kv_reco_writes_waiting", frozenset())] == 0

"""Health, readiness, OpenAPI, and Cassandra trouble answered with 503."""

from __future__ import annotations

import uuid

import numpy as np
from fastapi.testclient import TestClient

from killrvideo_reco.api import create_app
from killrvideo_reco.config import Settings
from killrvideo_reco.domain.vectors import Similarity
from killrvideo_reco.domain.videos import Video
from killrvideo_reco.storage import CassandraStore

from ..conftest import DIM, scratch_keyspace


def test_healthz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_readyz_reports_the_live_schema(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "dimension": DIM,
        "similarity": "cosine",
        "column": "content_features",
        "nodesUp": 1,
        "nodes": 1,
    }


def test_without_schema_the_service_is_not_ready_until_it_is_applied(
    settings: Settings, creator_headers: dict[str, str]
) -> None:
    fresh = settings.model_copy(update={"keyspace": scratch_keyspace("late")})
    store = CassandraStore.open(fresh)
    try:
        with TestClient(create_app(fresh)) as client:
            not_ready = client.get("/readyz")
            assert (
                not_ready.status_code == 503
                and "kv-reco schema apply" in not_ready.json()["message"]
            )
            body = {"videoId": str(uuid.uuid4()), "vector": [0.1] * 8}
            refused = client.post("/api/v1/reco/ingest", json=body, headers=creator_headers)
            assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
            store.schema.apply(dimension=8, similarity=Similarity.DOT_PRODUCT, replication_factor=1)
            assert client.get("/readyz").json() == {
                "status": "ready",
                "dimension": 8,
                "similarity": "dot_product",
                "column": "content_features",
                "nodesUp": 1,
                "nodes": 1,
            }
            video = Video(name="late")
            store.videos.insert([video])
            # The dimension comes from the live schema, not from code: 8 here.
            ok = client.post(
                "/api/v1/reco/ingest",
                json={"videoId": str(video.videoid), "vector": [8**-0.5] * 8},
                headers=creator_headers,
            )
            assert ok.status_code == 202, ok.text
            wrong = client.post(
                "/api/v1/reco/ingest",
                json={"videoId": str(video.videoid), "vector": [0.5] * DIM},
                headers=creator_headers,
            )
            assert (
                wrong.json()["message"]
                == f"vector has {DIM} values, expected 8 (the index is vector<float, 8>)"
            )
    finally:
        store.schema.execute(f"DROP KEYSPACE IF EXISTS {fresh.keyspace}")
        store.close()


def test_a_cassandra_timeout_is_503_with_retry_after_and_counted(
    settings: Settings, store: CassandraStore, video: Video, creator_headers: dict[str, str]
) -> None:
    # A request timeout far below any real round trip: the driver gives up
    # (OperationTimedOut) against the real node.
    hasty = settings.model_copy(update={"request_timeout_s": 1e-6, "retry_after_s": 7})
    with TestClient(create_app(hasty)) as client:
        before = scraped(client)
        body = {"videoId": str(video.videoid), "vector": [0.1] * DIM}
        response = client.post("/api/v1/reco/ingest", json=body, headers=creator_headers)
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "7"
        assert response.json()["status"] == "failed"
        assert "Cassandra is unavailable (OperationTimedOut)" in response.json()["message"]
        after = scraped(client)
    # Counted once each, by this request: earlier tests made the same labels.
    errors = 'kv_reco_cassandra_errors_total{kind="OperationTimedOut"}'
    refusals = 'kv_reco_ingests_total{outcome="unavailable",reason="OperationTimedOut"}'
    assert after[errors] == before.get(errors, 0) + 1
    assert after[refusals] == before.get(refusals, 0) + 1


def scraped(client: TestClient) -> dict[str, float]:
    """The /metrics page as {'name{labels}': value}."""
    samples = {}
    for line in client.get("/metrics").text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def test_openapi_documents_every_response_of_the_endpoint(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    operation = spec["paths"]["/api/v1/reco/ingest"]["post"]
    assert set(operation["responses"]) >= {
        "202",
        "400",
        "401",
        "403",
        "404",
        "413",
        "415",
        "422",
        "503",
    }
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert set(schema["required"]) == {"videoId", "vector"}
    assert client.get("/docs").status_code == 200


async def test_overload_is_503_with_retry_after_never_500(
    settings: Settings,
    store: CassandraStore,
    creator_headers: dict[str, str],
    rng: np.random.Generator,
) -> None:
    import asyncio

    import httpx2

    tight = settings.model_copy(
        update={
            "limit_mode": "fixed",
            "max_in_flight": 1,
            "queue_timeout_ms": 0,
            "retry_after_s": 2,
        }
    )
    app = create_app(tight)
    videos = [Video(name=f"crowd {i}") for i in range(10)]
    store.videos.insert(videos)
    async with app.router.lifespan_context(app):
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://kv") as client:
            responses = await asyncio.gather(
                *(
                    client.post(
                        "/api/v1/reco/ingest",
                        json={
                            "videoId": str(v.videoid),
                            "vector": rng.standard_normal(DIM).tolist(),
                        },
                        headers=creator_headers,
                    )
                    for v in videos
                )
            )
    codes = sorted(r.status_code for r in responses)
    assert set(codes) == {202, 503}, codes
    for r in responses:
        if r.status_code == 503:
            assert r.headers["Retry-After"] == "2"
            assert "1 writes are already in flight" in r.json()["message"]
    refused = {v.videoid for v, r in zip(videos, responses, strict=True) if r.status_code == 503}
    for vid in refused:  # a refused request wrote nothing
        row = store.videos.read(vid)
        assert row is not None and row["content_features"] is None

"""GET related videos: true nearest neighbours, in order, with the index's scores."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient

from killrvideo_reco.api import create_app
from killrvideo_reco.config import Settings
from killrvideo_reco.domain.vectors import Similarity, pack_vector
from killrvideo_reco.domain.videos import Video
from killrvideo_reco.storage import CassandraStore

from ..conftest import KV, scratch_keyspace

DIM = 16
N = 60


@pytest.fixture(scope="module")
def catalogue(settings: Settings) -> Iterator[tuple[Settings, list[Video], np.ndarray, Video]]:
    """A small catalogue with known vectors, and one video without a vector."""
    local = settings.model_copy(update={"keyspace": scratch_keyspace("related")})
    store = CassandraStore.open(local)
    try:
        spec = store.schema.apply(dimension=DIM, similarity=Similarity.COSINE, replication_factor=1)
        store.load_schema()
        rng = np.random.default_rng(11)
        vectors = rng.standard_normal((N, DIM)).astype(np.float32)
        videos = [
            Video(name=f"video {i}", thumbnail_url=f"https://img/{i}.jpg" if i % 2 else None)
            for i in range(N)
        ]
        bare = Video(name="no vector yet")
        store.videos.insert([*videos, bare])

        async def load() -> None:
            for video, vector in zip(videos, vectors, strict=True):
                await store.writer.set_content_features(
                    video.videoid, pack_vector(vector.tolist(), spec)
                )

        import asyncio

        asyncio.run(load())
        yield local, videos, vectors, bare
    finally:
        store.schema.execute(f"DROP KEYSPACE IF EXISTS {local.keyspace}")
        store.close()


@pytest.fixture(scope="module")
def client(catalogue: tuple[Settings, list[Video], np.ndarray, Video]) -> Iterator[TestClient]:
    with TestClient(create_app(catalogue[0])) as client:
        yield client


def exact_top(vectors: np.ndarray, i: int, k: int) -> tuple[list[int], list[float]]:
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    cos = unit @ unit[i]
    cos[i] = -np.inf
    order = np.argsort(-cos)[:k]
    return order.tolist(), ((1 + cos[order]) / 2).tolist()


@pytest.mark.parametrize("path", ["/api/v1/videos/id/{}/related", "/api/v1/videos/{}/related"])
def test_related_returns_the_true_nearest_neighbours_in_order(
    client: TestClient, catalogue, path: str
) -> None:  # type: ignore[no-untyped-def]
    _, videos, vectors, _ = catalogue
    for i in (0, 7, 42):
        response = client.get(path.format(videos[i].videoid), params={"limit": 5})
        assert response.status_code == 200, response.text
        items = response.json()
        expected, scores = exact_top(vectors, i, 5)
        assert [item["videoId"] for item in items] == [str(videos[j].videoid) for j in expected]
        assert [item["score"] for item in items] == pytest.approx(scores, abs=1e-4)
        assert all(0 <= item["score"] <= 1 for item in items)
        assert str(videos[i].videoid) not in {item["videoId"] for item in items}
        for item, j in zip(items, expected, strict=True):
            assert item["title"] == videos[j].name
            assert item.get("thumbnailUrl") == videos[j].thumbnail_url


def test_the_default_limit_is_10(client: TestClient, catalogue) -> None:  # type: ignore[no-untyped-def]
    assert len(client.get(f"/api/v1/videos/id/{catalogue[1][3].videoid}/related").json()) == 10


@pytest.mark.parametrize("limit", [0, -1, 101])
def test_limit_is_bounded(client: TestClient, catalogue, limit: int) -> None:  # type: ignore[no-untyped-def]
    response = client.get(
        f"/api/v1/videos/id/{catalogue[1][0].videoid}/related", params={"limit": limit}
    )
    assert response.status_code == 422
    assert response.json() == {
        "status": "failed",
        "message": f"limit must be between 1 and 100, got {limit}",
    }


def test_limit_100_is_allowed(client: TestClient, catalogue) -> None:  # type: ignore[no-untyped-def]
    items = client.get(
        f"/api/v1/videos/id/{catalogue[1][0].videoid}/related", params={"limit": 100}
    ).json()
    assert len(items) == N - 1  # everyone but itself


@pytest.mark.parametrize("overfetch", [1, 10])
def test_every_overfetch_gives_the_exact_order_up_to_limit_100(catalogue, overfetch: int) -> None:  # type: ignore[no-untyped-def]
    # 10 would ask the index for 1,001 candidates, one more than Cassandra allows.
    local, videos, vectors, _ = catalogue
    settings = local.model_copy(update={"related_overfetch": overfetch})
    with TestClient(create_app(settings)) as client:
        response = client.get(
            f"/api/v1/videos/id/{videos[5].videoid}/related", params={"limit": 100}
        )
    assert response.status_code == 200, response.text
    items = response.json()
    expected, scores = exact_top(vectors, 5, N - 1)
    assert [item["videoId"] for item in items] == [str(videos[j].videoid) for j in expected]
    assert [item["score"] for item in items] == pytest.approx(scores, abs=1e-4)


def test_an_unknown_video_is_404(client: TestClient) -> None:
    missing = uuid.uuid4()
    response = client.get(f"/api/v1/videos/id/{missing}/related")
    assert response.status_code == 404
    assert response.json()["message"] == f"video {missing} does not exist"


def test_a_video_without_an_embedding_gets_an_empty_list(client: TestClient, catalogue) -> None:  # type: ignore[no-untyped-def]
    response = client.get(f"/api/v1/videos/id/{catalogue[3].videoid}/related")
    assert response.status_code == 200
    assert response.json() == []


def test_a_bad_video_id_is_422(client: TestClient) -> None:
    response = client.get("/api/v1/videos/id/not-a-uuid/related")
    assert response.status_code == 422
    assert "videoId must be a UUID" in response.json()["message"]


def test_anonymous_and_viewer_reads_are_allowed_bad_tokens_are_not(
    client: TestClient, catalogue
) -> None:  # type: ignore[no-untyped-def]
    from killrvideo_reco.auth import mint_token

    url = f"/api/v1/videos/id/{catalogue[1][0].videoid}/related"
    viewer = mint_token(catalogue[0], roles=["viewer"])
    assert client.get(url).status_code == 200
    assert client.get(url, headers={"Authorization": f"Bearer {viewer}"}).status_code == 200
    bad = client.get(url, headers={"Authorization": "Bearer nonsense"})
    assert bad.status_code == 401 and bad.json()["status"] == "failed"


def test_cli_related_prints_names_and_scores(catalogue) -> None:  # type: ignore[no-untyped-def]
    local, videos, vectors, _ = catalogue
    import os

    env = {**os.environ, "KV_KEYSPACE": local.keyspace}
    done = subprocess.run(
        [KV, "related", str(videos[7].videoid), "--limit", "3"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    expected, scores = exact_top(vectors, 7, 3)
    lines = done.stdout.strip().splitlines()
    assert [line.split()[1] for line in lines] == [str(videos[j].videoid) for j in expected]
    assert [float(line.split()[0]) for line in lines] == pytest.approx(scores, abs=1e-3)
    assert lines[0].endswith(videos[expected[0]].name)

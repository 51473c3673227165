"""The real catalogue and the real model: videos load, embed, related, on a 384-dim schema."""

from __future__ import annotations

import csv
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import numpy as np
import pytest

from killrvideo_reco.config import Settings
from killrvideo_reco.domain.vectors import Similarity
from killrvideo_reco.domain.videos import Video, embedding_text, parse_catalogue_row
from killrvideo_reco.embedding import Embedder
from killrvideo_reco.storage import CassandraStore

from ..catalogue import write_catalogue
from ..conftest import KV, scratch_keyspace, service_env, serving

Served = tuple[str, dict[str, str]]


def kv(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([KV, *args], env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def catalogue_384(
    node: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[CassandraStore, str, dict[str, str]]]:
    """A fresh 384-dim keyspace and a service on it."""
    settings = Settings(keyspace=scratch_keyspace("384"))
    store = CassandraStore.open(settings)
    store.schema.apply(dimension=384, similarity=Similarity.COSINE, replication_factor=1)
    store.load_schema()
    env = service_env(settings.keyspace, tmp_path_factory.mktemp("dev384"))
    try:
        with serving(env) as url:
            yield store, url, env
    finally:
        store.schema.execute(f"DROP KEYSPACE IF EXISTS {settings.keyspace}")
        store.close()


def test_embed_stops_before_any_work_on_a_dimension_mismatch(
    served: Served, store: CassandraStore
) -> None:
    url, env = served  # the session's 1536-dim service
    video = Video(name="Cassandra vector search")
    store.videos.insert([video])
    done = kv(env, "embed", "--url", url)
    assert done.returncode == 2
    assert "makes 384-dim vectors" in done.stderr and "vector<float, 1536>" in done.stderr
    assert "nothing was done" in done.stderr
    row = store.videos.read(video.videoid)
    assert row is not None and row["content_features"] is None


def test_catalogue_load_embed_and_related(
    catalogue_384: tuple[CassandraStore, str, dict[str, str]], tmp_path: Path
) -> None:
    store, url, env = catalogue_384
    catalogue = write_catalogue(tmp_path / "video_out.csv", count=60, without_vector=6)
    with catalogue.open(newline="") as fh:
        rows = [parse_catalogue_row(fields) for fields in csv.reader(fh)]
    with_vectors = [r for r in rows if r.vector is not None]
    without = [r.video for r in rows if r.vector is None]
    assert len(rows) == 60 and len(without) == 6
    assert any("with examples, and code" in (r.video.description or "") for r in rows)

    # 1. Metadata and the export's own vectors, through the ingest API.
    loaded = kv(env, "videos", "load", str(catalogue), "--with-vectors", "--url", url)
    assert loaded.returncode == 0, loaded.stderr
    assert "inserted 60 videos" in loaded.stderr
    assert f"vectors: accepted {len(with_vectors)}, failed 0" in loaded.stderr
    sample = with_vectors[17]
    row = store.videos.read(sample.video.videoid)
    assert row is not None
    assert (row["name"], set(row["tags"])) == (sample.video.name, set(sample.video.tags))
    assert row["content_features"] == np.float32(sample.vector).tolist()

    # 2. Only the videos without a vector get one from the real model.
    missing = kv(env, "embed", "--missing-only", "--url", url)
    assert missing.returncode == 0, missing.stderr
    assert f"embedded and sent {len(without)} videos: accepted {len(without)}" in missing.stderr
    # The model's vectors for these texts (its agreement with sentence-transformers
    # is tests/unit/test_embedding.py's).
    expected = Embedder(cache_dir=tmp_path).encode([embedding_text(v) for v in without])
    for video, vector in zip(without, expected, strict=True):
        row = store.videos.read(video.videoid)
        assert row is not None
        np.testing.assert_allclose(row["content_features"], vector, atol=1e-5)
    untouched = store.videos.read(sample.video.videoid)
    assert untouched is not None and untouched["content_features"] == row_vector(sample.vector)

    # 3. Related videos of an embedded one, scored by the index over what is stored.
    query = without[0]
    related = httpx.get(f"{url}/api/v1/videos/id/{query.videoid}/related?limit=5").json()
    assert len(related) == 5
    scores = [item["score"] for item in related]
    assert scores == sorted(scores, reverse=True)
    # The scores are those of our model's vectors: cosine mapped to [0, 1].
    neighbour = store.videos.read(uuid.UUID(related[0]["videoId"]))
    mine = store.videos.read(query.videoid)
    assert neighbour is not None and mine is not None
    cosine = float(np.dot(neighbour["content_features"], mine["content_features"]))
    assert related[0]["score"] == pytest.approx((1 + cosine) / 2, abs=1e-4)


def row_vector(vector: list[float]) -> list[float]:
    return np.float32(vector).tolist()

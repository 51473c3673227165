"""The write path on the real node: atomic existence check, exact float32, concurrency."""

import asyncio
import uuid
from collections.abc import Callable

import numpy as np
import pytest

from killrvideo_reco.domain.vectors import pack_vector
from killrvideo_reco.domain.videos import Video
from killrvideo_reco.errors import VideoNotFound
from killrvideo_reco.storage import CassandraStore


async def test_64_concurrent_vector_writes_all_succeed(
    store: CassandraStore, new_video: Callable[..., Video], rng: np.random.Generator
) -> None:
    # Above concurrent_writes = cores, Cassandra 5.0.9 fails these (CASSANDRA-21644).
    spec = store.spec
    assert spec is not None
    videos = [Video(name=f"concurrent {i}") for i in range(64)]
    store.insert_videos(videos)
    vectors = rng.standard_normal((64, spec.dimension)).astype(np.float32)
    await asyncio.gather(
        *(
            store.set_content_features(v.videoid, pack_vector(x.tolist(), spec))
            for v, x in zip(videos, vectors, strict=True)
        )
    )
    for video, vector in zip(videos, vectors, strict=True):
        row = store.read_video(video.videoid)
        assert row is not None and row["content_features"] == vector.tolist()


async def test_an_unknown_video_gets_no_ghost_row(
    store: CassandraStore, rng: np.random.Generator
) -> None:
    spec = store.spec
    assert spec is not None
    missing = uuid.uuid4()
    with pytest.raises(VideoNotFound):
        await store.set_content_features(
            missing, pack_vector(rng.standard_normal(spec.dimension).tolist(), spec)
        )
    assert store.read_video(missing) is None


async def test_a_deleted_video_is_not_resurrected(
    store: CassandraStore, new_video: Callable[..., Video], rng: np.random.Generator
) -> None:
    spec = store.spec
    assert spec is not None
    video = new_video()
    store.execute(f"DELETE FROM {store.keyspace}.videos WHERE videoid = %s", (video.videoid,))
    with pytest.raises(VideoNotFound):
        await store.set_content_features(
            video.videoid, pack_vector(rng.standard_normal(spec.dimension).tolist(), spec)
        )
    assert store.read_video(video.videoid) is None

"""The write path on the real node: atomic existence check, exact float32, concurrency."""

import asyncio
import uuid
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from killrvideo_reco.config import Settings
from killrvideo_reco.domain.vectors import pack_vector
from killrvideo_reco.domain.videos import Video
from killrvideo_reco.errors import StorageUnavailable, VideoNotFound
from killrvideo_reco.storage import CassandraStore


@pytest.fixture
def wide_store(settings: Settings, store: CassandraStore) -> Iterator[CassandraStore]:
    """A store that lets 64 writes in flight at once (``store`` applies the schema)."""
    wide = CassandraStore.open(
        settings.model_copy(update={"limit_mode": "fixed", "max_in_flight": 64})
    )
    wide.load_schema()
    yield wide
    wide.close()


async def test_64_concurrent_vector_writes_all_succeed(
    wide_store: CassandraStore, rng: np.random.Generator
) -> None:
    # Above concurrent_writes = cores, Cassandra 5.0.9 fails these (CASSANDRA-21644).
    store = wide_store
    spec = store.spec
    assert spec is not None
    videos = [Video(name=f"concurrent {i}") for i in range(64)]
    store.videos.insert(videos)
    vectors = rng.standard_normal((64, spec.dimension)).astype(np.float32)
    await asyncio.gather(
        *(
            store.writer.set_content_features(v.videoid, pack_vector(x.tolist(), spec))
            for v, x in zip(videos, vectors, strict=True)
        )
    )
    for video, vector in zip(videos, vectors, strict=True):
        row = store.videos.read(video.videoid)
        assert row is not None and row["content_features"] == vector.tolist()


async def test_an_unknown_video_gets_no_ghost_row(
    store: CassandraStore, rng: np.random.Generator
) -> None:
    spec = store.spec
    assert spec is not None
    missing = uuid.uuid4()
    with pytest.raises(VideoNotFound):
        await store.writer.set_content_features(
            missing, pack_vector(rng.standard_normal(spec.dimension).tolist(), spec)
        )
    assert store.videos.read(missing) is None


async def test_a_deleted_video_is_not_resurrected(
    store: CassandraStore, new_video: Callable[..., Video], rng: np.random.Generator
) -> None:
    spec = store.spec
    assert spec is not None
    video = new_video()
    store.schema.execute(
        f"DELETE FROM {store.keyspace}.videos WHERE videoid = %s", (video.videoid,)
    )
    with pytest.raises(VideoNotFound):
        await store.writer.set_content_features(
            video.videoid, pack_vector(rng.standard_normal(spec.dimension).tolist(), spec)
        )
    assert store.videos.read(video.videoid) is None


@pytest.mark.usefixtures("store")  # the session schema must exist
async def test_writes_beyond_the_in_flight_bound_are_refused_fast(
    settings: Settings, rng: np.random.Generator
) -> None:
    store = CassandraStore.open(
        settings.model_copy(
            update={"limit_mode": "fixed", "max_in_flight": 2, "queue_timeout_ms": 0}
        )
    )
    try:
        spec = store.load_schema()
        videos = [Video(name=f"overload {i}") for i in range(12)]
        store.videos.insert(videos)
        vectors = rng.standard_normal((12, spec.dimension))
        results = await asyncio.gather(
            *(
                store.writer.set_content_features(v.videoid, pack_vector(x.tolist(), spec))
                for v, x in zip(videos, vectors, strict=True)
            ),
            return_exceptions=True,
        )
    finally:
        store.close()
    refused = [r for r in results if isinstance(r, StorageUnavailable)]
    assert all(r is None or isinstance(r, StorageUnavailable) for r in results), results
    assert len(refused) == 10  # two slots, no waiting: the other ten are turned away at once
    assert all(
        r.kind == "Overloaded" and "2 writes are already in flight" in r.message for r in refused
    )
    written = [v for v, r in zip(videos, results, strict=True) if r is None]
    assert len(written) == 2


async def test_a_driver_error_keeps_its_consistency_and_replica_counts(
    settings: Settings, store: CassandraStore, new_video: Callable[..., Video]
) -> None:
    # THREE replicas cannot answer on a one-node cluster: the node says Unavailable.
    strict = CassandraStore.open(settings.model_copy(update={"consistency": "THREE"}))
    try:
        spec = strict.load_schema()
        with pytest.raises(StorageUnavailable) as refused:
            await strict.writer.set_content_features(
                new_video().videoid, pack_vector([0.5] * spec.dimension, spec)
            )
    finally:
        strict.close()
    error = refused.value
    assert (error.kind, error.consistency, error.required, error.received) == (
        "Unavailable",
        "THREE",
        3,
        1,
    )


async def test_a_request_timeout_is_storage_unavailable(
    settings: Settings, store: CassandraStore, new_video: Callable[..., Video]
) -> None:
    # An indexed conditional write takes milliseconds; 0.1 ms is always too short.
    hasty = CassandraStore.open(settings.model_copy(update={"request_timeout_s": 0.0001}))
    try:
        spec = hasty.load_schema()
        with pytest.raises(StorageUnavailable) as timed_out:
            await hasty.writer.set_content_features(
                new_video().videoid, pack_vector([0.5] * spec.dimension, spec)
            )
    finally:
        hasty.close()
    assert timed_out.value.kind == "OperationTimedOut"


async def test_a_bug_of_ours_is_not_disguised_as_storage_trouble(
    store: CassandraStore, new_video: Callable[..., Video]
) -> None:
    # A caller passing floats where packed bytes belong is our bug: it must
    # surface as itself (a logged 500 in the API), never as a retryable 503.
    with pytest.raises((TypeError, ValueError)) as bug:
        await store.writer.set_content_features(new_video().videoid, [0.5, 0.5])  # type: ignore[arg-type]
    assert not isinstance(bug.value, StorageUnavailable)

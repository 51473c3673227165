"""The lean write path against the real node: same results, same errors as the driver."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import numpy as np
import pytest

from killrvideo_reco.config import Settings
from killrvideo_reco.domain.vectors import pack_vector
from killrvideo_reco.domain.videos import Video
from killrvideo_reco.errors import InvalidRequest, StorageUnavailable, VideoNotFound
from killrvideo_reco.storage import CassandraStore, _wire
from killrvideo_reco.storage._fastpath import FallBack


async def warmed(settings: Settings) -> CassandraStore:
    store = CassandraStore.open(settings)
    store.load_schema()
    await store.open_fast_path()
    probe = Video(name="warm-up")
    store.insert_videos([probe])
    spec = store.spec
    assert spec is not None
    for _ in range(50):  # the first write opens the connection in the background
        await store.set_content_features(probe.videoid, pack_vector([0.5] * spec.dimension, spec))
        if store.writes_by_path["fast"]:
            return store
        await asyncio.sleep(0.1)
    raise AssertionError(f"the fast path never connected: {store.writes_by_path}")


@pytest.fixture
async def fast_store(settings: Settings, store: CassandraStore) -> AsyncIterator[CassandraStore]:
    # These tests are about the path, not admission: a burst of 20 writes must
    # not meet the default bound of 4 in flight and its 100 ms wait.
    store = await warmed(settings.model_copy(update={"max_in_flight": 32}))
    yield store
    await store.close_fast_path()
    store.close()


async def test_writes_take_the_fast_path_and_store_exact_float32(
    fast_store: CassandraStore, rng: np.random.Generator
) -> None:
    spec = fast_store.spec
    assert spec is not None
    videos = [Video(name=f"fast {i}") for i in range(20)]
    fast_store.insert_videos(videos)
    vectors = rng.standard_normal((20, spec.dimension))
    before = fast_store.writes_by_path["fast"]
    await asyncio.gather(
        *(
            fast_store.set_content_features(v.videoid, pack_vector(x.tolist(), spec))
            for v, x in zip(videos, vectors, strict=True)
        )
    )
    assert fast_store.writes_by_path["fast"] - before == 20
    for video, vector in zip(videos, vectors, strict=True):
        row = fast_store.read_video(video.videoid)
        assert row is not None and row["content_features"] == np.float32(vector).tolist()


async def test_an_unknown_video_is_not_found_and_not_created(fast_store: CassandraStore) -> None:
    spec = fast_store.spec
    assert spec is not None
    missing = uuid.uuid4()
    before = fast_store.writes_by_path["fast"]
    with pytest.raises(VideoNotFound):
        await fast_store.set_content_features(missing, pack_vector([0.5] * spec.dimension, spec))
    assert fast_store.writes_by_path["fast"] == before + 1
    assert fast_store.read_video(missing) is None


async def test_server_errors_become_our_errors(fast_store: CassandraStore) -> None:
    prepared = fast_store._prepared
    assert prepared is not None and fast_store._fast is not None
    video = Video(name="victim")
    fast_store.insert_videos([video])
    key = video.videoid.bytes
    # A vector of the wrong byte length, sent without our validation: the node refuses it.
    with pytest.raises(InvalidRequest, match="Cassandra refused the value"):
        await fast_store._fast.execute(prepared.set_features.encoder, (b"\0" * 12, key), key)
    # A statement id the node never prepared: the driver path must take over.
    unknown = _wire.ExecuteEncoder(query_id=b"\x01" * 16, consistency=6, serial_consistency=9)
    with pytest.raises(FallBack, match="not prepared"):
        await fast_store._fast.execute(unknown, (b"\0" * 4, key), key)
    row = fast_store.read_video(video.videoid)
    assert row is not None and row["content_features"] is None


async def test_a_request_timeout_is_503_material_and_the_late_answer_is_dropped(
    settings: Settings, store: CassandraStore, rng: np.random.Generator
) -> None:
    fast_store = await warmed(settings)
    try:
        spec, fast = fast_store.spec, fast_store._fast
        assert spec is not None and fast is not None
        video = Video(name="slow write")
        fast_store.insert_videos([video])
        (conn,) = fast._connections.values()
        # Not reading the socket makes the answer late for certain, whatever the load.
        conn._transport.pause_reading()
        fast._request_timeout_s = 0.05
        first = pack_vector(rng.standard_normal(spec.dimension).tolist(), spec)
        with pytest.raises(StorageUnavailable) as timed_out:
            await fast_store.set_content_features(video.videoid, first)
        assert timed_out.value.kind == "OperationTimedOut"
        # The late answer still holds its stream id, so no new request can receive it.
        assert list(conn._pending.values()) == [None]
        conn._transport.resume_reading()
        fast._request_timeout_s = settings.request_timeout_s
        second = pack_vector(rng.standard_normal(spec.dimension).tolist(), spec)
        before = fast_store.writes_by_path["fast"]
        await fast_store.set_content_features(video.videoid, second)
        assert fast_store.writes_by_path["fast"] == before + 1
        assert conn._pending == {} and fast._connections[conn.address] is conn
        row = fast_store.read_video(video.videoid)
        assert row is not None
        assert row["content_features"] == np.frombuffer(second, ">f4").tolist()
    finally:
        await fast_store.close_fast_path()
        fast_store.close()

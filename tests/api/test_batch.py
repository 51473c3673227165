"""POST /api/v1/reco/ingest/batch over HTTP, against the real node."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable

import numpy as np
import pytest
from fastapi.testclient import TestClient

from killrvideo_reco.config import Settings
from killrvideo_reco.domain.videos import Video
from killrvideo_reco.storage import CassandraStore

from ..conftest import DIM, token_for
from .test_ingest import assert_failed, stored

URL = "/api/v1/reco/ingest/batch"
ACCEPTED = "Embedding ingested successfully"


def post(client: TestClient, body: object, headers: dict[str, str]):  # type: ignore[no-untyped-def]
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(
        URL, content=content, headers={"Content-Type": "application/json", **headers}
    )


def now_us() -> int:
    return time.time_ns() // 1000


def test_each_item_gets_the_single_endpoints_result_in_order(
    client: TestClient,
    new_video: Callable[..., Video],
    creator_headers: dict[str, str],
    store: CassandraStore,
    rng: np.random.Generator,
) -> None:
    good, zero, short = new_video(), new_video(), new_video()
    missing = uuid.uuid4()
    vector = rng.standard_normal(DIM).astype(np.float32)
    items = [
        {"videoId": str(good.videoid), "vector": vector.tolist()},
        {"videoId": str(missing), "vector": vector.tolist()},
        {"videoId": str(short.videoid), "vector": [0.5] * 3},
        {"videoId": "not-a-uuid", "vector": vector.tolist()},
        {"videoId": str(zero.videoid), "vector": [0.0] * DIM},
        {"videoId": str(good.videoid), "vector": vector.tolist()},
    ]
    response = post(client, {"items": items}, creator_headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["status"], body["accepted"], body["failed"]) == ("completed", 1, 5)
    got = [(item.get("videoId"), item["status"], item["code"]) for item in body["items"]]
    assert got == [
        (str(good.videoid), "accepted", 202),
        (str(missing), "failed", 404),
        (str(short.videoid), "failed", 422),
        (None, "failed", 422),
        (str(zero.videoid), "failed", 422),
        (str(good.videoid), "failed", 422),
    ]
    messages = [item["message"] for item in body["items"]]
    assert messages[0] == ACCEPTED
    assert "does not exist" in messages[1]
    assert "vector has 3 values, expected 1536" in messages[2]
    assert "videoId must be a UUID" in messages[3]
    assert "zero" in messages[4]
    assert "already appears at items[0]" in messages[5]
    # Exactly what the single endpoint says about the same item.
    single = client.post(
        "/api/v1/reco/ingest",
        content=json.dumps(items[2]).encode(),
        headers={"Content-Type": "application/json", **creator_headers},
    )
    assert single.status_code == 422 and single.json()["message"] == messages[2]
    assert stored(store, good.videoid) == vector.tolist()
    assert stored(store, short.videoid) is None and stored(store, zero.videoid) is None
    assert store.videos.read(missing) is None  # no ghost row


def test_base64_items_including_wrong_byte_lengths(
    client: TestClient,
    new_video: Callable[..., Video],
    creator_headers: dict[str, str],
    store: CassandraStore,
    rng: np.random.Generator,
) -> None:
    little, big, wrong = new_video(), new_video(), new_video()
    v1 = rng.standard_normal(DIM).astype("<f4")
    v2 = rng.standard_normal(DIM).astype(">f4")
    items = [
        {"videoId": str(little.videoid), "vector": base64.b64encode(v1.tobytes()).decode()},
        {
            "videoId": str(big.videoid),
            "vector": base64.b64encode(v2.tobytes()).decode(),
            "byteOrder": "big",
        },
        {"videoId": str(wrong.videoid), "vector": base64.b64encode(v1.tobytes()[:-2]).decode()},
    ]
    body = post(client, {"items": items}, creator_headers).json()
    assert [item["code"] for item in body["items"]] == [202, 202, 422]
    assert "6142 bytes" in body["items"][2]["message"], body["items"][2]["message"]
    assert stored(store, little.videoid) == v1.tolist()
    assert stored(store, big.videoid) == v2.tolist()
    assert stored(store, wrong.videoid) is None


def test_a_batch_of_the_limit_is_written_concurrently(
    client: TestClient,
    store: CassandraStore,
    creator_headers: dict[str, str],
    settings: Settings,
    rng: np.random.Generator,
) -> None:
    videos = [Video(name=f"batch {i}") for i in range(settings.max_batch_items)]
    store.videos.insert(videos)
    vectors = rng.standard_normal((len(videos), DIM)).astype(np.float32)
    items = [
        {"videoId": str(v.videoid), "vector": base64.b64encode(vec.tobytes()).decode()}
        for v, vec in zip(videos, vectors, strict=True)
    ]
    body = post(client, {"items": items}, creator_headers).json()
    assert body["accepted"] == len(videos), [i for i in body["items"] if i["code"] != 202][:3]
    for index in (0, len(videos) // 2, len(videos) - 1):
        assert stored(store, videos[index].videoid) == vectors[index].tolist()


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"{", 400, "not valid JSON"),
        ([], 422, "must be a JSON object with items"),
        ({}, 422, "missing required field 'items'"),
        ({"items": {}}, 422, "items must be an array"),
        ({"items": []}, 422, "at least one item"),
        ({"items": [], "model": "x"}, 422, "unknown field 'model'"),
        ({"items": [{}], "writeTimestamp": "soon"}, 422, "writeTimestamp must be an integer"),
        ({"items": [{}], "writeTimestamp": 0}, 422, "microseconds since the Unix epoch"),
        ({"items": [{}], "writeTimestamp": 2**62}, 422, "in the future"),
    ],
)
def test_errors_of_the_whole_request_are_plain(
    client: TestClient, creator_headers: dict[str, str], body: object, status: int, message: str
) -> None:
    assert_failed(post(client, body, creator_headers), status, message)


def test_too_many_items_is_refused_and_writes_nothing(
    client: TestClient,
    video: Video,
    creator_headers: dict[str, str],
    store: CassandraStore,
    settings: Settings,
) -> None:
    item = {"videoId": str(video.videoid), "vector": [0.5] * DIM}
    response = post(client, {"items": [item] * (settings.max_batch_items + 1)}, creator_headers)
    assert_failed(response, 422, f"at most {settings.max_batch_items} items")
    assert stored(store, video.videoid) is None


def test_auth_is_the_single_endpoints(
    client: TestClient, video: Video, settings: Settings, store: CassandraStore
) -> None:
    body = {"items": [{"videoId": str(video.videoid), "vector": [0.5] * DIM}]}
    assert_failed(post(client, body, {}), 401, "bearer")
    viewer = {"Authorization": f"Bearer {token_for(settings, 'viewer')}"}
    assert_failed(post(client, body, viewer), 403, "requires the 'creator' role")
    assert stored(store, video.videoid) is None


def test_write_timestamp_keeps_a_newer_vector(
    client: TestClient, video: Video, creator_headers: dict[str, str], store: CassandraStore
) -> None:
    newer, older = [0.25] * DIM, [0.75] * DIM
    computed_at = now_us()  # the backfill computed its vector first...
    # ...then a newer model's pipeline wrote its vector...
    single = client.post(
        "/api/v1/reco/ingest",
        content=json.dumps({"videoId": str(video.videoid), "vector": newer}).encode(),
        headers={"Content-Type": "application/json", **creator_headers},
    )
    assert single.status_code == 202
    # ...and the slow backfill arrives last, stamped with when it computed.
    item = {"videoId": str(video.videoid), "vector": older}
    body = post(client, {"items": [item], "writeTimestamp": computed_at}, creator_headers).json()
    assert body["items"][0]["code"] == 202  # accepted: the database keeps the newer cell
    assert stored(store, video.videoid) == newer
    # A stamped write newer than what is stored does replace it.
    body = post(client, {"items": [item], "writeTimestamp": now_us()}, creator_headers).json()
    assert body["accepted"] == 1 and stored(store, video.videoid) == older


def test_write_timestamp_never_creates_a_row(
    client: TestClient, creator_headers: dict[str, str], store: CassandraStore
) -> None:
    missing = uuid.uuid4()
    item = {"videoId": str(missing), "vector": [0.5] * DIM}
    body = post(client, {"items": [item], "writeTimestamp": now_us()}, creator_headers).json()
    assert body["items"][0]["code"] == 404
    assert store.videos.read(missing) is None


def test_batch_bodies_have_their_own_size_limit(
    client: TestClient, creator_headers: dict[str, str], settings: Settings
) -> None:
    assert settings.max_batch_body_bytes > settings.max_body_bytes
    huge = b'{"items": [' + b" " * settings.max_batch_body_bytes + b"]}"
    assert_failed(post(client, huge, creator_headers), 413, "limit")

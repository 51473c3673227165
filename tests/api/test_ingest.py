"""POST /api/v1/reco/ingest over HTTP, against the real node."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

import numpy as np
import pytest
from fastapi.testclient import TestClient

from killrvideo_reco.auth import CREATOR
from killrvideo_reco.config import Settings
from killrvideo_reco.domain.videos import Video
from killrvideo_reco.storage import CassandraStore

from ..conftest import DIM, token_for

URL = "/api/v1/reco/ingest"


def post(client: TestClient, body: object, headers: dict[str, str], **kw: object):  # type: ignore[no-untyped-def]
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(
        URL, content=content, headers={"Content-Type": "application/json", **headers}, **kw
    )  # type: ignore[arg-type]


def assert_failed(response, status: int, message: str, video_id: str | None = None) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == "failed"
    assert message in body["message"], body["message"]
    assert body.get("videoId") == video_id
    assert set(body) <= {"videoId", "status", "message"}


def stored(store: CassandraStore, video_id: uuid.UUID) -> list[float] | None:
    row = store.videos.read(video_id)
    assert row is not None
    return row["content_features"]


# -- the spec's three tests ----------------------------------------------------------


def test_ingest_embedding(
    client: TestClient, video: Video, creator_headers: dict[str, str], store: CassandraStore
) -> None:
    vector = [0.1] * 1536
    response = post(client, {"videoId": str(video.videoid), "vector": vector}, creator_headers)
    assert response.status_code == 202
    data = response.json()
    assert data == {
        "videoId": str(video.videoid),
        "status": "accepted",
        "message": "Embedding ingested successfully",
    }
    assert stored(store, video.videoid) == np.float32(vector).tolist()


def test_ingest_wrong_dimensions(
    client: TestClient, video: Video, creator_headers: dict[str, str], store: CassandraStore
) -> None:
    response = post(client, {"videoId": str(video.videoid), "vector": [0.1] * 100}, creator_headers)
    assert_failed(response, 422, "vector has 100 values, expected 1536", str(video.videoid))
    assert stored(store, video.videoid) is None


def test_ingest_requires_creator_role(
    client: TestClient, video: Video, settings: Settings, store: CassandraStore
) -> None:
    viewer = {"Authorization": f"Bearer {token_for(settings, 'viewer')}"}
    response = post(client, {"videoId": str(video.videoid), "vector": [0.1] * 1536}, viewer)
    assert_failed(response, 403, "requires the 'creator' role")
    assert stored(store, video.videoid) is None


# -- what is stored -------------------------------------------------------------------


def test_the_stored_value_is_exactly_float32_of_the_input(
    client: TestClient,
    video: Video,
    creator_headers: dict[str, str],
    store: CassandraStore,
    rng: np.random.Generator,
) -> None:
    vector = (
        rng.standard_normal(DIM) * 10.0 ** rng.integers(-8, 8, DIM)
    ).tolist()  # many magnitudes, full float64 digits
    assert (
        post(client, {"videoId": str(video.videoid), "vector": vector}, creator_headers).status_code
        == 202
    )
    assert stored(store, video.videoid) == np.asarray(vector, dtype=np.float32).tolist()


def test_other_columns_are_untouched(
    client: TestClient,
    video: Video,
    creator_headers: dict[str, str],
    store: CassandraStore,
    rng: np.random.Generator,
) -> None:
    before = store.videos.read(video.videoid)
    assert (
        post(
            client,
            {"videoId": str(video.videoid), "vector": rng.standard_normal(DIM).tolist()},
            creator_headers,
        ).status_code
        == 202
    )
    after = store.videos.read(video.videoid)
    assert before is not None and after is not None
    assert after.pop("content_features") is not None
    before.pop("content_features")
    assert after == before
    assert after["name"] == video.name and set(after["tags"]) == set(video.tags)


def test_reingest_overwrites_and_a_retry_is_harmless(
    client: TestClient,
    video: Video,
    creator_headers: dict[str, str],
    store: CassandraStore,
    rng: np.random.Generator,
) -> None:
    first, second = rng.standard_normal((2, DIM)).tolist()
    body = {"videoId": str(video.videoid), "vector": first}
    assert post(client, body, creator_headers).status_code == 202
    assert (
        post(client, {"videoId": str(video.videoid), "vector": second}, creator_headers).status_code
        == 202
    )
    assert stored(store, video.videoid) == np.float32(second).tolist()
    for _ in range(2):  # a pipeline retrying the same request
        assert (
            post(
                client, {"videoId": str(video.videoid), "vector": second}, creator_headers
            ).status_code
            == 202
        )
    assert stored(store, video.videoid) == np.float32(second).tolist()
    count = store.schema.execute(
        f"SELECT count(*) FROM {store.keyspace}.videos WHERE videoid = %s", (video.videoid,)
    )
    assert count[0][0] == 1


def test_an_unknown_video_is_404_and_no_row_is_created(
    client: TestClient, creator_headers: dict[str, str], store: CassandraStore
) -> None:
    missing = uuid.uuid4()
    response = post(client, {"videoId": str(missing), "vector": [0.1] * DIM}, creator_headers)
    assert_failed(response, 404, f"video {missing} does not exist")
    assert store.videos.read(missing) is None


# -- every rejection: status, message, and nothing written -----------------------------


@pytest.mark.parametrize(
    ("make_body", "message"),
    [
        (lambda v: {"videoId": v, "vector": []}, "vector must not be empty: expected 1536 numbers"),
        (
            lambda v: {"videoId": v, "vector": [0.1] * 1537},
            "vector has 1537 values, expected 1536 (the index is vector<float, 1536>)",
        ),
        (
            lambda v: {"videoId": v, "vector": [0.1] * 5 + ["0.2"] + [0.1] * 1530},
            "vector[5] must be a number, got a string",
        ),
        (
            lambda v: {"videoId": v, "vector": [0.1] * 7 + [True] + [0.1] * 1528},
            "vector[7] must be a number, got a boolean",
        ),
        (
            lambda v: {"videoId": v, "vector": [None] + [0.1] * 1535},
            "vector[0] must be a number, got null",
        ),
        (
            lambda v: {"videoId": v, "vector": [0.1] * 9 + [1e18] + [0.1] * 1526},
            "vector[9] = 1e+18 is out of bounds",
        ),
        (
            lambda v: {"videoId": v, "vector": [0.1] * 3 + [-1e39] + [0.1] * 1532},
            "vector[3] = -1e+39 is out of bounds",
        ),
        (lambda v: {"videoId": v, "vector": [0.0] * 1536}, "zero or near-zero"),
        (
            lambda v: {"videoId": v, "vector": {"0": 0.1}},
            "vector must be an array of 1536 numbers or a base64 string of float32 values, got an object",
        ),
    ],
)
def test_invalid_vectors_are_422_and_write_nothing(
    client: TestClient,
    video: Video,
    creator_headers: dict[str, str],
    store: CassandraStore,
    make_body: Callable[[str], object],
    message: str,
) -> None:
    response = post(client, make_body(str(video.videoid)), creator_headers)
    assert_failed(response, 422, message, str(video.videoid))
    assert stored(store, video.videoid) is None


def test_non_finite_values_are_422(
    client: TestClient, video: Video, creator_headers: dict[str, str], store: CassandraStore
) -> None:
    items = ",".join(["0.1"] * 1535)
    raw = b'{"videoId": "%s", "vector": [%s, 1e400]}' % (
        str(video.videoid).encode(),
        items.encode(),
    )
    assert_failed(post(client, raw, creator_headers), 422, "vector[1535] is out of range")
    nan = b'{"videoId": "%s", "vector": [NaN, %s]}' % (str(video.videoid).encode(), items.encode())
    assert_failed(post(client, nan, creator_headers), 400, "not valid JSON")
    assert stored(store, video.videoid) is None


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b'{"videoId": ', 400, "request body is not valid JSON"),
        (b"", 400, "request body is not valid JSON"),
        (b"[1, 2]", 422, "must be a JSON object"),
        (b'{"videoId": "nope", "vector": [0.1]}', 422, "videoId must be a UUID"),
        (b'{"vector": [0.1]}', 422, "missing required field 'videoId'"),
        (
            b'{"videoId": "550e8400-e29b-41d4-a716-446655440000", "vector": [0.1], "model": "x"}',
            422,
            "unknown field 'model': the body takes videoId, vector and, for a base64 vector, byteOrder",
        ),
    ],
)
def test_bad_bodies(
    client: TestClient, creator_headers: dict[str, str], body: bytes, status: int, message: str
) -> None:
    assert_failed(post(client, body, creator_headers), status, message)


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1", None],
)
def test_a_body_that_is_not_json_is_415(
    client: TestClient,
    video: Video,
    creator_headers: dict[str, str],
    store: CassandraStore,
    content_type: str | None,
) -> None:
    headers = dict(creator_headers)
    if content_type:
        headers["Content-Type"] = content_type
    body = json.dumps({"videoId": str(video.videoid), "vector": [0.1] * DIM})
    response = client.post(URL, content=body, headers=headers)
    assert_failed(response, 415, "must be")
    assert stored(store, video.videoid) is None


def test_json_variants_are_accepted(
    client: TestClient, video: Video, creator_headers: dict[str, str]
) -> None:
    body = json.dumps({"videoId": str(video.videoid), "vector": [0.1] * DIM})
    for content_type in ("application/json; charset=utf-8", "application/vnd.killrvideo+json"):
        assert (
            client.post(
                URL, content=body, headers={**creator_headers, "Content-Type": content_type}
            ).status_code
            == 202
        )


def test_an_oversized_body_is_413(
    client: TestClient,
    video: Video,
    creator_headers: dict[str, str],
    settings: Settings,
    store: CassandraStore,
) -> None:
    padding = " " * settings.max_body_bytes
    items = ",".join(["0.1"] * DIM)
    body = f'{{"videoId": "{video.videoid}", "vector": [{items}]{padding}}}'
    assert_failed(
        post(client, body.encode(), creator_headers), 413, f"the limit is {settings.max_body_bytes}"
    )

    def chunks():  # type: ignore[no-untyped-def]  # no Content-Length: chunked transfer
        yield body.encode()

    response = client.post(
        URL, content=chunks(), headers={**creator_headers, "Content-Type": "application/json"}
    )
    assert_failed(response, 413, "exceeds the limit")
    assert stored(store, video.videoid) is None


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "missing bearer token"),
        ({"Authorization": "Token abc"}, "must be 'Bearer <JWT>'"),
        ({"Authorization": "Bearer garbage"}, "malformed"),
    ],
)
def test_auth_failures_are_401(
    client: TestClient, video: Video, store: CassandraStore, headers: dict[str, str], message: str
) -> None:
    response = post(client, {"videoId": str(video.videoid), "vector": [0.1] * DIM}, headers)
    assert_failed(response, 401, message)
    assert stored(store, video.videoid) is None


def test_expired_and_forged_tokens_are_401(
    client: TestClient, video: Video, settings: Settings
) -> None:
    expired = token_for(settings, CREATOR, ttl_s=-60)
    body = {"videoId": str(video.videoid), "vector": [0.1] * DIM}
    assert_failed(post(client, body, {"Authorization": f"Bearer {expired}"}), 401, "expired")
    forged = token_for(
        settings.model_copy(update={"jwt_secret": None, "state_dir": settings.state_dir / "other"}),
        CREATOR,
    )
    assert_failed(
        post(client, body, {"Authorization": f"Bearer {forged}"}), 401, "signature is invalid"
    )


def test_auth_is_checked_before_the_body(client: TestClient) -> None:
    assert_failed(post(client, b"not json", {}), 401, "missing bearer token")


def test_unknown_routes_and_methods_keep_the_error_shape(
    client: TestClient, creator_headers: dict[str, str]
) -> None:
    assert_failed(client.get(URL, headers=creator_headers), 405, "Method Not Allowed")
    assert_failed(client.get("/api/v1/nope"), 404, "Not Found")


@pytest.mark.parametrize("byte_order", [None, "little", "big"])
def test_a_base64_vector_is_stored_exactly(
    client: TestClient,
    video: Video,
    creator_headers: dict[str, str],
    store: CassandraStore,
    rng: np.random.Generator,
    byte_order: str | None,
) -> None:
    import base64

    values = rng.standard_normal(DIM).astype(np.float32)
    raw = values.astype(">f4" if byte_order == "big" else "<f4").tobytes()
    body: dict[str, object] = {
        "videoId": str(video.videoid),
        "vector": base64.b64encode(raw).decode(),
    }
    if byte_order:
        body["byteOrder"] = byte_order
    response = post(client, body, creator_headers)
    assert response.status_code == 202, response.text
    assert stored(store, video.videoid) == values.tolist()


def test_a_base64_vector_of_the_wrong_length_is_422(
    client: TestClient, video: Video, creator_headers: dict[str, str], store: CassandraStore
) -> None:
    import base64

    raw = np.ones(DIM - 1, dtype="<f4").tobytes()
    response = post(
        client,
        {"videoId": str(video.videoid), "vector": base64.b64encode(raw).decode()},
        creator_headers,
    )
    assert_failed(
        response,
        422,
        f"vector has {4 * (DIM - 1)} bytes ({DIM - 1} float32 values), expected {4 * DIM} bytes",
        str(video.videoid),
    )
    assert stored(store, video.videoid) is None

"""The layer in front of every route: request ids, and the answer while draining."""

from __future__ import annotations

from fastapi.testclient import TestClient

from killrvideo_reco.api import create_app
from killrvideo_reco.config import Settings
from killrvideo_reco.domain.videos import Video
from killrvideo_reco.storage import CassandraStore

from ..conftest import DIM


def test_a_sane_request_id_is_echoed_and_anything_else_replaced(client: TestClient) -> None:
    assert (
        client.get("/healthz", headers={"X-Request-ID": "abc-123.x:y_z"}).headers["X-Request-ID"]
        == "abc-123.x:y_z"
    )
    for bad in ("has space", "x" * 129, "semi;colon", 'say "hi"'):
        made = client.get("/healthz", headers={"X-Request-ID": bad}).headers["X-Request-ID"]
        assert made != bad and len(made) == 24
    first, second = (client.get("/healthz").headers["X-Request-ID"] for _ in range(2))
    assert first != second


def test_while_draining_new_requests_get_503_and_health_stays_observable(
    settings: Settings, store: CassandraStore, video: Video, creator_headers: dict[str, str]
) -> None:
    app = create_app(settings.model_copy(update={"retry_after_s": 3}))
    with TestClient(app) as client:
        body = {"videoId": str(video.videoid), "vector": [0.3] * DIM}
        app.drain.start()  # what SIGTERM does
        refused = client.post("/api/v1/reco/ingest", json=body, headers=creator_headers)
        assert refused.status_code == 503
        assert refused.headers["Retry-After"] == "3"
        assert refused.headers["Connection"] == "close"
        assert refused.json() == {
            "status": "failed",
            "message": "the service is shutting down; retry after Retry-After",
        }
        assert client.get("/readyz").status_code == 503  # load balancers take it out
        assert client.get("/healthz").status_code == 200
        assert client.get("/metrics").status_code == 200
    row = store.videos.read(video.videoid)
    assert row is not None and row["content_features"] is None  # the refusal wrote nothing

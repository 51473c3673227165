"""The service's logs as an operator reads them: KV_LOG_FORMAT=json, one line per request."""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx2 as httpx
import numpy as np
import pytest

from killrvideo_reco.auth import CREATOR, mint_token
from killrvideo_reco.config import Settings
from killrvideo_reco.domain.videos import Video

from .conftest import DIM, Service, service_env
from .serve_child import serve_child

INGEST = "/api/v1/reco/ingest"


@pytest.fixture(scope="module")
def logged(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Service, str]]:
    """A service logging JSON; its token. Its output is read when the module is done."""
    state = tmp_path_factory.mktemp("logs")
    env = service_env(settings.keyspace, state, KV_LOG_FORMAT="json")
    with Service(env) as service:
        yield service, mint_token(Settings(state_dir=state), roles=[CREATOR], ttl_s=600)


def test_one_json_line_per_request_with_its_id_and_no_secret(
    logged: tuple[Service, str],
    new_video: Callable[..., Video],
    rng: np.random.Generator,
    tmp_path: Path,
) -> None:
    service, token = logged
    url, auth = service.url, {"Authorization": f"Bearer {token}"}
    video = new_video()
    vector = rng.standard_normal(DIM).astype(np.float32)
    marker = 0.123456789  # a value to look for in the logs: it must not be there
    vector[0] = marker
    forged = "Bearer " + token[:-8] + "AAAAAAAA"

    sent = httpx.post(
        f"{url}{INGEST}",
        json={"videoId": str(video.videoid), "vector": vector.tolist()},
        headers={**auth, "X-Request-ID": "req-accepted-1"},
    )
    assert sent.status_code == 202
    assert sent.headers["X-Request-ID"] == "req-accepted-1"

    wrong = httpx.post(
        f"{url}{INGEST}",
        json={"videoId": str(video.videoid), "vector": [marker] * 3},
        headers={**auth, "X-Request-ID": "req-wrong-dim"},
    )
    assert wrong.status_code == 422
    unknown = uuid.uuid4()
    missing = httpx.post(
        f"{url}{INGEST}",
        json={"videoId": str(unknown), "vector": vector.tolist()},
        headers={**auth, "X-Request-ID": "req-missing"},
    )
    assert missing.status_code == 404
    refused = httpx.post(
        f"{url}{INGEST}",
        json={"videoId": str(video.videoid), "vector": vector.tolist()},
        headers={"Authorization": forged, "X-Request-ID": "req-forged"},
    )
    assert refused.status_code == 401
    related = httpx.get(
        f"{url}/api/v1/videos/id/{video.videoid}/related", headers={"X-Request-ID": "req-related"}
    )
    assert related.status_code == 200
    generated = httpx.get(f"{url}/healthz", headers={"X-Request-ID": "bad id\twith tab"})
    made = generated.headers["X-Request-ID"]
    assert made != "bad id\twith tab" and len(made) == 24 and int(made, 16) >= 0
    # A client that sends half a body and goes away.
    with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1]))) as raw:
        raw.sendall(
            f"POST {INGEST} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
            "Content-Type: application/json\r\nContent-Length: 5000\r\n"
            'X-Request-ID: req-gone\r\n\r\n{"videoId": '.encode()
        )
        wait_until(lambda: requests_in_flight(url) >= 2, what="the server to start reading it")

    assert service.stop() in (0, -15)
    lines = service.output.splitlines()
    records = [json.loads(line) for line in lines]  # every line is JSON
    access = {r["requestId"]: r for r in records if r["logger"] == "killrvideo_reco.access"}

    assert access["req-accepted-1"] | {"latencyMs": 0, "ts": ""} == {
        "ts": "",
        "level": "INFO",
        "logger": "killrvideo_reco.access",
        "msg": access["req-accepted-1"]["msg"],
        "requestId": "req-accepted-1",
        "method": "POST",
        "route": INGEST,
        "status": 202,
        "latencyMs": 0,
        "videoId": str(video.videoid),
        "reason": None,
    }
    print(json.dumps(access["req-accepted-1"]))  # shown with -s: docs/operating.md quotes one
    assert access["req-accepted-1"]["latencyMs"] > 0
    assert access["req-wrong-dim"]["status"] == 422 and access["req-wrong-dim"]["level"] == "INFO"
    assert (
        access["req-wrong-dim"]["reason"]
        == f"vector has 3 values, expected {DIM} (the index is vector<float, {DIM}>)"
    )
    assert access["req-wrong-dim"]["videoId"] == str(video.videoid)
    assert (access["req-missing"]["status"], access["req-missing"]["videoId"]) == (
        404,
        str(unknown),
    )
    assert access["req-forged"]["status"] == 401
    assert access["req-forged"]["reason"] == "the token signature is invalid"
    assert access["req-related"]["route"] == "/api/v1/videos/id/{videoId}/related"
    assert access[made]["route"] == "/healthz"
    assert (access["req-gone"]["status"], access["req-gone"]["level"]) == (499, "WARNING")

    # What a client does wrong is never an ERROR, and nothing secret is written.
    assert not [r for r in records if r["level"] in ("ERROR", "CRITICAL")], lines
    assert not [r for r in records if "exc" in r], lines
    for secret in (token, forged.split()[1], token.split(".")[2], str(marker), "0.12345"):
        assert secret not in service.output


def requests_in_flight(url: str) -> float:
    """The service's own count, the scrape that asks included."""
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith("kv_reco_http_requests_in_flight "):
            return float(line.split()[1])
    raise AssertionError("kv_reco_http_requests_in_flight is not exposed")


def wait_until(condition: Callable[[], object], *, what: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_each_request_is_logged_once_not_also_by_uvicorn_access(
    settings: Settings,
    new_video: Callable[..., Video],
    rng: np.random.Generator,
    tmp_path: Path,
) -> None:
    """N ingests, N lines naming the route: ours, none from uvicorn.access (issue 20)."""
    env = service_env(settings.keyspace, tmp_path)  # the default text format
    token = mint_token(Settings(state_dir=tmp_path), roles=[CREATOR], ttl_s=600)
    videos = [new_video() for _ in range(12)]
    vectors = rng.standard_normal((len(videos), DIM)).astype(np.float32)
    with serve_child(env) as (child, url):
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as client:
            codes = [
                client.post(INGEST, json={"videoId": str(v.videoid), "vector": x.tolist()})
                for v, x in zip(videos, vectors, strict=True)
            ]
            codes.append(client.post(INGEST, json={"videoId": str(uuid.uuid4()), "vector": [1]}))
        assert [r.status_code for r in codes] == [202] * len(videos) + [422]
        child.wait_for(
            lambda: child.output.count(f"POST {INGEST} ") >= len(codes),
            what="an access line for every request",
            timeout_s=30,
        )
        assert child.stop() in (0, -15)
    lines = [line for line in child.output.splitlines() if INGEST in line]
    assert len(lines) == len(codes), "\n".join(lines)
    assert all(" killrvideo_reco.access: " in line for line in lines), "\n".join(lines)
    assert "uvicorn.access" not in child.output

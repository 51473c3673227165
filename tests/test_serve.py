"""`kv-reco serve` as `make run` starts it, and the README's curl against it."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx2 as httpx
import numpy as np
import pytest

from killrvideo_reco.domain.videos import Video
from killrvideo_reco.storage import CassandraStore

from .conftest import DIM, KV


def test_readme_curl_gets_202_and_the_vector_is_in_cassandra(
    served: tuple[str, dict[str, str]], store: CassandraStore, tmp_path: Path
) -> None:
    url, env = served
    videoid = subprocess.run(
        [KV, "videos", "add", "--name", "README demo"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    token = subprocess.run(
        [KV, "token", "--role", "creator"], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    body = tmp_path / "body.json"
    body.write_text(json.dumps({"videoId": videoid, "vector": [0.01] * DIM}))
    curl = subprocess.run(
        ["curl", "-s", "-w", "\n%{http_code}", "-X", "POST", f"{url}/api/v1/reco/ingest",
         "-H", f"Authorization: Bearer {token}", "-H", "Content-Type: application/json", "--data", f"@{body}"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    payload, status = curl.stdout.rsplit("\n", 1)
    assert status == "202", payload
    assert json.loads(payload)["status"] == "accepted"
    row = store.read_video(uuid.UUID(videoid))
    assert row is not None and row["content_features"] == [pytest.approx(0.01, rel=1e-6)] * DIM


def test_once_connected_every_write_takes_the_fast_path_under_serve(
    served: tuple[str, dict[str, str]],
    store: CassandraStore,
    new_video: Callable[..., Video],
    served_headers: dict[str, str],
    rng: np.random.Generator,
) -> None:
    """Under uvloop, as `serve` runs it, the lean connections carry the writes."""
    url, _ = served
    headers = served_headers

    def put(video: Video, vector: list[float]) -> None:
        body = {"videoId": str(video.videoid), "vector": vector}
        response = httpx.post(f"{url}/api/v1/reco/ingest", json=body, headers=headers)
        assert response.status_code == 202, response.text

    # The first write opens the fast path in the background: wait until it carries one.
    probe = new_video()
    deadline = time.monotonic() + 30
    while writes(url)["fast"] == 0:
        assert time.monotonic() < deadline, f"the fast path never connected: {writes(url)}"
        put(probe, rng.standard_normal(DIM).tolist())
    before = writes(url)
    videos = [new_video() for _ in range(20)]
    vectors = rng.standard_normal((20, DIM)).astype(np.float32)
    for video, vector in zip(videos, vectors, strict=True):
        put(video, vector.tolist())
    after = writes(url)
    assert (after["fast"] - before["fast"], after["driver"] - before["driver"]) == (20, 0)
    for video, vector in zip(videos, vectors, strict=True):
        row = store.read_video(video.videoid)
        assert row is not None and row["content_features"] == vector.tolist()


def writes(url: str) -> dict[str, float]:
    """kv_reco_cassandra_writes_total by path, from the service's /metrics."""
    found = {}
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith("kv_reco_cassandra_writes_total{path="):
            labels, _, value = line.rpartition(" ")
            found[labels.split('"')[1]] = float(value)
    return found

"""`kv-reco serve` as `make run` starts it, and the README's curl against it."""

from __future__ import annotations

import json
import subprocess
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
        timeout=120,
    ).stdout.strip()
    token = subprocess.run(
        [KV, "token", "--role", "creator"], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    body = tmp_path / "body.json"
    body.write_text(json.dumps({"videoId": videoid, "vector": [0.01] * DIM}))
    curl = subprocess.run(
        ["curl", "-s", "-w", "\n%{http_code}", "-X", "POST", f"{url}/api/v1/reco/ingest",
         "-H", f"Authorization: Bearer {token}", "-H", "Content-Type: application/json", "--data", f"@{body}"],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    payload, status = curl.stdout.rsplit("\n", 1)
    assert status == "202", payload
    assert json.loads(payload)["status"] == "accepted"
    row = store.videos.read(uuid.UUID(videoid))
    assert row is not None and row["content_features"] == [pytest.approx(0.01, rel=1e-6)] * DIM


def test_writes_under_serve_store_exact_float32_and_are_measured(
    served: tuple[str, dict[str, str]],
    store: CassandraStore,
    new_video: Callable[..., Video],
    served_headers: dict[str, str],
    rng: np.random.Generator,
) -> None:
    """Under uvloop, as `serve` runs it: each write lands bit-exact and is timed."""
    url, _ = served
    before = statements(url)
    videos = [new_video() for _ in range(20)]
    vectors = rng.standard_normal((20, DIM)).astype(np.float32)
    for video, vector in zip(videos, vectors, strict=True):
        body = {"videoId": str(video.videoid), "vector": vector.tolist()}
        response = httpx.post(f"{url}/api/v1/reco/ingest", json=body, headers=served_headers)
        assert response.status_code == 202, response.text
    assert statements(url) - before == 20
    for video, vector in zip(videos, vectors, strict=True):
        row = store.videos.read(video.videoid)
        assert row is not None and row["content_features"] == vector.tolist()


def statements(url: str) -> float:
    """How many set_features statements the service has timed, from its /metrics."""
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith('kv_reco_cassandra_statement_seconds_count{statement="set_features"}'):
            return float(line.rpartition(" ")[2])
    return 0.0

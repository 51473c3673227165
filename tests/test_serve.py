"""`kv-reco serve` as `make run` starts it, and the README's curl against it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

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
    import uuid

    row = store.videos.read(uuid.UUID(videoid))
    assert row is not None and row["content_features"] == [pytest.approx(0.01, rel=1e-6)] * DIM

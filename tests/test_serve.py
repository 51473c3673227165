"""`kv-reco serve` as `make run` starts it, and the README's curl against it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest

from killrvideo_reco.config import Settings
from killrvideo_reco.storage import CassandraStore

from .conftest import DIM, KV


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def served(
    settings: Settings, store: CassandraStore, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, dict[str, str]]]:
    # No KV_JWT_SECRET: serve and token must agree through the local dev key.
    env = {
        **os.environ,
        "KV_KEYSPACE": settings.keyspace,
        "KV_STATE_DIR": str(tmp_path_factory.mktemp("dev")),
    }
    env.pop("KV_JWT_SECRET", None)
    port = free_port()
    proc = subprocess.Popen(
        [KV, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            proc.kill()
            pytest.fail(f"serve did not become ready:\n{proc.communicate()[0]}")
        yield url, env
    finally:
        proc.terminate()
        output = proc.communicate(timeout=30)[0]
        assert "using the local development JWT key" in output


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

    # Later writes go over the fast path, under uvloop as `serve` runs it.
    for _ in range(20):
        subprocess.run(["curl", "-s", "-o", "/dev/null", "-X", "POST", f"{url}/api/v1/reco/ingest",
                        "-H", f"Authorization: Bearer {token}", "-H", "Content-Type: application/json",
                        "--data", f"@{body}"], check=True)  # fmt: skip
    metrics = httpx.get(f"{url}/metrics").text
    fast = next(
        line
        for line in metrics.splitlines()
        if line.startswith('kv_reco_cassandra_writes_total{path="fast"}')
    )
    assert float(fast.rsplit(" ", 1)[1]) >= 10, metrics
    row = store.read_video(uuid.UUID(videoid))
    assert row is not None and row["content_features"] == [pytest.approx(0.01, rel=1e-6)] * DIM

"""One real Cassandra node per test session; a fresh keyspace per session.

The node is started (or found running) through the CLI, exactly as `make test`
and `make run` do. If it cannot start, the session fails: nothing is skipped.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx2 as httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from killrvideo_reco.api import create_app
from killrvideo_reco.auth import CREATOR, mint_token
from killrvideo_reco.config import Settings
from killrvideo_reco.domain.vectors import Similarity
from killrvideo_reco.domain.videos import Video
from killrvideo_reco.storage import CassandraStore

KV = str(Path(sys.executable).with_name("kv-reco"))
DIM = 1536


@pytest.fixture(scope="session")
def node() -> str:
    done = subprocess.run([KV, "cassandra", "start"], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"Cassandra did not start:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="session")
def settings(node: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        keyspace=f"kv_test_{secrets.token_hex(4)}",
        jwt_secret=secrets.token_urlsafe(40),
        state_dir=tmp_path_factory.mktemp("state"),
    )


@pytest.fixture(scope="session")
def store(settings: Settings) -> Iterator[CassandraStore]:
    store = CassandraStore.open(settings)
    store.schema.apply(dimension=DIM, similarity=Similarity.COSINE, replication_factor=1)
    store.load_schema()
    yield store
    store.schema.execute(f"DROP KEYSPACE IF EXISTS {settings.keyspace}")
    store.close()


@pytest.fixture(scope="session")
def client(settings: Settings, store: CassandraStore) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def new_video(store: CassandraStore) -> Callable[..., Video]:
    def make(**fields: object) -> Video:
        video = Video(**{"name": f"test video {uuid.uuid4().hex[:8]}", **fields})  # type: ignore[arg-type]
        store.videos.insert([video])
        return video

    return make


@pytest.fixture
def video(new_video: Callable[..., Video]) -> Video:
    return new_video(
        description="A talk about vectors",
        tags=frozenset({"cassandra", "vectors"}),
        userid=uuid.uuid4(),
        thumbnail_url="https://example.com/t.jpg",
        preview_image_location="https://example.com/p.jpg",
    )


def token_for(settings: Settings, *roles: str, ttl_s: int = 600) -> str:
    return mint_token(settings, roles=list(roles), ttl_s=ttl_s)


@pytest.fixture(scope="session")
def creator_headers(settings: Settings) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_for(settings, CREATOR)}"}


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serving(env: dict[str, str]) -> Iterator[str]:
    """Run `kv-reco serve` with this environment until the block ends; yield its URL.

    On the way out it asserts that the service logged its use of the local
    development key (tests leave KV_JWT_SECRET out, as `make run` does).
    """
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
                pass
            time.sleep(0.2)
        else:
            proc.kill()
            pytest.fail(f"serve did not become ready:\n{proc.communicate()[0]}")
        yield url
    finally:
        proc.terminate()
        output = proc.communicate(timeout=30)[0]
    assert "using the local development JWT key" in output, output[-2000:]


def service_env(keyspace: str, state_dir: Path, **extra: str) -> dict[str, str]:
    # No KV_JWT_SECRET: serve, token and ingest agree through the local dev key.
    env = {**os.environ, "KV_KEYSPACE": keyspace, "KV_STATE_DIR": str(state_dir), **extra}
    env.pop("KV_JWT_SECRET", None)
    return env


@pytest.fixture(scope="session")
def served(
    settings: Settings, store: CassandraStore, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, dict[str, str]]]:
    """A real `kv-reco serve` on the session keyspace: its URL and its environment."""
    env = service_env(settings.keyspace, tmp_path_factory.mktemp("dev"))
    with serving(env) as url:
        yield url, env

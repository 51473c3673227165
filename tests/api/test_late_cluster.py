"""`kv-reco serve` started before its cluster: 503 and not ready, then serving.

The "cluster" appears when a TCP relay to the session's real node starts
listening on the port the service was told about: until then nothing answers
there, exactly as before a node starts. The service is never restarted.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx2 as httpx
import numpy as np

from killrvideo_reco.auth import CREATOR, mint_token
from killrvideo_reco.config import Settings
from killrvideo_reco.domain.videos import Video
from killrvideo_reco.storage import CassandraStore

from ..conftest import DIM, KV, free_port, service_env
from ..proc import Child


@contextlib.contextmanager
def relay(port: int, target: tuple[str, int]) -> Iterator[None]:
    """Forward 127.0.0.1:port to target until the block ends."""
    server = socket.create_server(("127.0.0.1", port))
    server.settimeout(0.2)
    stop = threading.Event()
    sockets: list[socket.socket] = []
    threads: list[threading.Thread] = []

    def pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def accept() -> None:
        while not stop.is_set():
            try:
                client, _ = server.accept()
            except TimeoutError:
                continue
            upstream = socket.create_connection(target)
            sockets.extend((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                thread = threading.Thread(target=pipe, args=(a, b), daemon=True)
                threads.append(thread)
                thread.start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield
    finally:
        stop.set()
        acceptor.join(10)  # it polls stop every 0.2 s
        server.close()
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        for thread in threads:  # their sockets are shut down: recv returns at once
            thread.join(10)
        for s in sockets:
            s.close()


def _wait(url: str, status: int, deadline_s: float) -> httpx.Response:
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            answer = httpx.get(url)
            if answer.status_code == status or time.monotonic() > deadline:
                return answer
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.2)


def test_serve_starts_without_cassandra_and_connects_when_it_appears(
    settings: Settings,
    store: CassandraStore,
    new_video: Callable[..., Video],
    tmp_path: Path,
) -> None:
    cql_port, http_port = free_port(), free_port()
    env = service_env(
        settings.keyspace,
        tmp_path,
        KV_CASSANDRA_PORT=str(cql_port),
        KV_FAST_PATH="false",
        KV_CONNECT_TIMEOUT_S="2",
    )
    token = mint_token(Settings(state_dir=tmp_path, jwt_secret=None), roles=[CREATOR])
    headers = {"Authorization": f"Bearer {token}"}
    video = new_video()
    vector = np.random.default_rng(7).standard_normal(DIM).astype(np.float32)
    body = {"videoId": str(video.videoid), "vector": vector.tolist()}
    url = f"http://127.0.0.1:{http_port}"
    with Child([KV, "serve", "--port", str(http_port)], env=env) as serve:
        assert _wait(f"{url}/healthz", 200, 30).status_code == 200
        not_ready = httpx.get(f"{url}/readyz")
        assert not_ready.status_code == 503
        assert not_ready.json()["message"] == (
            f"not connected to Cassandra yet: no Cassandra node answers at 127.0.0.1:{cql_port} "
            "(Connection refused): check KV_CONTACT_POINTS and KV_CASSANDRA_PORT"
        )
        refused = httpx.post(f"{url}/api/v1/reco/ingest", json=body, headers=headers)
        assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
        assert refused.json()["status"] == "failed"
        with relay(cql_port, ("127.0.0.1", settings.cassandra_port)):
            ready = _wait(f"{url}/readyz", 200, 60)
            assert ready.status_code == 200, ready.text
            accepted = httpx.post(f"{url}/api/v1/reco/ingest", json=body, headers=headers)
            assert accepted.status_code == 202, accepted.text
    output = serve.output
    assert "answering 503 and retrying in the background" in output, output[-2000:]
    assert "connected to Cassandra; accepting requests" in output, output[-2000:]
    assert "Traceback" not in output, output[-3000:]
    row = store.videos.read(video.videoid)
    assert row is not None
    assert np.asarray(row["content_features"], np.float32).tobytes() == vector.tobytes()

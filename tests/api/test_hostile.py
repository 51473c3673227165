"""Hostile input and hostile clients, byte for byte, against a real `kv-reco serve`.

Each case here once gave a 500, kept a connection open without limit, or was
guessed at instead of refused (issue 11). The bytes go over a plain socket, as
an attacker would send them, so nothing in a client library can tidy them up.
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from killrvideo_reco.config import Settings
from killrvideo_reco.domain.videos import Video
from killrvideo_reco.storage import CassandraStore

from ..conftest import DIM, KV, Service, service_env

INGEST = "/api/v1/reco/ingest"
BATCH = "/api/v1/reco/ingest/batch"
VID = "123e4567-e89b-12d3-a456-426614174000"


class Server:
    """A `kv-reco serve` process whose log the test can read while it runs."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.url = service.url
        self.env = service.env
        self.port = int(service.url.rsplit(":", 1)[1])

    def token(self, role: str = "creator") -> str:
        return subprocess.run(
            [KV, "token", "--role", role],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.strip()

    def wait_for_log(self, needle: str, *, timeout_s: float = 30) -> str:
        self.service.child.wait_for(
            lambda: needle in self.service.output,
            what=f"{needle!r} in the log",
            timeout_s=timeout_s,
        )
        return self.service.output


@contextlib.contextmanager
def run_server(keyspace: str, tmp: Path, **env_extra: str) -> Iterator[Server]:
    with Service(service_env(keyspace, tmp / "state", **env_extra)) as service:
        yield Server(service)


@pytest.fixture(scope="module")
def server(
    settings: Settings, store: CassandraStore, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    with run_server(settings.keyspace, tmp_path_factory.mktemp("hostile")) as server:
        yield server


@pytest.fixture(scope="module")
def token(server: Server) -> str:
    return server.token()


# -- raw HTTP ----------------------------------------------------------------------


def connect(server: Server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=20)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (or the 20 s socket deadline)."""
    chunks = []
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def exchange(server: Server, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read one response (the request asks to close)."""
    with connect(server) as sock:
        sock.sendall(raw)
        return parse(read_until_closed(sock))


def parse(response: bytes) -> tuple[int, dict[str, str], bytes]:
    assert response, "the server closed without answering"
    head, _, body = response.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split(" ")[1]), headers, body


def request(
    method: str, path: str, body: bytes = b"", *, headers: list[tuple[str, str]] | None = None
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: test", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers or []]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def post_json(path: str, body: bytes, token: str, *extra: tuple[str, str]) -> bytes:
    return request(
        "POST",
        path,
        body,
        headers=[
            ("Authorization", f"Bearer {token}"),
            ("Content-Type", "application/json"),
            *extra,
        ],
    )


def assert_spec_failure(
    status: int, headers: dict[str, str], body: bytes, expected: int
) -> dict[str, object]:
    assert status == expected, body[:500]
    assert headers.get("content-type") == "application/json", headers
    payload = json.loads(body)
    assert payload["status"] == "failed"
    assert isinstance(payload["message"], str) and payload["message"]
    assert set(payload) <= {"videoId", "status", "message"}
    return payload  # type: ignore[no-any-return]


# -- bodies that once gave 500 -------------------------------------------------------

DEEP = b"[" * 1000 + b"]" * 1000
GOOD_VECTOR = json.dumps([0.01] * DIM).encode()


def body_with(
    video_id: bytes = VID.encode(), vector: bytes = GOOD_VECTOR, extra: bytes = b""
) -> bytes:
    return b'{"videoId":"' + video_id + b'","vector":' + vector + extra + b"}"


HOSTILE_BODIES = {
    # 1. nesting about 1,000 deep: the explain path's generic decode overflowed
    "deep vector": (body_with(vector=DEEP), 422),
    "deep body": (DEEP, 422),
    "deep unknown field": (body_with(extra=b',"x":' + DEEP), 422),
    # 2. invalid UTF-8 inside a JSON string
    "invalid utf-8 in videoId": (body_with(video_id=VID[:-2].encode() + b"\xff\xfe"), 400),
    "invalid utf-8 in an unknown key": (body_with(extra=b',"\xc3\x28":1'), 400),
    # 3. a trailing newline passed the UUID regex ($ matches before it)
    "videoId with a trailing newline": (body_with(video_id=VID.encode() + b"\\n"), 422),
    # 4. non-ASCII in a base64 vector: ValueError, not binascii.Error
    "non-ascii base64 vector": (body_with(vector='"AAAA\u00e9AAA"'.encode()), 422),
}


@pytest.mark.parametrize("case", list(HOSTILE_BODIES))
def test_hostile_single_bodies_get_4xx_in_the_spec_shape(
    server: Server, token: str, case: str
) -> None:
    raw, expected = HOSTILE_BODIES[case]
    assert_spec_failure(*exchange(server, post_json(INGEST, raw, token)), expected)


def test_deep_nesting_in_a_batch_envelope_is_422(server: Server, token: str) -> None:
    raw = b'{"items":[' + DEEP + b"]}"
    assert_spec_failure(*exchange(server, post_json(BATCH, raw, token)), 422)


def test_a_trailing_newline_in_the_related_path_is_422(server: Server) -> None:
    status, headers, body = exchange(server, request("GET", f"/api/v1/videos/id/{VID}%0A/related"))
    assert_spec_failure(status, headers, body, 422)


def test_a_huge_garbage_id_is_cut_in_the_message(server: Server, token: str) -> None:
    garbage = b"x" * 10_000
    payload = assert_spec_failure(
        *exchange(server, post_json(INGEST, body_with(video_id=garbage), token)), 422
    )
    assert "videoId must be a UUID" in str(payload["message"])
    assert len(str(payload["message"])) < 300, payload


def test_bad_batch_items_fail_alone_and_the_good_ones_are_written(
    server: Server,
    token: str,
    new_video: Callable[..., Video],
    store: CassandraStore,
) -> None:
    """5. Defects 2, 3 and 4 in one item once failed the whole batch with a 500."""
    good = new_video()
    other = new_video()
    items = [
        body_with(video_id=str(good.videoid).encode()),
        body_with(video_id=VID[:-2].encode() + b"\xff\xfe"),
        body_with(video_id=VID.encode() + b"\\n"),
        body_with(video_id=str(other.videoid).encode(), vector='"AAAA\u00e9AAA"'.encode()),
    ]
    raw = b'{"items":[' + b",".join(items) + b"]}"
    status, _, body = exchange(server, post_json(BATCH, raw, token))
    assert status == 200, body[:500]
    result = json.loads(body)
    assert [item["code"] for item in result["items"]] == [202, 400, 422, 422], result
    assert (result["accepted"], result["failed"]) == (1, 3)
    assert store.videos.read(good.videoid)["content_features"] is not None  # type: ignore[index]
    assert store.videos.read(other.videoid)["content_features"] is None  # type: ignore[index]


def test_a_client_that_disconnects_mid_body_is_not_an_error(server: Server, token: str) -> None:
    """6. ClientDisconnect was logged as an unexpected error with a traceback."""
    with connect(server) as sock:
        head = post_json(INGEST, b"", token).replace(b"Content-Length: 0", b"Content-Length: 9999")
        # Headers and part of the body, then gone: the server parses what
        # arrived before it learns of the close, so the app is reading the body.
        sock.sendall(head + b'{"videoId":')
    text = server.wait_for_log("disconnected")
    assert "Traceback" not in text and "unexpected error" not in text, text[-3000:]
    assert "ERROR" not in text, text[-3000:]


# -- ambiguous input is refused --------------------------------------------------------


def test_duplicate_json_keys_are_refused(
    server: Server, token: str, new_video: Callable[..., Video], store: CassandraStore
) -> None:
    video = new_video()
    vid = str(video.videoid).encode()
    raw = b'{"videoId":"' + vid + b'","vector":' + GOOD_VECTOR + b',"vector":' + GOOD_VECTOR + b"}"
    payload = assert_spec_failure(*exchange(server, post_json(INGEST, raw, token)), 422)
    assert "duplicate" in str(payload["message"])
    assert store.videos.read(video.videoid)["content_features"] is None  # type: ignore[index]


def test_duplicate_keys_in_a_batch_envelope_are_refused(server: Server, token: str) -> None:
    item = body_with(video_id=str(uuid.uuid4()).encode())
    raw = b'{"items":[' + item + b'],"items":[' + item + b"]}"
    payload = assert_spec_failure(*exchange(server, post_json(BATCH, raw, token)), 422)
    assert "duplicate" in str(payload["message"])


def test_two_authorization_headers_are_refused(server: Server, token: str) -> None:
    raw = post_json(INGEST, body_with(), token, ("Authorization", "Bearer not-a-token"))
    payload = assert_spec_failure(*exchange(server, raw), 401)
    assert "one Authorization header" in str(payload["message"])
    # The same with the good token second: the first one must not simply win.
    raw = request(
        "POST",
        INGEST,
        body_with(),
        headers=[
            ("Authorization", "Bearer not-a-token"),
            ("Authorization", f"Bearer {token}"),
            ("Content-Type", "application/json"),
        ],
    )
    assert_spec_failure(*exchange(server, raw), 401)


def _hs256(key: bytes, claims: dict[str, object], header: dict[str, str] | None = None) -> str:
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing = (
        b64(json.dumps(header or {"alg": "HS256", "typ": "JWT"}).encode())
        + "."
        + b64(json.dumps(claims).encode())
    )
    signature = hmac.new(key, signing.encode(), hashlib.sha256).digest()
    return f"{signing}.{b64(signature)}"


def test_an_exp_claim_that_is_a_string_is_refused(server: Server) -> None:
    secret = (Path(server.env["KV_STATE_DIR"]) / "dev-jwt-secret").read_text().strip()
    token = _hs256(secret.encode(), {"sub": "x", "roles": ["creator"], "exp": "9999999999"})
    payload = assert_spec_failure(*exchange(server, post_json(INGEST, body_with(), token)), 401)
    assert "exp" in str(payload["message"])


def test_hs256_signed_with_the_rs256_public_key_is_refused(
    settings: Settings, store: CassandraStore, tmp_path: Path
) -> None:
    """Algorithm confusion: the public key, which anyone may hold, as an HMAC secret."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private, public = tmp_path / "private.pem", tmp_path / "public.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    with run_server(
        settings.keyspace,
        tmp_path,
        KV_JWT_ALGORITHM="RS256",
        KV_JWT_PUBLIC_KEY_FILE=str(public),
        KV_JWT_PRIVATE_KEY_FILE=str(private),
    ) as rs_server:
        claims = {"sub": "attacker", "roles": ["creator"], "exp": int(time.time()) + 600}
        for pem in (public.read_bytes(), public.read_bytes().strip()):
            forged = _hs256(pem, claims)
            payload = assert_spec_failure(
                *exchange(rs_server, post_json(INGEST, body_with(), forged)), 401
            )
            assert "RS256" in str(payload["message"]), payload
        # The real RS256 token gets past auth (to the unknown video's 404).
        status, _, body = exchange(rs_server, post_json(INGEST, body_with(), rs_server.token()))
        assert status == 404, body


def test_a_gzip_body_is_415(server: Server, token: str) -> None:
    import gzip

    raw = post_json(INGEST, gzip.compress(body_with()), token, ("Content-Encoding", "gzip"))
    payload = assert_spec_failure(*exchange(server, raw), 415)
    assert "Content-Encoding" in str(payload["message"])


# -- what the server answers before our code runs ---------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"POST /api/v1/reco/ingest HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        b"Content-Length: 7\r\n\r\nhello",
    ],
    ids=["request line", "version", "conflicting content-length"],
)
def test_malformed_requests_get_a_json_400(server: Server, raw: bytes) -> None:
    assert_spec_failure(*exchange(server, raw), 400)


# -- slow and greedy clients --------------------------------------------------------------


@pytest.fixture(scope="module")
def strict_server(
    settings: Settings, store: CassandraStore, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """Short deadlines so that the tests wait seconds, not the defaults' tens of seconds."""
    with run_server(
        settings.keyspace,
        tmp_path_factory.mktemp("strict"),
        KV_HEADER_TIMEOUT_S="1",
        KV_BODY_TIMEOUT_S="1",
        KV_KEEPALIVE_TIMEOUT_S="1",
    ) as server:
        yield server


def test_headers_sent_too_slowly_are_cut_off_with_408(strict_server: Server) -> None:
    with connect(strict_server) as sock:
        sock.sendall(b"POST /api/v1/reco/ingest HTTP/1.1\r\nHost: x\r\n")
        assert_spec_failure(*parse(read_until_closed(sock)), 408)


def test_a_body_sent_too_slowly_is_cut_off_with_408(strict_server: Server) -> None:
    head = post_json(INGEST, b"", strict_server.token())
    with connect(strict_server) as sock:
        sock.sendall(head.replace(b"Content-Length: 0", b"Content-Length: 1000") + b"{")
        assert_spec_failure(*parse(read_until_closed(sock)), 408)


def test_a_connection_that_sends_nothing_is_closed(strict_server: Server) -> None:
    with connect(strict_server) as sock:
        assert read_until_closed(sock) == b""


def test_an_idle_keep_alive_connection_is_closed(strict_server: Server) -> None:
    with connect(strict_server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        response = read_until_closed(sock)
    assert response.startswith(b"HTTP/1.1 200"), response


def test_pipelined_requests_on_one_connection_still_work(strict_server: Server) -> None:
    """The deadlines follow each request of a keep-alive connection, not the first one only."""
    with connect(strict_server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 3)
        response = read_until_closed(sock)  # closed by the keep-alive timer afterwards
    assert response.count(b"HTTP/1.1 200") == 3, response


def test_an_8_mb_header_line_is_431(server: Server) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for _ in range(128):
                sock.sendall(b"a" * 65536)
        assert_spec_failure(*parse(read_until_closed(sock)), 431)


def test_10000_headers_are_431(server: Server) -> None:
    headers = "".join(f"X-H{i}: {i}\r\n" for i in range(10_000)).encode()
    with connect(server) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
        assert_spec_failure(*parse(read_until_closed(sock)), 431)


def test_open_connections_are_bounded(
    settings: Settings, store: CassandraStore, tmp_path: Path
) -> None:
    with run_server(settings.keyspace, tmp_path, KV_MAX_CONNECTIONS="20") as server:
        held = [connect(server) for _ in range(20)]
        try:
            with connect(server) as extra:
                # The 21st is answered at once and closed; the 20 held stay open.
                assert_spec_failure(*parse(read_until_closed(extra)), 503)
            for sock in held:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                assert sock.recv(12) == b"HTTP/1.1 200"
        finally:
            for sock in held:
                sock.close()

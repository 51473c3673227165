"""An identity provider having a bad day: a tiny HTTP server whose answer the test picks.

The real provider (provider.py) is for tokens and rotation; this one is about
what a broken JWKS endpoint does to the service. It publishes a key set of
its own (``key``, a test RSA key) and answers ``/jwks`` as ``mode`` says:

    good        the key set
    error       HTTP 500
    garbage     200, an HTML page
    not-a-set   200, JSON without a 'keys' list
    huge        200, a declared 10 MB body
    endless     200, chunked, no length, more than the limit
    gzip-bomb   200, 20 KB of gzip that inflates to 10 MB
    duplicate   the good key, plus one kid listed twice with different keys
    malformed   only keys that must be refused (oct, enc, 1024-bit RSA, bad n, ...)
    redirect    302 to the good key set
    slow        the key set, but only once ``release`` is set (or 30 s pass)
    drip        headers, then one byte of the key set every 0.2 s
    hangup      the connection closed without an answer

``hits`` counts the requests to /jwks. Stopping the server releases every
held answer.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import socket
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

HUGE = 10 * 1024 * 1024


def public_jwk(key: rsa.RSAPrivateKey, kid: str, **extra: Any) -> dict[str, Any]:
    jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    return {**jwk, "kid": kid, "use": "sig", "alg": "RS256", **extra}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def good_set(key: rsa.RSAPrivateKey, kid: str) -> bytes:
    return json.dumps({"keys": [public_jwk(key, kid)]}).encode()


def duplicate_set(key: rsa.RSAPrivateKey, kid: str) -> bytes:
    other = [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in "ab"]
    return json.dumps(
        {
            "keys": [
                public_jwk(key, kid),
                public_jwk(key, kid),  # the same key twice: harmless
                public_jwk(other[0], "twice"),
                public_jwk(other[1], "twice"),
            ]
        }
    ).encode()


def malformed_set(key: rsa.RSAPrivateKey, kid: str) -> bytes:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    good = public_jwk(key, kid)
    return json.dumps(
        {
            "keys": [
                {"kty": "oct", "kid": kid, "k": _b64(b"s" * 32), "alg": "HS256"},
                {**good, "use": "enc"},
                public_jwk(weak, "weak"),
                {**good, "kid": "bad-n", "n": "!!!not base64!!!"},
                {**good, "kid": "int-n", "n": 12345},
                {**good, "kid": "no-e", "e": None},
                {**good, "kid": "es-on-rsa", "alg": "ES256"},
                {"kty": "EC", "kid": "bad-curve", "crv": "P-192", "x": "AA", "y": "AA"},
                {
                    "kty": "EC",
                    "kid": "off-curve",
                    "crv": "P-256",
                    "x": _b64(b"\1" * 32),
                    "y": _b64(b"\2" * 32),
                },
                {"kty": "XYZ", "kid": "alien"},
                {**good, "kid": ""},
                "not an object",
                ["nor", "this"],
            ]
        }
    ).encode()


class BrokenIdP:
    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = f"good-{uuid.uuid4().hex[:8]}"
        self.mode = "good"
        self.hits = 0
        self.release = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.idp = self
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.jwks_url = f"{self.base}/jwks"
        # A short poll: shutdown() waits for it, once per test.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    def good_set(self) -> bytes:
        return good_set(self.key, self.kid)


class _Server(ThreadingHTTPServer):
    idp: BrokenIdP
    daemon_threads = True


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    @property
    def idp(self) -> BrokenIdP:
        return self.server.idp

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path != "/jwks":
            self._send(404, b"{}")
            return
        self.idp.hits += 1
        # The service may hang up on us mid-answer: that is what it should do.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            getattr(self, "_" + self.idp.mode.replace("-", "_"))()

    def end_headers(self) -> None:
        # One request per connection, said so: once stopped, the server answers
        # nothing, not even on a connection the service would have kept alive.
        self.send_header("Connection", "close")
        super().end_headers()

    def _send(self, status: int, body: bytes, **headers: str) -> None:
        self.send_response(status)
        named = {"Content-Type": "application/json", "Content-Length": str(len(body))}
        named |= {name.replace("_", "-"): value for name, value in headers.items()}
        for name, value in named.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _good(self) -> None:
        self._send(200, self.idp.good_set())

    def _error(self) -> None:
        self._send(500, b'{"error": "internal"}')

    def _garbage(self) -> None:
        page = b"<html><body>Service Unavailable</body></html>"
        self._send(200, page, Content_Type="text/html")

    def _not_a_set(self) -> None:
        self._send(200, b'{"issuer": "somewhere", "keys": "none"}')

    def _huge(self) -> None:
        self._send(200, b'{"keys": [' + b" " * 65536, Content_Length=str(HUGE))

    def _endless(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.write(b'a\r\n{"keys": [\r\n')
        chunk = b" " * 65536
        for _ in range(HUGE // len(chunk)):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))

    def _gzip_bomb(self) -> None:
        self._send(200, gzip.compress(b" " * HUGE), Content_Encoding="gzip")

    def _duplicate(self) -> None:
        self._send(200, duplicate_set(self.idp.key, self.idp.kid))

    def _malformed(self) -> None:
        self._send(200, malformed_set(self.idp.key, self.idp.kid))

    def _redirect(self) -> None:
        self._send(302, b"", Location=f"{self.idp.base}/elsewhere")

    def _slow(self) -> None:
        self.idp.release.wait(30)
        self._send(200, self.idp.good_set())

    def _hangup(self) -> None:
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    def _drip(self) -> None:
        body = self.idp.good_set()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        for byte in body:
            if self.idp.release.wait(0.2):
                return
            self.wfile.write(bytes([byte]))
            self.wfile.flush()

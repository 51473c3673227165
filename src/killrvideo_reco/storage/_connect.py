"""How to reach the cluster: endpoints, credentials, TLS, Astra; and why it failed.

Everything that turns settings into the driver's ``Cluster`` keyword arguments
lives here, and so does the one-line explanation an operator gets when the
connection cannot be made: each names the setting to look at. Secrets go to
the driver's auth provider and nowhere else: no message here contains one.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import ssl
import threading
from collections.abc import Iterator
from typing import Any, TypeVar

from cassandra import AuthenticationFailed, OperationTimedOut
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import NoHostAvailable

from ..config import Settings
from ..errors import ConfigError

# The user name Astra expects beside an application token.
_ASTRA_USER = "token"

_E = TypeVar("_E", bound=BaseException)


def cluster_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``cassandra.cluster.Cluster``: where, who, and how securely."""
    if settings.astra_secure_connect_bundle is not None:
        # The bundle carries the endpoints, the CA and the client certificate;
        # the driver refuses contact points or an SSL context beside it.
        token = settings.astra_token
        assert token is not None  # Settings insists on both
        return {
            "cloud": {"secure_connect_bundle": str(settings.astra_secure_connect_bundle)},
            "auth_provider": PlainTextAuthProvider(_ASTRA_USER, token.get_secret_value()),
        }
    options: dict[str, Any] = {
        "contact_points": settings.contact_point_list,
        "port": settings.cassandra_port,
    }
    if settings.cassandra_username is not None:
        password = settings.cassandra_password
        assert password is not None  # Settings insists on both
        options["auth_provider"] = PlainTextAuthProvider(
            settings.cassandra_username, password.get_secret_value()
        )
    if settings.tls_enabled:
        options["ssl_context"] = tls_context(settings)
    return options


def tls_context(settings: Settings) -> ssl.SSLContext:
    """A client context: the configured CA (else the system's), TLS 1.2+, names checked.

    The driver passes the contact point as ``server_hostname`` whenever the
    context checks host names, so the node's certificate must name the address
    (or DNS name) that clients dial: an IP needs an IP subjectAltName.
    """
    ca = settings.cassandra_tls_ca_file
    try:
        context = ssl.create_default_context(cafile=str(ca) if ca is not None else None)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(
            f"KV_CASSANDRA_TLS_CA_FILE={ca} holds no usable PEM certificate ({exc})"
        ) from exc
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = settings.cassandra_tls_verify_hostname
    cert = settings.cassandra_tls_cert_file
    if cert is not None:
        key = settings.cassandra_tls_key_file
        try:
            context.load_cert_chain(str(cert), str(key) if key is not None else None)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                f"KV_CASSANDRA_TLS_CERT_FILE={cert} / KV_CASSANDRA_TLS_KEY_FILE={key}: "
                f"not a certificate and its matching key ({exc})"
            ) from exc
    return context


class _OneLineWhileConnecting(logging.Filter):
    """While this thread connects, the driver's reports lose their tracebacks.

    A failed connect is explained once, by us, in one line; the driver would
    log each attempt with a traceback first. Records from other threads (the
    driver's reconnection later on) pass untouched.
    """

    def __init__(self) -> None:
        super().__init__()
        self.connecting = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(self.connecting, "on", False):
            return True
        if "failed to connect, shutting down" in record.getMessage():
            return False  # what explain_connect_failure says, in one line
        record.exc_info = record.exc_text = None
        return True


_QUIET = _OneLineWhileConnecting()
for _name in ("cassandra.cluster", "cassandra.connection", "cassandra.pool"):
    logging.getLogger(_name).addFilter(_QUIET)


@contextlib.contextmanager
def one_line_logs() -> Iterator[None]:
    """Around ``Cluster.connect()``: the driver logs no traceback meanwhile."""
    _QUIET.connecting.on = True
    try:
        yield
    finally:
        _QUIET.connecting.on = False


def explain_connect_failure(exc: BaseException, settings: Settings) -> str:
    """One line for the operator: what failed, and which setting to look at.

    ``exc`` is what ``Cluster.connect()`` raised: usually NoHostAvailable, whose
    ``errors`` maps each endpoint tried to the error met there. The first
    endpoint error that we recognise decides the message.
    """
    where = _where(settings)
    errors = list(exc.errors.values()) if isinstance(exc, NoHostAvailable) and exc.errors else []
    causes = errors or [exc]
    for cause in causes:
        message = _explain_one(cause, settings, where)
        if message is not None:
            return message
    first = causes[0]
    return f"cannot connect to Cassandra at {where} ({type(first).__name__}: {_brief(first)})"


def _explain_one(cause: BaseException, settings: Settings, where: str) -> str | None:
    text = str(cause)
    if isinstance(cause, AuthenticationFailed):
        if settings.astra_secure_connect_bundle is not None:
            return f"Cassandra at {where} refused the credentials: check KV_ASTRA_TOKEN"
        if "requires authentication" in text and settings.cassandra_username is None:
            return (
                f"Cassandra at {where} requires authentication: "
                "set KV_CASSANDRA_USERNAME and KV_CASSANDRA_PASSWORD"
            )
        return (
            f"Cassandra at {where} refused the credentials of user "
            f"{settings.cassandra_username!r}: check KV_CASSANDRA_USERNAME and "
            "KV_CASSANDRA_PASSWORD"
        )
    # The driver re-raises socket and TLS errors as OSError with the SSL text.
    if "CERTIFICATE_VERIFY_FAILED" in text or _find(cause, ssl.SSLCertVerificationError):
        reason = _between(text, "certificate verify failed: ", " (_ssl")
        if "mismatch" in reason:
            return (
                f"the TLS certificate of Cassandra at {where} does not name that address "
                f"({reason}): dial a name it carries, or set KV_CASSANDRA_TLS_VERIFY_HOSTNAME=false"
            )
        return (
            f"the TLS certificate of Cassandra at {where} is not trusted ({reason}): "
            "check KV_CASSANDRA_TLS_CA_FILE"
        )
    if "WRONG_VERSION_NUMBER" in text:
        return (
            f"Cassandra at {where} does not speak TLS: unset KV_CASSANDRA_TLS and "
            "KV_CASSANDRA_TLS_CA_FILE, or turn on the node's client_encryption_options"
        )
    if "SSL" in text or _find(cause, ssl.SSLError) is not None:
        return (
            f"TLS handshake with Cassandra at {where} failed ({_brief(cause)}): check "
            "KV_CASSANDRA_TLS_CA_FILE, KV_CASSANDRA_TLS_CERT_FILE and KV_CASSANDRA_TLS_KEY_FILE"
        )
    if _unreachable(cause):
        return (
            f"no Cassandra node answers at {where} ({_last_error(cause)}): check "
            + _endpoint_settings(settings)
        )
    if settings.tls_enabled is False and _closed_during_startup(text):
        # A TLS-only node drops a plaintext client before it answers STARTUP.
        return (
            f"Cassandra at {where} closed the connection before answering "
            f"({_brief(cause)}): if the node requires TLS, set KV_CASSANDRA_TLS_CA_FILE"
        )
    return None


def _where(settings: Settings) -> str:
    if settings.astra_secure_connect_bundle is not None:
        return f"the Astra database of {settings.astra_secure_connect_bundle.name}"
    points = settings.contact_point_list
    return ", ".join(f"{p}:{settings.cassandra_port}" for p in points) or "(no contact points)"


def _endpoint_settings(settings: Settings) -> str:
    if settings.astra_secure_connect_bundle is not None:
        return "KV_ASTRA_SECURE_CONNECT_BUNDLE and the network path to Astra"
    return "KV_CONTACT_POINTS and KV_CASSANDRA_PORT"


_REFUSED = {errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ETIMEDOUT}


def _unreachable(cause: BaseException) -> bool:
    if isinstance(cause, OperationTimedOut | TimeoutError | ConnectionRefusedError):
        return True
    if isinstance(cause, OSError) and cause.errno in _REFUSED:
        return True
    text = str(cause)
    # The driver folds socket errors into ConnectionException/OSError text.
    return any(s in text for s in ("Connection refused", "Timed out", "No route to host"))


def _closed_during_startup(text: str) -> bool:
    return any(s in text for s in ("Connection reset", "closed", "ConnectionShutdown", "EOF"))


def _find(exc: BaseException, kind: type[_E]) -> _E | None:
    """The first ``kind`` among ``exc``, its causes and its contexts."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _between(text: str, start: str, end: str) -> str:
    """The part of ``text`` after ``start`` and before ``end``; all of it if absent."""
    head, found, rest = text.partition(start)
    return rest.partition(end)[0] if found else " ".join(head.split())[:200]


def _last_error(exc: BaseException) -> str:
    # "Tried connecting to [...]. Last error: Connection refused" -> the reason.
    return _brief(exc).rpartition("Last error: ")[2]


def _brief(exc: BaseException) -> str:
    # One line: the driver's messages sometimes embed newlines and reprs.
    return " ".join(str(exc).split())[:200] or type(exc).__name__

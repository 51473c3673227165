"""Settings, read once from ``KV_*`` environment variables and passed down."""

from __future__ import annotations

import ipaddress
import os
import secrets
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    FilePath,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from .domain.vectors import MAX_BEAM_WIDTH, MAX_MAX_CONNECTIONS, GraphOptions
from .errors import ConfigError


class JwtAlgorithm(StrEnum):
    HS256 = "HS256"
    RS256 = "RS256"
    ES256 = "ES256"


def _xdg(var: str, fallback: str) -> Path:
    return Path(os.environ.get(var) or Path.home() / fallback) / "kv-reco"


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


LogLevel = Annotated[
    Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], BeforeValidator(_upper)
]
Consistency = Annotated[
    Literal[
        "ANY", "ONE", "TWO", "THREE", "QUORUM", "ALL", "LOCAL_QUORUM", "EACH_QUORUM",
        "LOCAL_ONE", "SERIAL", "LOCAL_SERIAL",
    ],
    BeforeValidator(_upper),
]  # fmt: skip


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_key_url(value: str) -> str:
    # Whoever can change the key document can mint tokens: it comes over TLS,
    # except from this machine (a sidecar, the tests' provider).
    parts = urlsplit(value)
    if parts.scheme == "https" and parts.hostname:
        return value
    if parts.scheme == "http" and parts.hostname and _is_loopback(parts.hostname):
        return value
    raise ValueError("must be an https:// URL (http:// only on a loopback address)")


KeyUrl = Annotated[str, AfterValidator(check_key_url)]


# A dotted path into the claims: realm_access.roles. A segment may not be
# empty; a claim whose own name has dots (Auth0's https://x.example/roles) is
# matched whole before the path is split (auth.py).
def _claim_path(value: str) -> str:
    if not value or any(not part or part != part.strip() for part in value.split(".")):
        raise ValueError("must be a claim name or a dotted path to one, such as realm_access.roles")
    return value


def _scope(value: str) -> str:
    if not value or len(value.split()) != 1 or value != value.strip():
        raise ValueError("must be one scope value, such as reco:ingest (no spaces)")
    return value


ClaimPath = Annotated[str, AfterValidator(_claim_path)]
Scope = Annotated[str, AfterValidator(_scope)]


_NOT_WITH_ASTRA = frozenset(
    {
        "contact_points",
        "cassandra_port",
        "cassandra_username",
        "cassandra_password",
        "cassandra_tls",
        "cassandra_tls_ca_file",
        "cassandra_tls_cert_file",
        "cassandra_tls_key_file",
    }
)


class Settings(BaseSettings):
    # hide_input_in_errors: a validation error would otherwise quote every
    # input, secrets included (KV_CASSANDRA_PASSWORD, KV_JWT_SECRET, KV_ASTRA_TOKEN).
    model_config = SettingsConfigDict(
        env_prefix="KV_",
        frozen=True,
        extra="ignore",
        hide_input_in_errors=True,
        # Each field's docstring is its description: docs/hooks/generate.py makes the
        # documentation's KV_ table from them, so the table cannot drift.
        use_attribute_docstrings=True,
    )

    # HTTP
    host: str = "127.0.0.1"
    """Where `serve` listens."""
    port: int = 8080
    """The port `serve` listens on."""
    max_body_bytes: Annotated[int, Field(gt=0)] = 512 * 1024
    """Larger bodies get 413 (checked on `Content-Length` and while streaming)."""
    # The batch endpoint: 500 JSON vectors of 1536 dims are about 17 MiB.
    max_batch_items: Annotated[int, Field(ge=1, le=10_000)] = 500
    """Items per batch request."""
    max_batch_body_bytes: Annotated[int, Field(gt=0)] = 32 * 1024 * 1024
    """Larger batch bodies get 413."""
    retry_after_s: Annotated[int, Field(ge=1)] = 1
    """`Retry-After` on 503."""
    # Slow and greedy clients (api/server.py; docs/endpoint.md "Hostile input and slow clients").
    # A request's headers must arrive within header_timeout_s of its first
    # byte (or of the connection's opening), its body within body_timeout_s of
    # the headers' end: a 32 MiB batch then needs about 1.1 MB/s.
    header_timeout_s: Annotated[float, Field(gt=0)] = 10.0
    """Headers not complete this long after the first byte (or the connection) get 408."""
    body_timeout_s: Annotated[float, Field(gt=0)] = 30.0
    """A body not complete this long after the headers gets 408."""
    # An idle keep-alive connection is closed after this long.
    keepalive_timeout_s: Annotated[int, Field(ge=1)] = 5
    """Idle keep-alive connections are closed after this."""
    # Open connections per worker process; the one over it gets 503 at once.
    max_connections: Annotated[int, Field(ge=1)] = 1000
    """Open connections per worker process; the next one gets 503 and is closed."""
    # The request line's URL plus every header line; a JWT is about 300-800 bytes.
    max_header_bytes: Annotated[int, Field(ge=1024)] = 16 * 1024
    """URL plus header lines; over it, 431 (414 for the URL alone)."""
    max_headers: Annotated[int, Field(ge=8)] = 100
    """Header lines; over it, 431."""
    log_level: LogLevel = "INFO"
    """`DEBUG`, `INFO`, `WARNING`, `ERROR` or `CRITICAL`."""
    # text for a terminal (`make run`), json for a log pipeline: one object a line.
    log_format: Annotated[Literal["text", "json"], BeforeValidator(_lower)] = "text"
    """`text` for a terminal, `json` for one JSON object per line."""
    # On SIGTERM: how long in-flight requests may take to finish before the
    # process exits anyway. Keep it under the orchestrator's grace period.
    shutdown_timeout_s: Annotated[int, Field(ge=1, le=600)] = 10
    """On SIGTERM, how long in-flight requests may take before the process exits anyway."""

    # Cassandra
    contact_points: str = "127.0.0.1"
    """Comma-separated Cassandra nodes."""
    cassandra_port: int = 9042
    """CQL port."""
    local_dc: str | None = None
    """Data centre for load balancing; unset, the first node's."""
    # The vector column this instance writes and queries: the spec's
    # content_features, or a model migration's new column (docs/pipelines/migration.md).
    vector_column: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,47}$")] = "content_features"
    """The vector column this service writes and queries (a model migration names a new one)."""
    keyspace: str = Field(default="killrvideo", pattern=r"^[a-z][a-z0-9_]{0,47}$")
    """Keyspace of the `videos` table."""
    consistency: Consistency = "LOCAL_QUORUM"
    """Write consistency (serial: `LOCAL_SERIAL`)."""
    # The related-videos read of the source vector. The ANN query itself runs at
    # LOCAL_ONE whatever this says: Cassandra 5.0 refuses ANN at any other level.
    # LOCAL_ONE keeps related videos answering while ingest lacks a quorum.
    related_consistency: Consistency = "LOCAL_ONE"
    """Related videos: the read of the video's own vector (the ANN query is always `LOCAL_ONE`)."""
    # Credentials (PasswordAuthenticator). The password is a secret: its repr is
    # masked and it reaches only the driver's auth provider.
    cassandra_username: str | None = None
    """User for `PasswordAuthenticator`; goes with `KV_CASSANDRA_PASSWORD`."""
    cassandra_password: SecretStr | None = None
    """Its password: a secret, masked in every repr and error, never logged."""
    # Client-to-node TLS: on when KV_CASSANDRA_TLS=true or a CA file is given
    # (without a CA file the system's trust store is used). The node's
    # certificate must name the contact point unless verification is turned off.
    cassandra_tls: bool = False
    """Client-to-node TLS with the system's trust store; implied by a CA file."""
    cassandra_tls_ca_file: FilePath | None = None
    """PEM file of the CA(s) that signed the nodes' certificates; turns TLS on."""
    cassandra_tls_cert_file: FilePath | None = None  # client certificate (mutual TLS)
    """Client certificate, for nodes that require client authentication (mutual TLS)."""
    cassandra_tls_key_file: FilePath | None = None  # its key, if not in the cert file
    """The client certificate's key, when it is not in the certificate file."""
    cassandra_tls_verify_hostname: bool = True
    """The node's certificate must name the contact point dialled (DNS or IP subjectAltName)."""
    # DataStax Astra: the secure-connect bundle (zip) carries endpoints and TLS
    # material; the application token ("AstraCS:...") authenticates.
    astra_secure_connect_bundle: FilePath | None = None
    """DataStax Astra's secure-connect bundle (zip): replaces contact points, port,
    credentials and TLS settings, which must then be unset."""
    astra_token: SecretStr | None = None
    """DataStax Astra's application token (`AstraCS:…`); goes with the bundle."""
    request_timeout_s: Annotated[float, Field(gt=0)] = 3.0
    """Driver timeout per ingest; the node's own write timeout is 2 s."""
    connect_timeout_s: Annotated[float, Field(gt=0)] = 5.0
    """Driver connect timeout."""
    # Writes in flight to Cassandra per process. A node indexes only a few
    # vectors at once (concurrent_writes = cores); more in flight only queue
    # inside it and stretch every latency. On this 2-core machine 4 reached the
    # driver's best rate and halved the accepted p99 under overload against 8
    # (`make bench`; docs/operating.md "Overload").
    max_in_flight: Annotated[int, Field(ge=1)] = 4
    """Ingest writes in flight per process: the `fixed` bound; where `adaptive` starts."""
    # fixed: KV_MAX_IN_FLIGHT is the bound. adaptive: it is where the bound
    # starts, and the write latency moves it between the two settings below
    # (Gradient2, storage/_limiter.py; docs/load-and-limits.md).
    limit_mode: Annotated[Literal["fixed", "adaptive"], BeforeValidator(_lower)] = "adaptive"
    """`adaptive` (the bound follows write latency, Gradient2) or `fixed` (KV_MAX_IN_FLIGHT)."""
    adaptive_min_in_flight: Annotated[int, Field(ge=1)] = 2
    """Adaptive mode: the lowest in-flight bound (and the latency-floor probes' concurrency)."""
    adaptive_max_in_flight: Annotated[int, Field(ge=1, le=4096)] = 64
    """Adaptive mode: the highest the in-flight bound goes."""
    # How long a request may wait for a free slot before it gets 503 (the
    # newest waiter gets the next slot: storage/_limiter.py).
    queue_timeout_ms: Annotated[int, Field(ge=0)] = 100
    """How long a request waits for a free write slot before it gets 503."""
    # The native protocol version the driver speaks. v4 costs less client CPU
    # per write than v5 here (docs/architecture.md "One client"); both carry everything we use.
    cassandra_protocol_version: Annotated[int, Field(ge=4, le=5)] = 4
    """Native protocol version the driver speaks (4 or 5; 4 costs less client CPU)."""
    # Related videos: the ANN query asks the index for this many candidates per
    # video wanted and keeps the best by exact score. 1 takes the index's own
    # top. At 50,000 vectors 3 held only 0.93-0.96 of the true top 10, stock
    # graph included, and 10 held 0.98-1.00 in the memtable, after a flush and
    # after compaction, for 25 ms p50 on disk against 19 (`make bench-index`,
    # docs/index-options.md).
    related_overfetch: Annotated[int, Field(ge=1, le=10)] = 10
    """Related videos: candidates asked of the ANN index per video returned (1 to 10)."""
    # The SAI vector graph's build options, used by `kv-reco schema apply` when
    # it creates the index (docs/index-options.md): construction_beam_width and
    # maximum_node_connections, bounded as Cassandra 5.0.9 bounds them. Stock
    # is 100 / 16. At 50,000 vectors 100 / 8 indexed 1.97x as many vectors/s as
    # stock at 0.48x the node's CPU per insert, and with the overfetch of 10
    # kept recall@10 >= 0.989 in the memtable and on disk. 40 / 8 was cheaper
    # still, but a graph that compaction rebuilds with it held 0.81 at 50,000.
    # A cluster that refuses custom options gets the stock ones when these are
    # defaults; `schema apply` stops when they were set explicitly.
    index_beam_width: Annotated[int, Field(ge=1, le=MAX_BEAM_WIDTH)] = 100
    """SAI graph `construction_beam_width` for `schema apply` (1 to 3200; stock 100)."""
    index_max_connections: Annotated[int, Field(ge=1, le=MAX_MAX_CONNECTIONS)] = 8
    """SAI graph `maximum_node_connections` for `schema apply` (1 to 512; stock 16)."""

    # Auth
    jwt_algorithm: JwtAlgorithm = JwtAlgorithm.HS256
    """The one accepted algorithm: `HS256`, `RS256` or `ES256`."""
    jwt_secret: SecretStr | None = None
    """HS256 secret, at least 32 characters; unset, a local development key in `KV_STATE_DIR`."""
    jwt_public_key_file: Path | None = None
    """PEM public key for RS256/ES256."""
    jwt_private_key_file: Path | None = None
    """PEM private key, only for `kv-reco token` with RS256/ES256."""
    jwt_issuer: str | None = None
    """When set, `iss` is required and checked."""
    jwt_audience: str | None = None
    """When set, `aud` is required and checked."""
    jwt_leeway_s: Annotated[int, Field(ge=0)] = 0
    """Clock-skew allowance for `exp`."""
    # Service accounts: the identity provider's signing keys (docs/service-accounts.md).
    jwt_jwks_url: KeyUrl | None = None
    """The identity provider's JWKS document (https, or http on loopback)."""
    jwt_discovery: bool = False
    """Find the JWKS URL from `KV_JWT_ISSUER` + `/.well-known/openid-configuration` instead."""
    jwt_roles_claim: ClaimPath = "roles"
    """Dotted path to the list that must hold `creator` (Keycloak: `realm_access.roles`)."""
    jwt_scope: Scope | None = None
    """A scope in a space-separated `scope` or `scp` claim that grants the creator role."""
    # A token naming an unknown kid fetches the set at most once per
    # KV_JWT_JWKS_MIN_REFRESH_S: made-up kids cannot become a storm of requests
    # to the provider.
    jwt_jwks_refresh_s: Annotated[int, Field(ge=1, le=86_400)] = 600
    """Seconds between background fetches of the key set."""
    jwt_jwks_min_refresh_s: Annotated[int, Field(ge=1, le=3600)] = 60
    """Least seconds between fetches that an unknown `kid` triggers."""
    # One fetch, connection to last byte; a request waits at most this long
    # for a key, well under a client's timeout.
    jwt_jwks_timeout_s: Annotated[float, Field(gt=0, le=10)] = 2.0
    """Deadline of one key-set fetch, in seconds."""

    # Local node manager
    state_dir: Path = Field(default_factory=lambda: _xdg("XDG_STATE_HOME", ".local/state"))
    """Node data and the local dev key (or `$XDG_STATE_HOME/kv-reco`)."""
    cache_dir: Path = Field(default_factory=lambda: _xdg("XDG_CACHE_HOME", ".cache"))
    """Downloaded Cassandra jars and the model's ONNX graph (or `$XDG_CACHE_HOME/kv-reco`)."""
    cassandra_version: str = "5.0.9"
    """The `cassandra-all` version the node manager runs."""
    cassandra_heap: str = Field(
        default="1G",
        pattern=r"^((51[2-9]|5[2-9][0-9]|[6-9][0-9]{2}|[1-9][0-9]{3})M|([1-9]|1[0-6])G)$",
    )
    """Node heap, `512M` to `16G` (`make bench-index` runs its node with `4G`)."""

    @model_validator(mode="after")
    def _check_keys(self) -> Self:
        if self.uses_jwks:
            return self._check_jwks()
        if self.jwt_algorithm is JwtAlgorithm.HS256:
            if self.jwt_public_key_file is not None:
                raise ValueError("KV_JWT_PUBLIC_KEY_FILE needs KV_JWT_ALGORITHM=RS256 or ES256")
            if self.jwt_secret is not None and len(self.jwt_secret.get_secret_value()) < 32:
                raise ValueError("KV_JWT_SECRET must be at least 32 characters for HS256")
        elif self.jwt_public_key_file is None:
            raise ValueError(f"KV_JWT_ALGORITHM={self.jwt_algorithm} needs KV_JWT_PUBLIC_KEY_FILE")
        return self

    def _check_jwks(self) -> Self:
        if self.jwt_discovery and self.jwt_jwks_url is not None:
            raise ValueError("KV_JWT_DISCOVERY finds the JWKS URL itself: unset KV_JWT_JWKS_URL")
        local = sorted(
            f"KV_{name.upper()}"
            for name in self.model_fields_set
            & {"jwt_algorithm", "jwt_secret", "jwt_public_key_file"}
        )
        if local:
            raise ValueError(
                f"the identity provider's keys (KV_JWT_JWKS_URL / KV_JWT_DISCOVERY) replace "
                f"{', '.join(local)}: unset them"
            )
        # Any key the provider publishes signs tokens for its every client: only
        # iss and aud tell this service's tokens apart.
        if self.jwt_issuer is None or self.jwt_audience is None:
            raise ValueError(
                "KV_JWT_ISSUER and KV_JWT_AUDIENCE are required with KV_JWT_JWKS_URL or "
                "KV_JWT_DISCOVERY"
            )
        if self.jwt_discovery:
            try:
                check_key_url(self.jwt_issuer)
            except ValueError as exc:
                raise ValueError(f"KV_JWT_ISSUER, with KV_JWT_DISCOVERY, {exc}") from None
        if self.jwt_jwks_min_refresh_s > self.jwt_jwks_refresh_s:
            raise ValueError("KV_JWT_JWKS_MIN_REFRESH_S must not exceed KV_JWT_JWKS_REFRESH_S")
        return self

    @model_validator(mode="after")
    def _check_limits(self) -> Self:
        if self.adaptive_min_in_flight > self.adaptive_max_in_flight:
            raise ValueError(
                f"KV_ADAPTIVE_MIN_IN_FLIGHT ({self.adaptive_min_in_flight}) exceeds "
                f"KV_ADAPTIVE_MAX_IN_FLIGHT ({self.adaptive_max_in_flight})"
            )
        return self

    @model_validator(mode="after")
    def _check_cassandra_access(self) -> Self:
        if (self.cassandra_username is None) != (self.cassandra_password is None):
            raise ValueError("KV_CASSANDRA_USERNAME and KV_CASSANDRA_PASSWORD go together")
        if self.cassandra_tls_key_file is not None and self.cassandra_tls_cert_file is None:
            raise ValueError("KV_CASSANDRA_TLS_KEY_FILE needs KV_CASSANDRA_TLS_CERT_FILE")
        if (self.astra_secure_connect_bundle is None) != (self.astra_token is None):
            raise ValueError("KV_ASTRA_SECURE_CONNECT_BUNDLE and KV_ASTRA_TOKEN go together")
        if self.astra_secure_connect_bundle is not None:
            # The bundle names the endpoints and carries the TLS material itself.
            clashing = sorted(
                f"KV_{name.upper()}" for name in self.model_fields_set & _NOT_WITH_ASTRA
            )
            if clashing:
                raise ValueError(
                    f"KV_ASTRA_SECURE_CONNECT_BUNDLE replaces {', '.join(clashing)}: unset them"
                )
        return self

    @property
    def tls_enabled(self) -> bool:
        return (
            self.cassandra_tls
            or self.cassandra_tls_ca_file is not None
            or (self.cassandra_tls_cert_file is not None)
        )

    @property
    def index_graph(self) -> GraphOptions:
        """The graph options `schema apply` asks for."""
        return GraphOptions(
            beam_width=self.index_beam_width, max_connections=self.index_max_connections
        )

    @property
    def index_graph_explicit(self) -> bool:
        """Whether an operator set either graph option (KV_INDEX_*), not the defaults."""
        return bool({"index_beam_width", "index_max_connections"} & self.model_fields_set)

    @property
    def contact_point_list(self) -> list[str]:
        return [p.strip() for p in self.contact_points.split(",") if p.strip()]

    @property
    def uses_jwks(self) -> bool:
        """Tokens are checked with the identity provider's published keys."""
        return self.jwt_jwks_url is not None or self.jwt_discovery

    @property
    def uses_local_dev_key(self) -> bool:
        return (
            not self.uses_jwks
            and self.jwt_algorithm is JwtAlgorithm.HS256
            and self.jwt_secret is None
        )

    def hmac_secret(self) -> str:
        """The HS256 secret: configured, or generated once into the state directory.

        The local key lets ``serve`` and ``token`` agree with no set-up on a
        developer machine; production sets KV_JWT_SECRET or a public key.
        """
        if self.jwt_secret is not None:
            return self.jwt_secret.get_secret_value()
        path = self.state_dir / "dev-jwt-secret"
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            pass
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write aside, then link: a concurrent reader never sees a half-written
        # file, and of two racing writers the first link wins for both.
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(secrets.token_urlsafe(48))
        tmp.chmod(0o600)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
        return path.read_text().strip()


def load_settings() -> Settings:
    """Settings from the environment; ConfigError with one line naming each bad variable."""
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigError(describe(exc)) from None


def describe(exc: ValidationError) -> str:
    """One line for a failed validation: each variable, what is wrong, what it got."""
    problems = []
    for error in exc.errors():
        message = str(error["msg"]).removeprefix("Value error, ")
        if not error["loc"]:  # a rule across variables: its message names them
            problems.append(message)
            continue
        name = f"KV_{str(error['loc'][0]).upper()}"
        # Never echo a secret back into a log.
        shown = "" if name in SECRET_VARIABLES else f" (got {error['input']!r})"
        problems.append(f"{name}: {message}{shown}")
    return "invalid configuration: " + "; ".join(problems)


SECRET_VARIABLES = frozenset({"KV_JWT_SECRET", "KV_API_TOKEN"})


def shown(settings: Settings) -> list[tuple[str, str, bool]]:
    """Every setting in force as (variable, value, from the environment?), secrets masked."""
    rows = []
    for field, value in settings.model_dump().items():
        name = f"KV_{field.upper()}"
        if value is None:
            text = ""
        elif name in SECRET_VARIABLES:
            text = "********"
        elif isinstance(value, bool):
            text = str(value).lower()
        else:
            text = str(value.value if isinstance(value, StrEnum) else value)
        rows.append((name, text, name in os.environ))
    return rows

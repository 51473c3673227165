"""Settings, read once from ``KV_*`` environment variables and passed down."""

from __future__ import annotations

import os
import secrets
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import BeforeValidator, Field, FilePath, SecretStr, ValidationError, model_validator
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
        env_prefix="KV_", frozen=True, extra="ignore", hide_input_in_errors=True
    )

    # HTTP
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: Annotated[int, Field(gt=0)] = 512 * 1024
    # The batch endpoint: 500 JSON vectors of 1536 dims are about 17 MiB.
    max_batch_items: Annotated[int, Field(ge=1, le=10_000)] = 500
    max_batch_body_bytes: Annotated[int, Field(gt=0)] = 32 * 1024 * 1024
    retry_after_s: Annotated[int, Field(ge=1)] = 1
    # Slow and greedy clients (api/server.py; README "Slow and greedy clients").
    # A request's headers must arrive within header_timeout_s of its first
    # byte (or of the connection's opening), its body within body_timeout_s of
    # the headers' end: a 32 MiB batch then needs about 1.1 MB/s.
    header_timeout_s: Annotated[float, Field(gt=0)] = 10.0
    body_timeout_s: Annotated[float, Field(gt=0)] = 30.0
    # An idle keep-alive connection is closed after this long.
    keepalive_timeout_s: Annotated[int, Field(ge=1)] = 5
    # Open connections per worker process; the one over it gets 503 at once.
    max_connections: Annotated[int, Field(ge=1)] = 1000
    # The request line's URL plus every header line; a JWT is about 300-800 bytes.
    max_header_bytes: Annotated[int, Field(ge=1024)] = 16 * 1024
    max_headers: Annotated[int, Field(ge=8)] = 100
    log_level: LogLevel = "INFO"
    # text for a terminal (`make run`), json for a log pipeline: one object a line.
    log_format: Annotated[Literal["text", "json"], BeforeValidator(_lower)] = "text"
    # On SIGTERM: how long in-flight requests may take to finish before the
    # process exits anyway. Keep it under the orchestrator's grace period.
    shutdown_timeout_s: Annotated[int, Field(ge=1, le=600)] = 10

    # Cassandra
    contact_points: str = "127.0.0.1"
    cassandra_port: int = 9042
    local_dc: str | None = None
    # The vector column this instance writes and queries: the spec's
    # content_features, or a model migration's new column (README).
    vector_column: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,47}$")] = "content_features"
    keyspace: str = Field(default="killrvideo", pattern=r"^[a-z][a-z0-9_]{0,47}$")
    consistency: Consistency = "LOCAL_QUORUM"
    # The related-videos read of the source vector. The ANN query itself runs at
    # LOCAL_ONE whatever this says: Cassandra 5.0 refuses ANN at any other level.
    # LOCAL_ONE keeps related videos answering while ingest lacks a quorum.
    related_consistency: Consistency = "LOCAL_ONE"
    # Credentials (PasswordAuthenticator). The password is a secret: its repr is
    # masked and it reaches only the driver's auth provider.
    cassandra_username: str | None = None
    cassandra_password: SecretStr | None = None
    # Client-to-node TLS: on when KV_CASSANDRA_TLS=true or a CA file is given
    # (without a CA file the system's trust store is used). The node's
    # certificate must name the contact point unless verification is turned off.
    cassandra_tls: bool = False
    cassandra_tls_ca_file: FilePath | None = None
    cassandra_tls_cert_file: FilePath | None = None  # client certificate (mutual TLS)
    cassandra_tls_key_file: FilePath | None = None  # its key, if not in the cert file
    cassandra_tls_verify_hostname: bool = True
    # DataStax Astra: the secure-connect bundle (zip) carries endpoints and TLS
    # material; the application token ("AstraCS:...") authenticates.
    astra_secure_connect_bundle: FilePath | None = None
    astra_token: SecretStr | None = None
    request_timeout_s: Annotated[float, Field(gt=0)] = 3.0
    connect_timeout_s: Annotated[float, Field(gt=0)] = 5.0
    # Writes in flight to Cassandra per process. A node indexes only a few
    # vectors at once (concurrent_writes = cores); more in flight only queue
    # inside it and stretch every latency. On this 2-core machine 4 reached the
    # driver's best rate and halved the accepted p99 under overload against 8
    # (`make bench`, README "Measured").
    max_in_flight: Annotated[int, Field(ge=1)] = 4
    # How long a request may wait for a free slot before it gets 503 (the
    # newest waiter gets the next slot: storage/_limiter.py).
    queue_timeout_ms: Annotated[int, Field(ge=0)] = 100
    # The native protocol version the driver speaks. v4 costs less client CPU
    # per write than v5 here (README "Measured"); both carry everything we use.
    cassandra_protocol_version: Annotated[int, Field(ge=4, le=5)] = 4
    # Related videos: the ANN query asks the index for this many candidates per
    # video wanted and keeps the best by exact score. 1 takes the index's own
    # top; 3 lifts on-disk recall@10 to 0.98-1.00 under every similarity,
    # dot_product included (bench/recall.py, README "Measured").
    related_overfetch: Annotated[int, Field(ge=1, le=10)] = 3
    # The SAI vector graph's build options, used by `kv-reco schema apply` when
    # it creates the index (docs/index-options.md): construction_beam_width and
    # maximum_node_connections, bounded as Cassandra 5.0.9 bounds them. Stock
    # is 100 / 16. 40 / 8 indexed 4.9x as many vectors/s per node as stock and
    # kept recall@10 >= 0.959 in the memtable and on disk at the service's
    # overfetch of 3 (`make bench-index`). A cluster that refuses custom options
    # gets the stock ones when these are defaults; `schema apply` stops when
    # they were set explicitly.
    index_beam_width: Annotated[int, Field(ge=1, le=MAX_BEAM_WIDTH)] = 40
    index_max_connections: Annotated[int, Field(ge=1, le=MAX_MAX_CONNECTIONS)] = 8

    # Auth
    jwt_algorithm: JwtAlgorithm = JwtAlgorithm.HS256
    jwt_secret: SecretStr | None = None
    jwt_public_key_file: Path | None = None
    jwt_private_key_file: Path | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_leeway_s: Annotated[int, Field(ge=0)] = 0

    # Local node manager
    state_dir: Path = Field(default_factory=lambda: _xdg("XDG_STATE_HOME", ".local/state"))
    cache_dir: Path = Field(default_factory=lambda: _xdg("XDG_CACHE_HOME", ".cache"))
    cassandra_version: str = "5.0.9"
    cassandra_heap: str = Field(default="1G", pattern=r"^(512M|[5-9][0-9]{2}M|10[0-2][0-4]M|1G)$")

    @model_validator(mode="after")
    def _check_keys(self) -> Self:
        if self.jwt_algorithm is JwtAlgorithm.HS256:
            if self.jwt_public_key_file is not None:
                raise ValueError("KV_JWT_PUBLIC_KEY_FILE needs KV_JWT_ALGORITHM=RS256 or ES256")
            if self.jwt_secret is not None and len(self.jwt_secret.get_secret_value()) < 32:
                raise ValueError("KV_JWT_SECRET must be at least 32 characters for HS256")
        elif self.jwt_public_key_file is None:
            raise ValueError(f"KV_JWT_ALGORITHM={self.jwt_algorithm} needs KV_JWT_PUBLIC_KEY_FILE")
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
    def uses_local_dev_key(self) -> bool:
        return self.jwt_algorithm is JwtAlgorithm.HS256 and self.jwt_secret is None

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

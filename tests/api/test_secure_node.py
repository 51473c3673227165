"""Ingest through a node with PasswordAuthenticator and client TLS, and its refusals.

The node is a real one, started by `kv-reco cassandra start --auth --tls` on
127.0.0.10 with its own state directory (it never touches the shared node).
Its certificate is signed by a development CA made with keytool; the tests
trust that CA through KV_CASSANDRA_TLS_CA_FILE, as an operator would.
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import numpy as np
import pytest

from killrvideo_reco.config import Settings
from killrvideo_reco.devnode import DEV_PASSWORD, DEV_USERNAME
from killrvideo_reco.devnode._tls import DevTls
from killrvideo_reco.domain.vectors import Similarity
from killrvideo_reco.domain.videos import Video
from killrvideo_reco.errors import StorageUnavailable
from killrvideo_reco.storage import CassandraStore

from ..conftest import KV, Service, free_port, service_env, token_for

ADDRESS = "127.0.0.10"
DIM = 64


@pytest.fixture(scope="session")
def secure_node() -> Path:
    """Start (or find) the auth + TLS node; return its CA certificate."""
    state = Settings().state_dir / "secure-node"
    done = subprocess.run(
        [
            KV,
            "cassandra",
            "start",
            "--auth",
            "--tls",
            "--address",
            ADDRESS,
            "--state-dir",
            str(state),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, f"the auth/TLS node did not start:\n{done.stdout}\n{done.stderr}"
    ca = state / "tls" / "ca.pem"
    assert f"KV_CASSANDRA_TLS_CA_FILE={ca}" in done.stdout
    assert DEV_PASSWORD not in done.stdout.replace(f"USERNAME={DEV_USERNAME}", "")
    return ca


def _secure(ca: Path, **fields: object) -> Settings:
    base: dict[str, object] = {
        "contact_points": ADDRESS,
        "cassandra_username": DEV_USERNAME,
        "cassandra_password": DEV_PASSWORD,
        "cassandra_tls_ca_file": ca,
        "connect_timeout_s": 5.0,
    }
    return Settings(**{**base, **fields})  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def app_role(secure_node: Path) -> Iterator[tuple[str, str, str]]:
    """A login role with a password no other text contains, and a keyspace for it."""
    name, password = f"kv_app_{secrets.token_hex(3)}", f"pw-{secrets.token_hex(12)}"
    keyspace = f"kv_sec_{secrets.token_hex(4)}"
    admin = CassandraStore.open(_secure(secure_node, keyspace=keyspace))
    admin.schema.execute(f"CREATE ROLE {name} WITH PASSWORD = '{password}' AND LOGIN = true")
    admin.schema.apply(dimension=DIM, similarity=Similarity.COSINE, replication_factor=1)
    yield name, password, keyspace
    admin.schema.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")
    admin.schema.execute(f"DROP ROLE IF EXISTS {name}")
    admin.close()


def test_the_api_ingests_and_reads_back_through_auth_and_tls(
    secure_node: Path, app_role: tuple[str, str, str], tmp_path: Path
) -> None:
    name, password, keyspace = app_role
    settings = _secure(
        secure_node, cassandra_username=name, cassandra_password=password, keyspace=keyspace
    )
    store = CassandraStore.open(settings)
    try:
        store.load_schema()
        videos = [Video(name=f"secure {i}") for i in range(3)]
        store.videos.insert(videos)
        env = service_env(
            settings.keyspace,
            tmp_path / "state",
            KV_CONTACT_POINTS=ADDRESS,
            KV_CASSANDRA_USERNAME=name,
            KV_CASSANDRA_PASSWORD=password,
            KV_CASSANDRA_TLS_CA_FILE=str(secure_node),
            KV_FAST_PATH="false",
            KV_LOG_LEVEL="DEBUG",  # the password must not appear even here
        )
        rng = np.random.default_rng(10)
        vectors = rng.standard_normal((len(videos), DIM)).astype(np.float32)
        with Service(env) as service:
            url = service.url
            headers = {"Authorization": f"Bearer {_token(env)}"}
            for video, vector in zip(videos, vectors, strict=True):
                body = {"videoId": str(video.videoid), "vector": vector.tolist()}
                answer = httpx.post(f"{url}/api/v1/reco/ingest", json=body, headers=headers)
                assert answer.status_code == 202, answer.text
            related = httpx.get(
                f"{url}/api/v1/videos/id/{videos[0].videoid}/related", headers=headers
            )
            assert related.status_code == 200, related.text
            # Read at KV_RELATED_CONSISTENCY over the same authenticated TLS session.
            assert {item["videoId"] for item in related.json()} == {
                str(v.videoid) for v in videos[1:]
            }
        for video, vector in zip(videos, vectors, strict=True):
            row = store.videos.read(video.videoid)
            assert row is not None
            assert np.array_equal(np.asarray(row["content_features"], np.float32), vector)
    finally:
        store.close()
    output = service.output
    assert "connected" in output or "ingesting" in output, output[-2000:]
    assert password not in output, "the Cassandra password reached the service's log"


def test_a_wrong_password_is_refused_with_one_line_naming_the_settings(secure_node: Path) -> None:
    wrong = f"wrong-{secrets.token_hex(6)}"
    with pytest.raises(StorageUnavailable) as refused:
        CassandraStore.open(_secure(secure_node, cassandra_password=wrong))
    message = refused.value.message
    assert message == (
        f"Cassandra at {ADDRESS}:9042 refused the credentials of user '{DEV_USERNAME}': "
        "check KV_CASSANDRA_USERNAME and KV_CASSANDRA_PASSWORD"
    )
    assert wrong not in message


def test_the_cli_reports_a_wrong_password_in_one_line_without_a_traceback(
    secure_node: Path,
) -> None:
    wrong = f"wrong-{secrets.token_hex(6)}"
    env = service_env("kv_nowhere", Path("/nonexistent"), KV_CONTACT_POINTS=ADDRESS,
                      KV_CASSANDRA_USERNAME=DEV_USERNAME, KV_CASSANDRA_PASSWORD=wrong,
                      KV_CASSANDRA_TLS_CA_FILE=str(secure_node))  # fmt: skip
    done = subprocess.run(
        [KV, "schema", "apply", "--dimension", "8"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"error: Cassandra at {ADDRESS}:9042 refused the credentials of user '{DEV_USERNAME}': "
        "check KV_CASSANDRA_USERNAME and KV_CASSANDRA_PASSWORD"
    ], done.stderr
    assert wrong not in done.stdout + done.stderr


def test_a_certificate_from_another_ca_is_refused_naming_the_ca_setting(
    secure_node: Path, tmp_path: Path
) -> None:
    other = DevTls(tmp_path / "other-ca")
    other.ensure([])  # a CA of its own, which never signed the node's certificate
    with pytest.raises(StorageUnavailable) as refused:
        CassandraStore.open(_secure(secure_node, cassandra_tls_ca_file=other.ca_pem))
    assert refused.value.message == (
        f"the TLS certificate of Cassandra at {ADDRESS}:9042 is not trusted "
        "(self-signed certificate in certificate chain): check KV_CASSANDRA_TLS_CA_FILE"
    )


def test_plaintext_and_anonymous_clients_are_refused(secure_node: Path) -> None:
    with pytest.raises(StorageUnavailable, match="if the node requires TLS, set KV_CASSANDRA_TLS"):
        CassandraStore.open(_secure(secure_node, cassandra_tls_ca_file=None))
    with pytest.raises(StorageUnavailable, match="set KV_CASSANDRA_USERNAME and KV_CASSANDRA_PASS"):
        CassandraStore.open(_secure(secure_node, cassandra_username=None, cassandra_password=None))


def test_an_unreachable_host_names_the_endpoint_settings() -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(StorageUnavailable) as refused:
        CassandraStore.open(Settings(contact_points="127.0.0.1", cassandra_port=port))
    assert refused.value.message == (
        f"no Cassandra node answers at 127.0.0.1:{port} (Connection refused): "
        "check KV_CONTACT_POINTS and KV_CASSANDRA_PORT"
    )


# -- helpers -------------------------------------------------------------------


def _token(env: dict[str, str]) -> str:
    settings = Settings(state_dir=Path(env["KV_STATE_DIR"]), jwt_secret=None)
    return token_for(settings, "creator")

"""Settings to driver options, and the one-line connect failures (no node needed).

Astra cannot be reached from here (no internet): these tests check the options
a bundle and a token become, which is everything of ours on that path.
"""

from __future__ import annotations

import os
import ssl
import zipfile
from pathlib import Path

import pytest
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import NoHostAvailable

from killrvideo_reco.config import Settings, load_settings
from killrvideo_reco.errors import ConfigError
from killrvideo_reco.storage._connect import cluster_options, explain_connect_failure

# Short: pydantic elides the middle of a long input it quotes, which would hide a leak.
SECRET = "pw-7f3a9"


@pytest.fixture(autouse=True)
def _no_kv_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # These tests build settings from explicit values; a cluster the suite was
    # told to keep (KV_TEST_ALLOW_REMOTE) must not leak into them.
    for name in [n for n in os.environ if n.startswith("KV_")]:
        monkeypatch.delenv(name)


def _bundle(tmp_path: Path) -> Path:
    path = tmp_path / "secure-connect-db.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("config.json", '{"host": "example.invalid", "port": 29080}')
    return path


def test_plain_settings_give_contact_points_and_port_only() -> None:
    options = cluster_options(Settings(contact_points="10.0.0.1, 10.0.0.2", cassandra_port=9142))
    assert options == {"contact_points": ["10.0.0.1", "10.0.0.2"], "port": 9142}


def test_credentials_become_a_plain_text_auth_provider() -> None:
    options = cluster_options(Settings(cassandra_username="app", cassandra_password=SECRET))
    provider = options["auth_provider"]
    assert isinstance(provider, PlainTextAuthProvider)
    assert (provider.username, provider.password) == ("app", SECRET)


def test_the_password_is_masked_in_the_settings_repr() -> None:
    settings = Settings(cassandra_username="app", cassandra_password=SECRET, astra_token=None)
    assert SECRET not in repr(settings) and SECRET not in str(settings)
    assert SECRET not in str(settings.model_dump())


def test_a_ca_file_turns_tls_on_with_host_names_checked(tmp_path: Path) -> None:
    ca = _self_signed_ca(tmp_path / "ca.pem")
    context = cluster_options(Settings(cassandra_tls_ca_file=ca))["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    unchecked = Settings(cassandra_tls_ca_file=ca, cassandra_tls_verify_hostname=False)
    assert not cluster_options(unchecked)["ssl_context"].check_hostname


def test_a_ca_file_that_is_not_pem_is_a_config_error_naming_the_setting(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not a certificate")
    with pytest.raises(ConfigError, match="KV_CASSANDRA_TLS_CA_FILE="):
        cluster_options(Settings(cassandra_tls_ca_file=ca))


def test_astra_takes_the_bundle_and_the_token_and_nothing_else(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path)
    options = cluster_options(
        Settings(astra_secure_connect_bundle=bundle, astra_token="AstraCS:abc:def")
    )
    assert set(options) == {"cloud", "auth_provider"}
    assert options["cloud"] == {"secure_connect_bundle": str(bundle)}
    assert options["auth_provider"].username == "token"
    assert options["auth_provider"].password == "AstraCS:abc:def"


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"cassandra_username": "app"}, "KV_CASSANDRA_PASSWORD"),
        ({"cassandra_password": SECRET}, "KV_CASSANDRA_USERNAME"),
        ({"astra_token": "AstraCS:x"}, "KV_ASTRA_SECURE_CONNECT_BUNDLE"),
        ({"consistency": "MOSTLY"}, "KV_CONSISTENCY"),
        ({"related_consistency": "EVENTUALLY"}, "KV_RELATED_CONSISTENCY"),
    ],
)
def test_incomplete_or_wrong_settings_are_refused_naming_the_setting(
    fields: dict[str, str], named: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in fields.items():
        monkeypatch.setenv(f"KV_{name.upper()}", value)
    with pytest.raises(ConfigError, match=named) as refused:
        load_settings()
    assert SECRET not in str(refused.value)


def test_astra_refuses_contact_points_beside_the_bundle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KV_ASTRA_SECURE_CONNECT_BUNDLE", str(_bundle(tmp_path)))
    monkeypatch.setenv("KV_ASTRA_TOKEN", "AstraCS:x")
    monkeypatch.setenv("KV_CONTACT_POINTS", "10.0.0.1")
    with pytest.raises(ConfigError, match="replaces KV_CONTACT_POINTS"):
        load_settings()


def test_a_missing_ca_file_is_refused_at_start_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KV_CASSANDRA_TLS_CA_FILE", str(tmp_path / "nope.pem"))
    with pytest.raises(ConfigError, match="KV_CASSANDRA_TLS_CA_FILE"):
        load_settings()


def test_an_unreachable_cluster_names_the_endpoint_settings() -> None:
    refused = ConnectionRefusedError(
        111, "Tried connecting to [('10.9.9.9', 9042)]. Last error: Connection refused"
    )
    exc = NoHostAvailable("Unable to connect to any servers", {"10.9.9.9:9042": refused})
    message = explain_connect_failure(exc, Settings(contact_points="10.9.9.9"))
    assert message == (
        "no Cassandra node answers at 10.9.9.9:9042 (Connection refused): "
        "check KV_CONTACT_POINTS and KV_CASSANDRA_PORT"
    )


def _self_signed_ca(path: Path) -> Path:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path

"""The identity provider's key set: what is taken from it; the settings that name it.

The fetches and the refresh policy: tests/integration/test_jwks.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import given
from hypothesis import strategies as st
from jwt.algorithms import ECAlgorithm, OKPAlgorithm

from killrvideo_reco.auth import CREATOR, claim_at, mint_token
from killrvideo_reco.config import Settings, load_settings
from killrvideo_reco.errors import ConfigError
from killrvideo_reco.jwks import MAX_KEYS, JwksError, parse_jwks

from ..idp.broken import duplicate_set, good_set, malformed_set, public_jwk

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def test_a_good_set_gives_its_key_for_its_alg_only() -> None:
    keys, ignored = parse_jwks(good_set(RSA_KEY, "k1"))
    assert ignored == [] and keys["k1"].algorithms == {"RS256"}


def test_a_key_without_alg_is_good_for_its_type_only() -> None:
    rsa_jwk = public_jwk(RSA_KEY, "entra")
    del rsa_jwk["alg"]  # Entra ID publishes no alg
    ec_jwk = {
        **json.loads(ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP384R1()).public_key())),
        "kid": "ec",
    }
    ed_jwk = {
        **json.loads(OKPAlgorithm.to_jwk(ed25519.Ed25519PrivateKey.generate().public_key())),
        "kid": "ed",
    }
    keys, _ = parse_jwks(json.dumps({"keys": [rsa_jwk, ec_jwk, ed_jwk]}).encode())
    assert keys["entra"].algorithms == {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
    assert keys["ec"].algorithms == {"ES384"}
    assert keys["ed"].algorithms == {"EdDSA"}


def test_a_kid_listed_twice_with_different_keys_is_left_out() -> None:
    keys, ignored = parse_jwks(duplicate_set(RSA_KEY, "good"))
    assert set(keys) == {"good"}  # the same key twice is harmless
    assert ignored == ["kid 'twice' is listed twice with different keys: both left out"]


def test_keys_that_must_be_refused_are_each_said_and_none_is_taken() -> None:
    with pytest.raises(JwksError) as refused:
        parse_jwks(malformed_set(RSA_KEY, "good"))
    said = str(refused.value)
    for reason in (
        "symmetric key: never taken",
        "not a signing key (use 'enc')",
        "1024 bits: too weak",
        "'bad-n' does not parse",
    ):
        assert reason in said
    for entry in json.loads(malformed_set(RSA_KEY, "good"))["keys"]:
        document = json.dumps({"keys": [entry]}).encode()
        with pytest.raises(JwksError, match="no usable signing key"):
            parse_jwks(document)


@pytest.mark.parametrize(
    ("document", "said"),
    [
        (b"<html>down</html>", "not JSON"),
        (b"[" * 100_000, "not JSON"),
        (b'{"keys": {}}', "no 'keys' list"),
        (b"[]", "no 'keys' list"),
        (b'{"keys": []}', "the list is empty"),
        (json.dumps({"keys": [{}] * (MAX_KEYS + 1)}).encode(), "over the limit"),
    ],
)
def test_documents_that_are_not_key_sets_are_refused(document: bytes, said: str) -> None:
    with pytest.raises(JwksError, match=said):
        parse_jwks(document)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)
_member = st.sampled_from(["kty", "kid", "alg", "use", "crv", "n", "e", "x", "y", "k"])
_entry = st.dictionaries(
    _member,
    st.sampled_from(
        ["RSA", "EC", "OKP", "oct", "RS256", "ES256", "P-256", "Ed25519", "sig", "AQAB", "AA", ""]
    )
    | _json,
)


@given(st.lists(_entry | _json, max_size=6))
def test_any_list_of_keys_is_parsed_or_refused_never_crashes(entries: list[object]) -> None:
    try:
        keys, _ = parse_jwks(json.dumps({"keys": entries}).encode())
    except JwksError:
        return
    assert keys


@pytest.mark.parametrize(
    ("claims", "path", "found"),
    [
        ({"roles": ["creator"]}, "roles", ["creator"]),
        ({"realm_access": {"roles": ["creator"]}}, "realm_access.roles", ["creator"]),
        (
            {"https://kv.example.com/roles": ["creator"]},
            "https://kv.example.com/roles",
            ["creator"],
        ),
        ({"https://kv.example.com": {"roles": ["x"]}}, "https://kv.example.com.roles", ["x"]),
        ({"realm_access": ["creator"]}, "realm_access.roles", None),
        ({}, "roles", None),
    ],
)
def test_the_roles_claim_is_a_dotted_path(
    claims: dict[str, object], path: str, found: object
) -> None:
    value = claim_at(claims, path)
    assert (value if isinstance(value, list) else None) == found


@pytest.mark.parametrize(
    ("env", "said"),
    [
        (
            {"KV_JWT_JWKS_URL": "http://idp.example.com/jwks"},
            "KV_JWT_JWKS_URL: must be an https:// URL",
        ),
        ({"KV_JWT_JWKS_URL": "not a url"}, "KV_JWT_JWKS_URL: must be an https:// URL"),
        (
            {"KV_JWT_JWKS_URL": "https://idp.example.com/jwks"},
            "KV_JWT_ISSUER and KV_JWT_AUDIENCE are required",
        ),
        (
            {"KV_JWT_DISCOVERY": "true", "KV_JWT_AUDIENCE": "reco"},
            "KV_JWT_ISSUER and KV_JWT_AUDIENCE are required",
        ),
        (
            {
                "KV_JWT_DISCOVERY": "true",
                "KV_JWT_ISSUER": "http://idp.example.com",
                "KV_JWT_AUDIENCE": "r",
            },
            "KV_JWT_ISSUER, with KV_JWT_DISCOVERY, must be an https:// URL",
        ),
        (
            {
                "KV_JWT_DISCOVERY": "yes please",
                "KV_JWT_ISSUER": "https://i",
                "KV_JWT_AUDIENCE": "r",
            },
            "KV_JWT_DISCOVERY: Input should be a valid boolean",
        ),
        (
            {
                "KV_JWT_DISCOVERY": "true",
                "KV_JWT_JWKS_URL": "https://i/jwks",
                "KV_JWT_ISSUER": "https://i",
                "KV_JWT_AUDIENCE": "r",
            },
            "KV_JWT_DISCOVERY finds the JWKS URL itself",
        ),
        (
            {
                "KV_JWT_JWKS_URL": "https://i/jwks",
                "KV_JWT_ISSUER": "https://i",
                "KV_JWT_AUDIENCE": "r",
                "KV_JWT_SECRET": "s" * 40,
            },
            "replace KV_JWT_SECRET: unset",
        ),
        (
            {
                "KV_JWT_JWKS_URL": "https://i/jwks",
                "KV_JWT_ISSUER": "https://i",
                "KV_JWT_AUDIENCE": "r",
                "KV_JWT_ALGORITHM": "HS256",
            },
            "replace KV_JWT_ALGORITHM: unset",
        ),
        (
            {
                "KV_JWT_JWKS_URL": "https://i/jwks",
                "KV_JWT_ISSUER": "https://i",
                "KV_JWT_AUDIENCE": "r",
                "KV_JWT_JWKS_MIN_REFRESH_S": "900",
            },
            "KV_JWT_JWKS_MIN_REFRESH_S must not exceed KV_JWT_JWKS_REFRESH_S",
        ),
        (
            {"KV_JWT_ROLES_CLAIM": "realm_access..roles"},
            "KV_JWT_ROLES_CLAIM: must be a claim name or a dotted path",
        ),
        ({"KV_JWT_ROLES_CLAIM": ""}, "KV_JWT_ROLES_CLAIM: must be a claim name"),
        ({"KV_JWT_SCOPE": "reco:ingest reco:read"}, "KV_JWT_SCOPE: must be one scope value"),
        (
            {"KV_JWT_JWKS_REFRESH_S": "0"},
            "KV_JWT_JWKS_REFRESH_S: Input should be greater than or equal to 1",
        ),
        (
            {"KV_JWT_JWKS_TIMEOUT_S": "30"},
            "KV_JWT_JWKS_TIMEOUT_S: Input should be less than or equal to 10",
        ),
        (
            {"KV_JWT_JWKS_MIN_REFRESH_S": "soon"},
            "KV_JWT_JWKS_MIN_REFRESH_S: Input should be a valid integer",
        ),
    ],
)
def test_bad_service_account_settings_name_their_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], said: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as refused:
        load_settings()
    assert said in refused.value.message
    assert "\n" not in refused.value.message


def test_dev_tokens_are_not_minted_for_a_service_that_takes_the_providers(tmp_path: Path) -> None:
    s = Settings(
        jwt_jwks_url="https://idp.example.com/jwks",
        jwt_issuer="https://idp.example.com",
        jwt_audience="reco",
        state_dir=tmp_path,
    )
    assert not s.uses_local_dev_key
    with pytest.raises(ConfigError, match="takes its tokens from the identity provider"):
        mint_token(s, roles=[CREATOR])


def test_dev_tokens_put_their_roles_where_the_roles_claim_says(tmp_path: Path) -> None:
    import jwt

    s = Settings(jwt_roles_claim="realm_access.roles", state_dir=tmp_path)
    claims = jwt.decode(mint_token(s, roles=[CREATOR]), options={"verify_signature": False})
    assert claims["realm_access"] == {"roles": [CREATOR]} and "roles" not in claims

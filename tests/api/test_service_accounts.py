"""Service accounts: access tokens from a real identity provider, whose keys rotate.

The provider is oidc-provider (npm) under Node on loopback (tests/idp/), with
client-credentials clients; the service runs in-process on the session's
keyspace, checking tokens against the provider's published key set. The bad
days of a provider are tests/integration/test_jwks.py, and the end of this file.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import jwt
import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from jwt.algorithms import RSAAlgorithm

from killrvideo_reco.api import create_app
from killrvideo_reco.config import Settings
from killrvideo_reco.domain.videos import Video
from killrvideo_reco.storage import CassandraStore

from ..conftest import DIM, KV, Service, free_port
from ..idp.broken import BrokenIdP
from ..idp.provider import AUDIENCE, OTHER_AUDIENCE, IdP

INGEST = "/api/v1/reco/ingest"


@pytest.fixture(scope="module")
def idp() -> Iterator[IdP]:
    with IdP(free_port()) as provider:
        yield provider


def idp_settings(settings: Settings, state: Path, idp: IdP, **changes: Any) -> Settings:
    fields: dict[str, Any] = {
        "keyspace": settings.keyspace,
        "state_dir": state,
        "jwt_jwks_url": idp.jwks_url,
        "jwt_issuer": idp.issuer,
        "jwt_audience": AUDIENCE,
        "jwt_roles_claim": "realm_access.roles",
        # Short, so that a rotation is picked up at once; the storm test sets its own.
        "jwt_jwks_min_refresh_s": 1,
        **changes,
    }
    return Settings(**fields)


@pytest.fixture(scope="module")
def service(
    settings: Settings, store: CassandraStore, idp: IdP, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    app = create_app(idp_settings(settings, tmp_path_factory.mktemp("sa"), idp))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def body_for(video: Video, rng: np.random.Generator) -> dict[str, object]:
    return {"videoId": str(video.videoid), "vector": rng.uniform(-1, 1, DIM).tolist()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_failed(response: Any, status: int, said: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"status", "message"} and body["status"] == "failed", body
    assert said in body["message"], body


def claims_of(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed(header: dict[str, Any], claims: dict[str, Any], sign: Callable[[bytes], bytes]) -> str:
    head = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    return f"{head}.{_b64(sign(head.encode()))}"


def test_a_token_from_the_provider_is_accepted(
    service: TestClient, idp: IdP, video: Video, rng: np.random.Generator
) -> None:
    token = idp.token()
    header = jwt.get_unverified_header(token)
    assert header["typ"] == "at+jwt" and header["kid"] in {k["kid"] for k in idp.jwks()["keys"]}
    assert claims_of(token)["aud"] == AUDIENCE
    accepted = service.post(INGEST, json=body_for(video, rng), headers=bearer(token))
    assert accepted.status_code == 202, accepted.text
    related = service.get(f"/api/v1/videos/id/{video.videoid}/related", headers=bearer(token))
    assert related.status_code == 200, related.text


def test_readyz_says_the_keys_are_loaded(service: TestClient, idp: IdP) -> None:
    ready = service.get("/readyz")
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["signingKeys"] == len(idp.jwks()["keys"]) and body["signingKeysAgeS"] >= 0
    assert "signingKeysProblem" not in body


def _not_published(idp: IdP) -> str:
    # The provider's own token, signed again by a key it never published.
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode(
        claims_of(idp.token()), stranger, algorithm="RS256", headers={"kid": "not-published"}
    )


def _hs256_with_the_public_key(idp: IdP, form: str) -> str:
    # The classic confusion: HMAC keyed with the provider's public key (PEM or JWK).
    published = idp.jwks()["keys"][0]
    public = RSAAlgorithm.from_jwk(published)
    assert isinstance(public, rsa.RSAPublicKey)
    key = (
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        if form == "pem"
        else json.dumps(published).encode()
    )
    header = {"alg": "HS256", "typ": "at+jwt", "kid": published["kid"]}
    return signed(
        header, claims_of(idp.token()), lambda m: hmac.new(key, m, hashlib.sha256).digest()
    )


def _alg_none(idp: IdP) -> str:
    kid = idp.jwks()["keys"][0]["kid"]
    return signed({"alg": "none", "kid": kid}, claims_of(idp.token()), lambda m: b"")


def _own_key_in_the_header(idp: IdP, where: str) -> str:
    # The token brings its key (jwk) or says where to get one (jku, x5u): never used.
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = {**json.loads(RSAAlgorithm.to_jwk(attacker.public_key())), "kid": "mine"}
    kid = idp.jwks()["keys"][0]["kid"] if where != "jwk" else "mine"
    extra = {"jwk": jwk} if where == "jwk" else {where: "http://127.0.0.1:9/evil.json"}
    return jwt.encode(
        claims_of(idp.token()), attacker, algorithm="RS256", headers={"kid": kid, **extra}
    )


REFUSALS: dict[str, tuple[Callable[[IdP], str], int, str]] = {
    "foreign issuer": (lambda p: p.token(issuer=p.foreign_issuer), 401, "not for this service"),
    "wrong audience": (lambda p: p.token(resource=OTHER_AUDIENCE), 401, "not for this service"),
    "missing role": (lambda p: p.token("viewer"), 403, "requires the 'creator' role"),
    "kid not published": (_not_published, 401, "'not-published' is not published by the issuer"),
    "HS256 keyed with the public key (PEM)": (
        lambda p: _hs256_with_the_public_key(p, "pem"),
        401,
        "must be signed with one of the issuer's keys",
    ),
    "HS256 keyed with the public key (JWK)": (
        lambda p: _hs256_with_the_public_key(p, "jwk"),
        401,
        "must be signed with one of the issuer's keys",
    ),
    "alg none": (_alg_none, 401, "not 'none'"),
    "own key in jwk header": (lambda p: _own_key_in_the_header(p, "jwk"), 401, "not published"),
    "key URL in jku header": (
        lambda p: _own_key_in_the_header(p, "jku"),
        401,
        "signature is invalid",
    ),
    "key URL in x5u header": (
        lambda p: _own_key_in_the_header(p, "x5u"),
        401,
        "signature is invalid",
    ),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refused_tokens_get_their_status(
    service: TestClient, idp: IdP, video: Video, rng: np.random.Generator, case: str
) -> None:
    make, status, said = REFUSALS[case]
    refused = service.post(INGEST, json=body_for(video, rng), headers=bearer(make(idp)))
    assert_failed(refused, status, said)
    assert refused.headers.get("Retry-After") is None


def test_an_expired_token_is_refused(
    service: TestClient, idp: IdP, video: Video, rng: np.random.Generator
) -> None:
    token = idp.token("shortlived")  # one second of validity
    deadline = time.monotonic() + 15
    while True:
        answer = service.post(INGEST, json=body_for(video, rng), headers=bearer(token))
        if answer.status_code != 202 or time.monotonic() > deadline:
            break
        time.sleep(0.1)  # polling for the expiry, under a deadline
    assert_failed(answer, 401, "the token has expired")
    assert claims_of(token)["exp"] <= time.time()


def test_a_scope_can_grant_the_creator_role(
    settings: Settings,
    store: CassandraStore,
    idp: IdP,
    tmp_path: Path,
    video: Video,
    rng: np.random.Generator,
) -> None:
    scoped = idp_settings(settings, tmp_path, idp, jwt_roles_claim="roles", jwt_scope="reco:ingest")
    with TestClient(create_app(scoped), raise_server_exceptions=False) as client:
        granted = client.post(
            INGEST,
            json=body_for(video, rng),
            headers=bearer(idp.token("scoped", scope="reco:ingest")),
        )
        assert granted.status_code == 202, granted.text
        missing = client.post(
            INGEST,
            json=body_for(video, rng),
            headers=bearer(idp.token("scoped", scope="reco:read")),
        )
        assert_failed(missing, 403, "requires the 'creator' role or the 'reco:ingest' scope")


def test_made_up_kids_do_not_reach_the_provider(
    settings: Settings,
    store: CassandraStore,
    idp: IdP,
    tmp_path: Path,
    video: Video,
    rng: np.random.Generator,
) -> None:
    patient = idp_settings(settings, tmp_path, idp, jwt_jwks_min_refresh_s=300)
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    claims = claims_of(idp.token())
    with TestClient(create_app(patient), raise_server_exceptions=False) as client:
        before = idp.jwks_requests()
        for _ in range(40):
            forged = jwt.encode(
                claims, stranger, algorithm="RS256", headers={"kid": uuid.uuid4().hex}
            )
            assert_failed(
                client.post(INGEST, json=body_for(video, rng), headers=bearer(forged)),
                401,
                "not published",
            )
        # The start-up fetch was less than 300 s ago: not one more.
        assert idp.jwks_requests() == before
        assert (
            client.post(INGEST, json=body_for(video, rng), headers=bearer(idp.token())).status_code
            == 202
        )


def poll_until_accepted(client: TestClient, token: str, body: dict[str, object]) -> None:
    # The first try may fall within a second of the last fetch (401, "not
    # published"); the next fetch is allowed a second later.
    deadline = time.monotonic() + 15
    while True:
        answer = client.post(INGEST, json=body, headers=bearer(token))
        if answer.status_code == 202:
            return
        assert answer.status_code == 401 and "not published" in answer.text, answer.text
        assert time.monotonic() < deadline, f"never accepted: {answer.text}"
        time.sleep(0.2)


def test_rotated_keys_are_picked_up_without_a_restart(
    settings: Settings,
    store: CassandraStore,
    tmp_path: Path,
    video: Video,
    rng: np.random.Generator,
) -> None:
    with IdP(free_port()) as rotating:
        app = create_app(idp_settings(settings, tmp_path, rotating))
        with TestClient(app, raise_server_exceptions=False) as client:
            body = body_for(video, rng)
            first = rotating.token()
            assert client.post(INGEST, json=body, headers=bearer(first)).status_code == 202
            # A new key, of another type, signs from now on; the old one stays published.
            new_kid = rotating.rotate(alg="ES256")
            second = rotating.token()
            header = jwt.get_unverified_header(second)
            assert (header["kid"], header["alg"]) == (new_kid, "ES256")
            poll_until_accepted(client, second, body)
            assert client.post(INGEST, json=body, headers=bearer(first)).status_code == 202
            # The old keys retire: what they signed is refused from the next fetch on.
            rotating.rotate(retire=True)
            third = rotating.token()
            poll_until_accepted(client, third, body)
            assert client.get("/readyz").json()["signingKeys"] == 1
            for retired in (first, second):
                assert_failed(
                    client.post(INGEST, json=body, headers=bearer(retired)), 401, "not published"
                )
            assert client.post(INGEST, json=body, headers=bearer(third)).status_code == 202


def test_discovery_finds_the_key_set_from_the_issuer(
    settings: Settings,
    store: CassandraStore,
    idp: IdP,
    tmp_path: Path,
    video: Video,
    rng: np.random.Generator,
) -> None:
    found = idp_settings(settings, tmp_path, idp, jwt_jwks_url=None, jwt_discovery=True)
    with TestClient(create_app(found), raise_server_exceptions=False) as client:
        assert client.get("/readyz").json()["signingKeys"] >= 1
        assert (
            client.post(INGEST, json=body_for(video, rng), headers=bearer(idp.token())).status_code
            == 202
        )
    # A discovery document that names another issuer is not followed.
    foreign = idp_settings(
        settings, tmp_path, idp, jwt_jwks_url=None, jwt_discovery=True, jwt_issuer=idp.issuer + "/"
    )
    with TestClient(create_app(foreign), raise_server_exceptions=False) as client:
        assert_failed(client.get("/readyz"), 503, "names issuer")


# A provider having a bad day, seen from the HTTP side.


def _minted(broken: BrokenIdP, idp_issuer: str, kid: str | None = None) -> str:
    claims = {
        "iss": idp_issuer,
        "aud": AUDIENCE,
        "exp": int(time.time()) + 600,
        "realm_access": {"roles": ["creator"]},
    }
    return jwt.encode(claims, broken.key, algorithm="RS256", headers={"kid": kid or broken.kid})


def test_a_provider_down_from_the_start_means_503_then_recovery_without_restart(
    settings: Settings,
    store: CassandraStore,
    tmp_path: Path,
    video: Video,
    rng: np.random.Generator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with BrokenIdP() as broken:
        broken.mode = "garbage"
        s = Settings(
            keyspace=settings.keyspace,
            state_dir=tmp_path,
            jwt_jwks_url=broken.jwks_url,
            jwt_issuer="https://idp.example.com",
            jwt_audience=AUDIENCE,
            jwt_roles_claim="realm_access.roles",
            jwt_jwks_min_refresh_s=1,
            jwt_jwks_timeout_s=0.5,
        )
        token = _minted(broken, "https://idp.example.com")
        with TestClient(create_app(s), raise_server_exceptions=False) as client:
            assert_failed(
                client.get("/readyz"), 503, "no signing keys from the identity provider yet"
            )
            unavailable = client.post(INGEST, json=body_for(video, rng), headers=bearer(token))
            assert_failed(unavailable, 503, "the key set is not JSON")
            assert int(unavailable.headers["Retry-After"]) >= 1
            # Related videos are anonymous: they still answer; with the token, 503 too.
            related = f"/api/v1/videos/id/{video.videoid}/related"
            assert client.get(related).status_code == 200
            assert_failed(client.get(related, headers=bearer(token)), 503, "could not be asked")
            said = [r.getMessage() for r in caplog.records if r.name == "killrvideo_reco.jwks"]
            assert any(
                "the key set is not JSON" in line and "tokens get 503" in line for line in said
            ), said
            broken.mode = "good"  # the background retries find it
            deadline = time.monotonic() + 15
            while client.get("/readyz").status_code != 200:
                assert time.monotonic() < deadline, "the keys never loaded"
                time.sleep(0.2)
            assert (
                client.post(INGEST, json=body_for(video, rng), headers=bearer(token)).status_code
                == 202
            )
            # Then the provider breaks again: the held key keeps working, /readyz stays 200.
            broken.mode = "error"
            deadline = time.monotonic() + 15
            while True:
                unknown = client.post(
                    INGEST,
                    json=body_for(video, rng),
                    headers=bearer(_minted(broken, "https://idp.example.com", "new")),
                )
                if unknown.status_code == 503 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert_failed(unknown, 503, "got HTTP 500")
            assert (
                client.post(INGEST, json=body_for(video, rng), headers=bearer(token)).status_code
                == 202
            )
            ready = client.get("/readyz")
            assert ready.status_code == 200 and "HTTP 500" in ready.json()["signingKeysProblem"]


def test_serve_takes_the_provider_from_the_environment(
    idp: IdP,
    settings: Settings,
    store: CassandraStore,
    tmp_path: Path,
    new_video: Callable[..., Video],
    rng: np.random.Generator,
) -> None:
    import subprocess

    env = {
        **os.environ,
        "KV_KEYSPACE": settings.keyspace,
        "KV_STATE_DIR": str(tmp_path),
        "KV_JWT_JWKS_URL": idp.jwks_url,
        "KV_JWT_ISSUER": idp.issuer,
        "KV_JWT_AUDIENCE": AUDIENCE,
        "KV_JWT_ROLES_CLAIM": "realm_access.roles",
    }
    video = new_video()
    with Service(env) as served:
        answer = httpx.post(
            f"{served.url}{INGEST}",
            json=body_for(video, rng),
            headers=bearer(idp.token()),
            timeout=10,
        )
        assert answer.status_code == 202, answer.text
        assert httpx.get(f"{served.url}/readyz", timeout=10).json()["signingKeys"] >= 1
        served.stop()
    assert "checking tokens of " in served.output and "signing keys from" in served.output
    minted = subprocess.run(
        [KV, "token", "--role", "creator"], env=env, capture_output=True, text=True, timeout=60
    )
    assert minted.returncode == 1 and "takes its tokens from the identity provider" in minted.stderr
    bad = subprocess.run(
        [KV, "serve"],
        env={**env, "KV_JWT_JWKS_URL": "http://idp.example.com/jwks"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2
    assert bad.stderr.startswith(
        "error: invalid configuration: KV_JWT_JWKS_URL: must be an https:// URL"
    ), bad.stderr

import base64
import json
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from killrvideo_reco.auth import CREATOR, TokenVerifier, mint_token
from killrvideo_reco.config import Settings
from killrvideo_reco.errors import ConfigError, Forbidden, Unauthenticated

SECRET = "s" * 40


def hs_settings(tmp_path: Path, **kw: object) -> Settings:
    return Settings(jwt_secret=SECRET, state_dir=tmp_path, **kw)  # type: ignore[arg-type]


def bearer(token: str) -> str:
    return f"Bearer {token}"


async def test_a_creator_token_is_authorized(tmp_path: Path) -> None:
    s = hs_settings(tmp_path)
    principal = await TokenVerifier(s).authorize(
        bearer(mint_token(s, roles=[CREATOR], subject="u1")), role=CREATOR
    )
    assert principal.subject == "u1" and CREATOR in principal.roles


async def test_a_token_without_the_role_is_forbidden(tmp_path: Path) -> None:
    s = hs_settings(tmp_path)
    with pytest.raises(Forbidden, match="requires the 'creator' role"):
        await TokenVerifier(s).authorize(bearer(mint_token(s, roles=["viewer"])), role=CREATOR)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "missing bearer token"),
        ("", "missing bearer token"),
        ("Basic abc", "must be 'Bearer <JWT>'"),
        ("Bearer", "must be 'Bearer <JWT>'"),
        ("Bearer not.a.jwt", "malformed"),
        ("Bearer abc", "malformed"),
    ],
)
async def test_missing_or_malformed_tokens_are_unauthenticated(
    tmp_path: Path, header: str | None, message: str
) -> None:
    with pytest.raises(Unauthenticated, match=message):
        await TokenVerifier(hs_settings(tmp_path)).authenticate(header)


async def test_expired_tokens_are_refused(tmp_path: Path) -> None:
    s = hs_settings(tmp_path)
    with pytest.raises(Unauthenticated, match="expired"):
        await TokenVerifier(s).authenticate(bearer(mint_token(s, roles=[CREATOR], ttl_s=-5)))


@pytest.mark.parametrize("leeway", [0, 30])
async def test_a_cached_token_stops_working_when_it_expires(tmp_path: Path, leeway: int) -> None:
    s = hs_settings(tmp_path, jwt_leeway_s=leeway)
    now = [time.time()]
    verifier = TokenVerifier(s, clock=lambda: now[0])
    token = mint_token(s, roles=[CREATOR], ttl_s=600)
    expires = jwt.decode(token, options={"verify_signature": False})["exp"]
    await verifier.authenticate(bearer(token))
    now[0] = expires + leeway - 1  # still good, from the cache
    assert CREATOR in (await verifier.authenticate(bearer(token))).roles
    now[0] = expires + leeway
    with pytest.raises(Unauthenticated, match="expired"):
        await verifier.authenticate(bearer(token))


def test_a_minted_token_lives_at_least_its_ttl(tmp_path: Path) -> None:
    before = time.time()
    token = mint_token(hs_settings(tmp_path), roles=[CREATOR], ttl_s=1)
    assert jwt.decode(token, options={"verify_signature": False})["exp"] >= before + 1


async def test_forged_tokens_are_refused(tmp_path: Path) -> None:
    forged = jwt.encode({"roles": [CREATOR], "exp": time.time() + 60}, "x" * 40, algorithm="HS256")
    with pytest.raises(Unauthenticated, match="signature is invalid"):
        await TokenVerifier(hs_settings(tmp_path)).authenticate(bearer(forged))


async def test_alg_none_is_refused(tmp_path: Path) -> None:
    def part(obj: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    unsigned = f"{part({'alg': 'none', 'typ': 'JWT'})}.{part({'roles': [CREATOR], 'exp': time.time() + 60})}."
    with pytest.raises(Unauthenticated, match="must be signed with HS256"):
        await TokenVerifier(hs_settings(tmp_path)).authenticate(bearer(unsigned))


async def test_exp_is_required(tmp_path: Path) -> None:
    token = jwt.encode({"roles": [CREATOR]}, SECRET, algorithm="HS256")
    with pytest.raises(Unauthenticated, match="lacks the 'exp' claim"):
        await TokenVerifier(hs_settings(tmp_path)).authenticate(bearer(token))


async def test_roles_must_be_a_list(tmp_path: Path) -> None:
    token = jwt.encode({"roles": CREATOR, "exp": time.time() + 60}, SECRET, algorithm="HS256")
    with pytest.raises(Unauthenticated, match="list of strings"):
        await TokenVerifier(hs_settings(tmp_path)).authenticate(bearer(token))


async def test_issuer_and_audience_are_checked_when_configured(tmp_path: Path) -> None:
    s = hs_settings(tmp_path, jwt_issuer="killrvideo", jwt_audience="reco")
    verifier = TokenVerifier(s)
    await verifier.authorize(bearer(mint_token(s, roles=[CREATOR])), role=CREATOR)
    other = jwt.encode(
        {"roles": [CREATOR], "exp": time.time() + 60, "iss": "evil", "aud": "reco"}, SECRET
    )
    with pytest.raises(Unauthenticated, match="not for this service"):
        await verifier.authenticate(bearer(other))
    missing = jwt.encode({"roles": [CREATOR], "exp": time.time() + 60}, SECRET)
    with pytest.raises(Unauthenticated, match="lacks the 'iss' claim"):
        await verifier.authenticate(bearer(missing))


@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
async def test_public_key_algorithms(tmp_path: Path, algorithm: str) -> None:
    key = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if algorithm == "RS256"
        else ec.generate_private_key(ec.SECP256R1())
    )
    private = tmp_path / "private.pem"
    public = tmp_path / "public.pem"
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
    s = Settings(
        jwt_algorithm=algorithm,
        jwt_public_key_file=public,
        jwt_private_key_file=private,
        state_dir=tmp_path,
    )  # type: ignore[arg-type]
    verifier = TokenVerifier(s)
    await verifier.authorize(bearer(mint_token(s, roles=[CREATOR])), role=CREATOR)
    # An HS256 token whose HMAC key is the configured public key's PEM bytes:
    # the classic confusion attack (PyJWT will not sign one, so sign it here).
    confused = _hs256_with_raw_key(
        public.read_bytes(), {"roles": [CREATOR], "exp": int(time.time()) + 60}
    )
    with pytest.raises(Unauthenticated, match=f"must be signed with {algorithm}"):
        await verifier.authenticate(bearer(confused))


def _hs256_with_raw_key(key: bytes, claims: dict[str, object]) -> str:
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    signing = f"{header}.{b64(json.dumps(claims).encode())}"
    return f"{signing}.{b64(hmac.new(key, signing.encode(), hashlib.sha256).digest())}"


async def test_the_local_dev_key_is_generated_once(tmp_path: Path) -> None:
    s = Settings(state_dir=tmp_path)
    assert s.uses_local_dev_key
    token = mint_token(s, roles=[CREATOR])
    verifier = TokenVerifier(Settings(state_dir=tmp_path))
    assert (await verifier.authenticate(bearer(token))).roles == {CREATOR}
    assert (tmp_path / "dev-jwt-secret").stat().st_mode & 0o777 == 0o600


def test_unsafe_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 32 characters"):
        Settings(jwt_secret="short")
    with pytest.raises(ValueError, match="needs KV_JWT_PUBLIC_KEY_FILE"):
        Settings(jwt_algorithm="RS256")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="KV_JWT_PRIVATE_KEY_FILE"):
        mint_token(Settings(jwt_algorithm="ES256", jwt_public_key_file=Path("/x")), roles=[CREATOR])  # type: ignore[arg-type]

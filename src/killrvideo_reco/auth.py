"""Bearer-token checks with PyJWT: algorithms pinned, ``exp`` required.

Two sources of keys: a local one (the HS256 secret, or one PEM public key),
or the identity provider's published key set (``jwks.py``), where a token's
``kid`` picks the key and the key's type fixes the algorithm.

Pipelines send the same service-account token on every request, so a verified
token is remembered until it expires: the signature check (tens of µs) runs
once per token, not once per vector.
"""

from __future__ import annotations

import math
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from .config import JwtAlgorithm, Settings
from .errors import ConfigError, Forbidden, Unauthenticated
from .jwks import ASYMMETRIC, Jwks, KeyStatus

CREATOR = "creator"
_CACHE_SIZE = 1024
_NUMERIC_DATES = ("exp", "nbf", "iat")
_MISSING = object()


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str | None
    roles: frozenset[str]
    expires_at: float


class TokenVerifier:
    """Checks bearer tokens; with ``keys`` (required when Settings name a JWKS), against them."""

    def __init__(
        self,
        settings: Settings,
        *,
        keys: Jwks | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if settings.uses_jwks != (keys is not None):
            raise ConfigError("a JWKS setting needs the key set, and only it")
        self._keys = keys
        self._algorithm = settings.jwt_algorithm.value
        self._key: Any = None if keys is not None else _verification_key(settings)
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._leeway = settings.jwt_leeway_s
        self._roles_claim = settings.jwt_roles_claim
        self._scope = settings.jwt_scope
        self._cache: OrderedDict[str, Principal] = OrderedDict()
        self._generation = 0
        self._clock = clock  # for remembered tokens; tests pass their own

    def key_status(self) -> KeyStatus | None:
        """The identity provider's keys as held now; None with a local key."""
        return None if self._keys is None else self._keys.status()

    async def authenticate(self, authorization: str | None) -> Principal:
        """The principal of an ``Authorization: Bearer …`` header, or Unauthenticated.

        It waits for the identity provider only when the token names a key not
        held yet, and then no longer than KV_JWT_JWKS_TIMEOUT_S.
        """
        if not authorization:
            raise Unauthenticated("missing bearer token: send 'Authorization: Bearer <JWT>'")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated("the Authorization header must be 'Bearer <JWT>'")
        if self._keys is not None and self._keys.generation != self._generation:
            # A key left the provider's set: what it signed is checked afresh.
            self._cache.clear()
            self._generation = self._keys.generation
        cached = self._cache.get(token)
        if cached is not None:
            if cached.expires_at + self._leeway > self._clock():
                return cached
            # Its signature was good; only its time ran out.
            del self._cache[token]
            raise Unauthenticated("the token has expired")
        if self._keys is None:
            key, algorithms = self._key, [self._algorithm]
        else:
            key, algorithms = await self._published_key(token)
        principal = self._verify(token, key, algorithms)
        self._cache[token] = principal
        if len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
        return principal

    async def authorize(self, authorization: str | None, *, role: str) -> Principal:
        principal = await self.authenticate(authorization)
        if role not in principal.roles:
            scope = f" or the '{self._scope}' scope" if self._scope and role == CREATOR else ""
            raise Forbidden(f"this endpoint requires the '{role}' role{scope}")
        return principal

    async def _published_key(self, token: str) -> tuple[Any, list[str]]:
        assert self._keys is not None
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated(f"the token is malformed: {exc}") from None
        alg = header.get("alg")
        # The header's jku, x5u and jwk are never looked at: a token does not
        # get to say where its key comes from, only which published one it is.
        if alg not in ASYMMETRIC:
            raise Unauthenticated(
                f"the token must be signed with one of the issuer's keys "
                f"({', '.join(sorted(ASYMMETRIC))}), not {str(alg)[:16]!r}"
            )
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise Unauthenticated("the token does not name its key: it has no 'kid' header")
        signing = await self._keys.key_for(kid)
        if alg not in signing.algorithms:
            raise Unauthenticated(
                f"the token is signed with {alg}, which its key {kid[:64]!r} is not for "
                f"({', '.join(sorted(signing.algorithms))})"
            )
        return signing.key, [str(alg)]

    def _verify(self, token: str, key: Any, algorithms: list[str]) -> Principal:
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
                options={
                    "require": ["exp"]
                    + ["iss"] * bool(self._issuer)
                    + ["aud"] * bool(self._audience),
                    "verify_aud": self._audience is not None,
                },
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the token has expired") from None
        except jwt.InvalidAlgorithmError:
            raise Unauthenticated(f"the token must be signed with {algorithms[0]}") from None
        except jwt.InvalidSignatureError:
            raise Unauthenticated("the token signature is invalid") from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthenticated(f"the token lacks the '{exc.claim}' claim") from None
        except (jwt.InvalidIssuerError, jwt.InvalidAudienceError) as exc:
            raise Unauthenticated(f"the token is not for this service: {exc}") from None
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated(f"the token is malformed: {exc}") from None
        return self._principal(claims)

    def _principal(self, claims: Mapping[str, Any]) -> Principal:
        for claim in _NUMERIC_DATES:
            value = claims.get(claim)
            # PyJWT takes int("9999999999"); RFC 7519 says a NumericDate is a JSON number.
            if claim in claims and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise Unauthenticated(
                    f"the token's '{claim}' claim must be a JSON number (a NumericDate)"
                )
        roles = claim_at(claims, self._roles_claim)
        if roles is _MISSING:
            roles = []
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise Unauthenticated(
                f"the token's '{self._roles_claim}' claim must be a list of strings"
            )
        granted = frozenset(roles)
        if self._scope is not None and self._scope in _scopes(claims):
            granted |= {CREATOR}
        sub = claims.get("sub")
        return Principal(
            subject=str(sub) if sub is not None else None,
            roles=granted,
            expires_at=float(claims["exp"]),
        )


def claim_at(claims: Mapping[str, Any], path: str) -> Any:
    """The claim at a dotted path (``realm_access.roles``), or ``_MISSING``.

    A name that has dots of its own (Auth0's ``https://kv.example.com/roles``)
    is matched whole before the path is split at any of its dots.
    """
    if path in claims:
        return claims[path]
    for at, char in enumerate(path):
        if char != ".":
            continue
        inner = claims.get(path[:at])
        if isinstance(inner, Mapping):
            found = claim_at(inner, path[at + 1 :])
            if found is not _MISSING:
                return found
    return _MISSING


def _scopes(claims: Mapping[str, Any]) -> set[str]:
    # OAuth's scope is one space-separated string; Entra's scp is one too,
    # Okta's scp a list.
    found: set[str] = set()
    for name in ("scope", "scp"):
        value = claims.get(name)
        if isinstance(value, str):
            found.update(value.split())
        elif isinstance(value, list):
            found.update(v for v in value if isinstance(v, str))
    return found


def _nested(path: str, value: object) -> dict[str, Any]:
    head, _, rest = path.partition(".")
    return {head: _nested(rest, value) if rest else value}


def _verification_key(settings: Settings) -> Any:
    if settings.jwt_algorithm is JwtAlgorithm.HS256:
        return settings.hmac_secret()
    assert settings.jwt_public_key_file is not None  # enforced by Settings
    try:
        return settings.jwt_public_key_file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read KV_JWT_PUBLIC_KEY_FILE: {exc}") from None


def mint_token(
    settings: Settings, *, roles: list[str], subject: str | None = None, ttl_s: int = 3600
) -> str:
    """A signed token for local use and tests; a negative ``ttl_s`` mints an expired one."""
    if settings.uses_jwks:
        raise ConfigError(
            "this service takes its tokens from the identity provider (KV_JWT_JWKS_URL or "
            "KV_JWT_DISCOVERY): ask it for one; `kv-reco token` mints development tokens "
            "only without those settings"
        )
    now = time.time()
    claims: dict[str, Any] = {
        "sub": subject or str(uuid.uuid4()),
        **_nested(settings.jwt_roles_claim, roles),
        "iat": int(now),
        # Rounded up: a token is good for at least ttl_s seconds, never less.
        "exp": math.ceil(now + ttl_s),
    }
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    if settings.jwt_algorithm is JwtAlgorithm.HS256:
        key: Any = settings.hmac_secret()
    elif settings.jwt_private_key_file is not None:
        key = settings.jwt_private_key_file.read_bytes()
    else:
        raise ConfigError(f"signing {settings.jwt_algorithm} tokens needs KV_JWT_PRIVATE_KEY_FILE")
    return jwt.encode(claims, key, algorithm=settings.jwt_algorithm.value)

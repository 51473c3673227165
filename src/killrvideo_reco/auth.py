"""Bearer-token checks with PyJWT: algorithms pinned, ``exp`` required.

Pipelines send the same service-account token on every request, so a verified
token is remembered until it expires: the signature check (tens of µs) runs
once per token, not once per vector.
"""

from __future__ import annotations

import math
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt

from .config import JwtAlgorithm, Settings
from .errors import ConfigError, Forbidden, Unauthenticated

CREATOR = "creator"
_CACHE_SIZE = 1024
_NUMERIC_DATES = ("exp", "nbf", "iat")


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str | None
    roles: frozenset[str]
    expires_at: float


class TokenVerifier:
    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time) -> None:
        self._algorithm = settings.jwt_algorithm.value
        self._key: Any = _verification_key(settings)
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._leeway = settings.jwt_leeway_s
        self._cache: OrderedDict[str, Principal] = OrderedDict()
        self._clock = clock  # for remembered tokens; tests pass their own

    def authenticate(self, authorization: str | None) -> Principal:
        """The principal of an ``Authorization: Bearer …`` header, or Unauthenticated."""
        if not authorization:
            raise Unauthenticated("missing bearer token: send 'Authorization: Bearer <JWT>'")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated("the Authorization header must be 'Bearer <JWT>'")
        cached = self._cache.get(token)
        if cached is not None:
            if cached.expires_at + self._leeway > self._clock():
                return cached
            # Its signature was good; only its time ran out.
            del self._cache[token]
            raise Unauthenticated("the token has expired")
        principal = self._verify(token)
        self._cache[token] = principal
        if len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
        return principal

    def authorize(self, authorization: str | None, *, role: str) -> Principal:
        principal = self.authenticate(authorization)
        if role not in principal.roles:
            raise Forbidden(f"this endpoint requires the '{role}' role")
        return principal

    def _verify(self, token: str) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[self._algorithm],
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
            raise Unauthenticated(f"the token must be signed with {self._algorithm}") from None
        except jwt.InvalidSignatureError:
            raise Unauthenticated("the token signature is invalid") from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthenticated(f"the token lacks the '{exc.claim}' claim") from None
        except (jwt.InvalidIssuerError, jwt.InvalidAudienceError) as exc:
            raise Unauthenticated(f"the token is not for this service: {exc}") from None
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated(f"the token is malformed: {exc}") from None
        for claim in _NUMERIC_DATES:
            value = claims.get(claim)
            # PyJWT takes int("9999999999"); RFC 7519 says a NumericDate is a JSON number.
            if claim in claims and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise Unauthenticated(
                    f"the token's '{claim}' claim must be a JSON number (a NumericDate)"
                )
        roles = claims.get("roles", [])
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise Unauthenticated("the token's 'roles' claim must be a list of strings")
        sub = claims.get("sub")
        return Principal(
            subject=str(sub) if sub is not None else None,
            roles=frozenset(roles),
            expires_at=float(claims["exp"]),
        )


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
    now = time.time()
    claims: dict[str, Any] = {
        "sub": subject or str(uuid.uuid4()),
        "roles": roles,
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

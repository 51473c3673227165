"""The identity provider's signing keys: fetched, cached by ``kid``, kept fresh.

The policy (docs/service-accounts.md, "Keys and their refresh"):

- the key set is fetched at start-up, then every ``KV_JWT_JWKS_REFRESH_S`` in
  the background; a request never waits for a background fetch unless its
  token names a key we do not hold;
- a token naming an unknown ``kid`` fetches the set at once, but at most once
  per ``KV_JWT_JWKS_MIN_REFRESH_S`` (any fetch counts, and concurrent ones are
  one fetch): made-up kids cost the provider nothing more;
- a failed fetch keeps every key already held; retries back off 1, 2, 4 … s,
  up to ``KV_JWT_JWKS_MIN_REFRESH_S``;
- one fetch is bounded: ``KV_JWT_JWKS_TIMEOUT_S`` from connecting to the last
  byte, 256 KiB after decompression, no redirects followed;
- only asymmetric keys are taken (RSA of 2048 bits or more, EC P-256/384/521,
  Ed25519/Ed448), each for the algorithms of its type; a symmetric (``oct``)
  key, an encryption key, a kid listed twice with different keys, or a key
  that does not parse is left out, and the log says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Self

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from .config import Settings, check_key_url
from .errors import KeysUnavailable, RecoError, Unauthenticated

log = logging.getLogger(__name__)

MAX_DOCUMENT_BYTES = 256 * 1024
MAX_KEYS = 100
_MIN_RSA_BITS = 2048
_RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
_EC_ALGORITHMS = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
_OKP_CURVES = frozenset({"Ed25519", "Ed448"})
# What a token checked against a published key may be signed with: never HS*
# (a public key is no secret) and never none.
ASYMMETRIC = _RSA_ALGORITHMS | frozenset(_EC_ALGORITHMS.values()) | {"EdDSA"}
# The public members of each key type: two entries with one kid are the same
# key when these agree.
_PUBLIC_MEMBERS = {"RSA": ("n", "e"), "EC": ("crv", "x", "y"), "OKP": ("crv", "x")}
_ACCEPT = "application/jwk-set+json, application/json"


class JwksError(Exception):
    """What the provider did wrong, in words for the log line."""


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    key: Any  # a cryptography public key
    algorithms: frozenset[str]


@dataclass(frozen=True, slots=True)
class KeyStatus:
    loaded: int
    age_s: float | None  # since the last successful fetch; None before the first
    problem: str | None  # why the last fetch failed; None when it worked


def parse_jwks(document: bytes) -> tuple[dict[str, SigningKey], list[str]]:
    """The usable signing keys of a JWKS document, by kid, and why any others were left out.

    JwksError when the document is not a key set or holds no usable key.
    """
    try:
        parsed = json.loads(document)
    except (ValueError, RecursionError) as exc:
        raise JwksError(f"the key set is not JSON ({_cut(str(exc))})") from None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("keys"), list):
        raise JwksError("the document is not a key set: no 'keys' list")
    entries: list[Any] = parsed["keys"]
    if len(entries) > MAX_KEYS:
        raise JwksError(f"the key set lists {len(entries)} keys, over the limit of {MAX_KEYS}")
    keys: dict[str, SigningKey] = {}
    seen: dict[str, tuple[object, ...]] = {}
    conflicting: set[str] = set()
    problems: list[str] = []
    for index, entry in enumerate(entries):
        try:
            key, members = _signing_key(entry)
        except JwksError as exc:
            problems.append(f"key {index}: {exc}")
            continue
        if key.kid in seen:
            if seen[key.kid] != members:
                conflicting.add(key.kid)
            continue
        seen[key.kid] = members
        keys[key.kid] = key
    for kid in sorted(conflicting):
        # Which one signs? Neither is trusted.
        del keys[kid]
        problems.append(f"kid {kid!r} is listed twice with different keys: both left out")
    if not keys:
        detail = "; ".join(problems) if problems else "the list is empty"
        raise JwksError(f"no usable signing key ({_cut(detail, 300)})")
    return keys, problems


def _signing_key(entry: object) -> tuple[SigningKey, tuple[object, ...]]:
    if not isinstance(entry, dict):
        raise JwksError("not a JSON object")
    kid, kty, alg = entry.get("kid"), entry.get("kty"), entry.get("alg")
    if not isinstance(kid, str) or not kid:
        raise JwksError("no 'kid'")
    where = f"kid {_cut(kid)!r}"
    if entry.get("use", "sig") != "sig":
        raise JwksError(f"{where} is not a signing key (use {entry.get('use')!r})")
    if kty == "oct" or (isinstance(alg, str) and alg.upper().startswith("HS")):
        raise JwksError(f"{where} is a symmetric key: never taken from a key set")
    if not isinstance(kty, str) or kty not in _PUBLIC_MEMBERS:
        raise JwksError(f"{where} has key type {_cut(repr(kty))}: not RSA, EC or OKP")
    members = tuple(entry.get(name) for name in _PUBLIC_MEMBERS[kty])
    if not all(isinstance(m, str) and m for m in members):
        names = "/".join(_PUBLIC_MEMBERS[kty])
        raise JwksError(f"{where} lacks its {names} members, or they are not strings")
    allowed = _algorithms(kty, entry.get("crv"), alg, where)
    try:
        # PyJWT reads the members; the algorithm only picks its parser.
        public = jwt.PyJWK(entry, algorithm=min(allowed)).key
    except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError) as exc:
        raise JwksError(f"{where} does not parse ({_cut(str(exc))})") from None
    if isinstance(public, rsa.RSAPublicKey) and public.key_size < _MIN_RSA_BITS:
        raise JwksError(f"{where} is an RSA key of {public.key_size} bits: too weak")
    return SigningKey(kid=kid, key=public, algorithms=allowed), members


def _algorithms(kty: str, crv: object, alg: object, where: str) -> frozenset[str]:
    if kty == "RSA":
        family = _RSA_ALGORITHMS
    elif kty == "EC":
        if not isinstance(crv, str) or crv not in _EC_ALGORITHMS:
            raise JwksError(f"{where} is on curve {_cut(repr(crv))}: not P-256, P-384 or P-521")
        family = frozenset({_EC_ALGORITHMS[crv]})
    else:
        if not isinstance(crv, str) or crv not in _OKP_CURVES:
            raise JwksError(f"{where} is on curve {_cut(repr(crv))}: not Ed25519 or Ed448")
        family = frozenset({"EdDSA"})
    if alg is None:  # Entra ID publishes its keys without alg
        return family
    if not isinstance(alg, str) or alg not in family:
        raise JwksError(f"{where} declares alg {_cut(repr(alg))}, which a {kty} key cannot use")
    return frozenset({alg})


def _cut(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


class Jwks:
    """The signing keys of one issuer; ``open`` fetches them, ``aclose`` stops refreshing.

    ``generation`` grows whenever a kid leaves the set, so that whoever
    remembers verified tokens can forget those a retired key signed.
    """

    def __init__(
        self,
        *,
        issuer: str,
        jwks_url: str | None,
        refresh_s: float,
        min_refresh_s: float,
        timeout_s: float,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._issuer = issuer
        # None until discovery finds it in the issuer's configuration document.
        self._url = jwks_url
        self._discovery_url = f"{issuer.rstrip('/')}/.well-known/openid-configuration"
        self._refresh_s, self._min_refresh_s = refresh_s, min_refresh_s
        self._timeout_s = timeout_s
        self._transport = transport
        self._clock = clock
        self._keys: dict[str, SigningKey] = {}
        self._loaded_at: float | None = None
        self._last_attempt = -math.inf
        self._failures = 0
        self._problem: str | None = "not fetched yet"
        self._ignored: list[str] = []
        self._fetch: asyncio.Task[None] | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None
        self.generation = 0

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> Self:
        assert settings.jwt_issuer is not None  # enforced by Settings
        return cls(
            issuer=settings.jwt_issuer,
            jwks_url=settings.jwt_jwks_url,
            refresh_s=settings.jwt_jwks_refresh_s,
            min_refresh_s=settings.jwt_jwks_min_refresh_s,
            timeout_s=settings.jwt_jwks_timeout_s,
            **kwargs,
        )

    @property
    def source(self) -> str:
        return self._url or f"discovery at {self._discovery_url}"

    async def open(self) -> None:
        """Fetch the keys once (within the fetch deadline), then keep them fresh in the background.

        A failed first fetch does not stop the service: tokens get 503 until
        a later fetch works, and ``status`` says why.
        """
        self._client = httpx.AsyncClient(
            timeout=self._timeout_s,
            follow_redirects=False,
            headers={"User-Agent": "killrvideo-reco", "Accept": _ACCEPT},
            transport=self._transport,
        )
        await self.refresh()
        self._keeper = asyncio.create_task(self._keep_fresh(), name="jwks refresh")

    async def aclose(self) -> None:
        for task in (self._keeper, self._fetch):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._client is not None:
            await self._client.aclose()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def status(self) -> KeyStatus:
        age = None if self._loaded_at is None else self._clock() - self._loaded_at
        return KeyStatus(loaded=len(self._keys), age_s=age, problem=self._problem)

    async def key_for(self, kid: str) -> SigningKey:
        """The key named ``kid``, fetching the set again if allowed; else why not.

        Unauthenticated (401) when the provider's current set, fetched at most
        a refresh interval ago, does not list it; KeysUnavailable (503) when the
        provider could not be asked.
        """
        key = self._keys.get(kid)
        if key is not None:
            return key
        if self._fetch is not None or self._clock() >= self._last_attempt + self._min_refresh_s:
            await self.refresh()
            key = self._keys.get(kid)
            if key is not None:
                return key
        raise self._missing(kid)

    def _missing(self, kid: str) -> RecoError:
        if self._problem is None:
            return Unauthenticated(
                f"the token's key {_cut(kid, 64)!r} is not published by the issuer"
            )
        held = f"{len(self._keys)} keys held" if self._keys else "no keys held yet"
        return KeysUnavailable(
            f"cannot check the token: its key {_cut(kid, 64)!r} is not among the "
            f"identity provider's keys ({held}), and the provider could not be asked: "
            f"{self._problem}",
            retry_after_s=max(1, math.ceil(self._next_attempt() - self._clock())),
        )

    async def refresh(self) -> None:
        """Fetch the key set now, or join the fetch in flight; never longer than its deadline."""
        fetch = self._fetch
        if fetch is None:
            fetch = self._fetch = asyncio.create_task(self._fetch_once(), name="jwks fetch")
        # The fetch bounds itself; the wait is bounded too, and a request that
        # gives up does not cancel a fetch other requests share.
        await asyncio.wait({fetch}, timeout=self._timeout_s + 1)

    def _next_attempt(self) -> float:
        if self._problem is None:
            return self._last_attempt + self._refresh_s
        backoff = min(2.0 ** max(self._failures - 1, 0), self._min_refresh_s)
        return self._last_attempt + backoff

    async def _keep_fresh(self) -> None:
        while True:
            wait = self._next_attempt() - self._clock()
            if wait > 0:
                # Then look again: a token's unknown kid may have fetched meanwhile.
                await asyncio.sleep(wait)
                continue
            await self.refresh()

    async def _fetch_once(self) -> None:
        self._last_attempt = self._clock()
        try:
            try:
                async with asyncio.timeout(self._timeout_s):
                    url = self._url or await self._discover()
                    keys, ignored = parse_jwks(await self._get(url, what="key set"))
            except (JwksError, httpx.HTTPError, TimeoutError) as exc:
                self._failed(_describe(exc, self._timeout_s))
                return
            self._install(keys, ignored)
        finally:
            self._fetch = None

    def _failed(self, problem: str) -> None:
        self._failures += 1
        self._problem = problem
        kept = (
            f"keeping the {len(self._keys)} keys already held"
            if self._keys
            else "no keys held yet: tokens get 503"
        )
        after = max(0.0, self._next_attempt() - self._clock())
        log.warning(
            "the identity provider's keys could not be fetched from %s: %s; %s; next try in %.0f s",
            self.source,
            problem,
            kept,
            after,
        )

    def _install(self, keys: dict[str, SigningKey], ignored: list[str]) -> None:
        added = sorted(keys.keys() - self._keys.keys())
        removed = sorted(self._keys.keys() - keys.keys())
        if removed:
            self.generation += 1
        recovered = self._problem is not None
        self._keys, self._loaded_at = keys, self._clock()
        self._problem, self._failures = None, 0
        if added or removed or recovered:
            log.info(
                "signing keys of %s from %s: %s (added %s, removed %s)",
                self._issuer,
                self._url,
                ", ".join(sorted(keys)),
                ", ".join(added) or "none",
                ", ".join(removed) or "none",
            )
        if ignored and ignored != self._ignored:
            log.warning("the key set at %s has keys left out: %s", self._url, "; ".join(ignored))
        self._ignored = ignored

    async def _discover(self) -> str:
        document = _json_object(await self._get(self._discovery_url, what="discovery document"))
        if document.get("issuer") != self._issuer:
            raise JwksError(
                f"the discovery document names issuer {_cut(str(document.get('issuer')))!r}, "
                f"not {self._issuer!r}"
            )
        url = document.get("jwks_uri")
        if not isinstance(url, str):
            raise JwksError("the discovery document has no jwks_uri")
        try:
            check_key_url(url)
        except ValueError as exc:
            raise JwksError(f"the discovery document's jwks_uri {_cut(url)!r} {exc}") from None
        self._url = url  # found once: it outlives key rotations
        return url

    async def _get(self, url: str, *, what: str) -> bytes:
        assert self._client is not None, "open() first"
        async with self._client.stream("GET", url) as response:
            if response.status_code != 200:
                moved = " (redirects are not followed)" if response.is_redirect else ""
                raise JwksError(f"the {what} request got HTTP {response.status_code}{moved}")
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > MAX_DOCUMENT_BYTES:
                raise JwksError(
                    f"the {what} is {declared} bytes, over the limit of {MAX_DOCUMENT_BYTES}"
                )
            body = bytearray()
            # Counted after decompression: a small gzip bomb is refused as early.
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_DOCUMENT_BYTES:
                    raise JwksError(f"the {what} is over the limit of {MAX_DOCUMENT_BYTES} bytes")
        return bytes(body)


def _json_object(document: bytes) -> Mapping[str, Any]:
    try:
        parsed = json.loads(document)
    except (ValueError, RecursionError) as exc:
        raise JwksError(f"the discovery document is not JSON ({_cut(str(exc))})") from None
    if not isinstance(parsed, dict):
        raise JwksError("the discovery document is not a JSON object")
    return parsed


def _describe(exc: Exception, timeout_s: float) -> str:
    if isinstance(exc, JwksError):
        return str(exc)
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return f"no complete answer within {timeout_s:g} s"
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect ({_cut(str(exc))})"
    return f"{type(exc).__name__} ({_cut(str(exc))})"

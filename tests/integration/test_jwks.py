"""The refresh policy of the identity provider's key set, over real HTTP on loopback.

The provider is a tiny server that misbehaves on request (tests/idp/broken.py);
the policy's clock is the test's own, so intervals pass without waiting.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from killrvideo_reco.errors import KeysUnavailable, Unauthenticated
from killrvideo_reco.jwks import Jwks

from ..idp.broken import BrokenIdP


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def broken() -> Iterator[BrokenIdP]:
    with BrokenIdP() as idp:
        yield idp


def keyset(idp: BrokenIdP, clock: Clock, *, timeout_s: float = 1.0) -> Jwks:
    return Jwks(
        issuer="https://idp.example.com",
        jwks_url=idp.jwks_url,
        refresh_s=600,
        min_refresh_s=60,
        timeout_s=timeout_s,
        clock=clock,
    )


async def test_unknown_kids_fetch_at_most_once_per_interval_however_many_at_once(
    broken: BrokenIdP,
) -> None:
    clock = Clock()
    async with keyset(broken, clock) as keys:
        assert broken.hits == 1 and keys.status().loaded == 1

        async def made_up() -> BaseException | None:
            try:
                await keys.key_for(uuid.uuid4().hex)
            except Unauthenticated as exc:
                return exc
            return None

        refusals = await asyncio.gather(*(made_up() for _ in range(50)))
        assert broken.hits == 1, "within the interval: no fetch at all"
        assert all(isinstance(r, Unauthenticated) and "not published" in str(r) for r in refusals)
        clock.now += 60
        await asyncio.gather(*(made_up() for _ in range(50)))
        assert broken.hits == 2, "the interval over: the 50 shared one fetch"
        await asyncio.gather(*(made_up() for _ in range(50)))
        assert broken.hits == 2
        assert (await keys.key_for(broken.kid)).kid == broken.kid


BAD_DAYS = {
    "error": "got HTTP 500",
    "garbage": "the key set is not JSON",
    "not-a-set": "no 'keys' list",
    "huge": "over the limit of 262144",
    "endless": "over the limit of 262144",
    "gzip-bomb": "over the limit of 262144",
    "malformed": "no usable signing key",
    "redirect": "HTTP 302 (redirects are not followed)",
    "slow": "no complete answer within 0.5 s",
    "drip": "no complete answer within 0.5 s",
    "hangup": "RemoteProtocolError (Server disconnected without sending a response.)",
}


@pytest.mark.parametrize("mode", sorted(BAD_DAYS))
async def test_a_bad_day_keeps_the_keys_held_and_says_what_happened(
    broken: BrokenIdP, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    async with keyset(broken, clock, timeout_s=0.5) as keys:
        broken.mode = mode
        clock.now += 60
        # The unknown kid fetches again (the interval is over), and that fails:
        # the provider could not be asked, so it is 503, not "not published".
        with pytest.raises(KeysUnavailable) as unavailable:
            await asyncio.wait_for(keys.key_for("rotated-in"), timeout=10)
        assert BAD_DAYS[mode] in unavailable.value.message
        assert unavailable.value.retry_after_s >= 1
        assert (await keys.key_for(broken.kid)).kid == broken.kid, "the held key still works"
        status = keys.status()
        assert (
            status.loaded == 1 and status.problem is not None and BAD_DAYS[mode] in status.problem
        )
        said = [r.getMessage() for r in caplog.records if r.name == "killrvideo_reco.jwks"]
        assert any(
            BAD_DAYS[mode] in line and "keeping the 1 keys already held" in line for line in said
        )
        broken.mode = "good"
        clock.now += 60
        with pytest.raises(Unauthenticated, match="not published"):
            await keys.key_for("rotated-in")
        assert keys.status().problem is None


@pytest.mark.parametrize("mode", [*sorted(BAD_DAYS), "down"])
async def test_without_any_key_a_token_gets_503_with_the_reason(
    broken: BrokenIdP, mode: str
) -> None:
    broken.mode = "error" if mode == "down" else mode
    clock = Clock()
    keys = keyset(broken, clock, timeout_s=0.5)
    if mode == "down":
        keys = Jwks(
            issuer="https://idp.example.com",
            jwks_url="http://127.0.0.1:9/jwks",  # discard: nobody listens
            refresh_s=600,
            min_refresh_s=60,
            timeout_s=0.5,
            clock=clock,
        )
    async with keys:
        assert keys.status().loaded == 0
        with pytest.raises(KeysUnavailable, match="no keys held yet") as unavailable:
            await asyncio.wait_for(keys.key_for(broken.kid), timeout=10)
        said = BAD_DAYS.get(mode, "cannot connect")
        assert said in unavailable.value.message


async def test_a_provider_gone_later_leaves_the_held_keys_working() -> None:
    clock = Clock()
    with BrokenIdP() as gone:
        keys = keyset(gone, clock)
        await keys.open()
        kid = gone.kid
    try:  # the server has stopped: nothing listens on its port now
        clock.now += 60
        with pytest.raises(KeysUnavailable, match="cannot connect"):
            await asyncio.wait_for(keys.key_for("rotated-in"), timeout=10)
        assert (await keys.key_for(kid)).kid == kid
    finally:
        await keys.aclose()


async def test_a_duplicated_kid_is_left_out_and_the_rest_is_used(broken: BrokenIdP) -> None:
    broken.mode = "duplicate"
    async with keyset(broken, Clock()) as keys:
        assert (await keys.key_for(broken.kid)).kid == broken.kid
        with pytest.raises(Unauthenticated, match="not published"):
            await keys.key_for("twice")


async def test_the_key_set_is_fetched_again_in_the_background(broken: BrokenIdP) -> None:
    # Real time here: one-second intervals, and a deadline on the wait.
    keys = Jwks(
        issuer="https://idp.example.com",
        jwks_url=broken.jwks_url,
        refresh_s=1,
        min_refresh_s=1,
        timeout_s=1.0,
    )
    async with keys:
        old_kid = broken.kid
        # Another key, published in place of the first.
        broken.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        broken.kid = "rotated"
        # No token asks for it: only a background fetch can see the old kid go.
        async with asyncio.timeout(15):
            while keys.generation == 0:
                await asyncio.sleep(0.05)
        assert (await keys.key_for("rotated")).kid == "rotated"
        with pytest.raises(Unauthenticated, match="not published"):
            await keys.key_for(old_kid)

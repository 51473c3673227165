"""The adaptive in-flight limit of a real `kv-reco serve` on the real node, losing it and back.

The service reaches the node through a TCP relay (as tests/api/test_late_cluster.py
does): closing the relay is the node going down for the service (every
connection cut, none accepted), opening it again is the node coming back. The
service is never restarted; the limit and its floor are read from /metrics.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx2 as httpx
import numpy as np

from killrvideo_reco.auth import CREATOR, mint_token
from killrvideo_reco.config import Settings
from killrvideo_reco.domain.videos import Video

from ..conftest import DIM, free_port, service_env
from ..serve_child import serve_child
from .test_late_cluster import relay

INGEST = "/api/v1/reco/ingest"
MINIMUM = 2


def gauges(text: str) -> dict[str, float]:
    wanted = ("kv_reco_write_limit", "kv_reco_write_latency_floor_seconds")
    return {
        name: float(value)
        for name, _, value in (line.partition(" ") for line in text.splitlines())
        if name in wanted
    }


class Load:
    """Sixteen clients, each sending again after its answer, as a pipeline does
    (20 ms after a 503, so as not to spin); counts by phase; the gauges scraped."""

    def __init__(self, client: httpx.AsyncClient, bodies: list[dict[str, object]]) -> None:
        self.client, self.bodies = client, bodies
        self.phase = "up"
        self.by_phase: dict[str, Counter[int]] = {p: Counter() for p in ("up", "down", "back")}
        self.seen: list[dict[str, float]] = []
        self.stop = asyncio.Event()

    async def worker(self, first: int) -> None:
        i = first
        while not self.stop.is_set():
            try:
                r = await self.client.post(INGEST, json=self.bodies[i % len(self.bodies)])
            except httpx.TransportError:
                await asyncio.sleep(0.02)
                continue
            self.by_phase[self.phase][r.status_code] += 1
            assert r.status_code in (202, 503), r.text
            if r.status_code == 503:
                assert r.headers["Retry-After"] == "1"
                await asyncio.sleep(0.02)
            i += 16

    def last(self, name: str) -> float:
        return self.seen[-1].get(name, math.nan) if self.seen else math.nan

    async def until(self, what: str, timeout_s: float, test: Callable[[], bool]) -> None:
        async def check() -> None:
            while not test():
                self.seen.append(gauges((await self.client.get("/metrics")).text))
                await asyncio.sleep(0.1)

        try:
            await asyncio.wait_for(check(), timeout_s)
        except TimeoutError:
            raise AssertionError(
                f"timed out waiting for {what}; last {self.seen[-5:]}, {self.by_phase}"
            ) from None


async def test_the_limit_falls_when_the_node_goes_away_and_climbs_back_without_a_restart(
    settings: Settings,
    new_video: Callable[..., Video],
    rng: np.random.Generator,
    tmp_path: Path,
) -> None:
    cql_port = free_port()
    env = service_env(
        settings.keyspace,
        tmp_path,
        KV_CASSANDRA_PORT=str(cql_port),
        KV_LIMIT_MODE="adaptive",
        KV_MAX_IN_FLIGHT="4",
        KV_ADAPTIVE_MIN_IN_FLIGHT=str(MINIMUM),
        KV_ADAPTIVE_MAX_IN_FLIGHT="32",
        KV_REQUEST_TIMEOUT_S="1",
        KV_CONNECT_TIMEOUT_S="2",
    )
    token = mint_token(Settings(state_dir=tmp_path), roles=[CREATOR], ttl_s=600)
    videos = [new_video() for _ in range(40)]
    bodies: list[dict[str, object]] = [
        {"videoId": str(v.videoid), "vector": rng.standard_normal(DIM).tolist()} for v in videos
    ]
    node = ("127.0.0.1", settings.cassandra_port)
    limit, floor = "kv_reco_write_limit", "kv_reco_write_latency_floor_seconds"
    up = relay(cql_port, node)
    up.__enter__()
    try:
        with serve_child(env) as (child, url):
            headers = {"Authorization": f"Bearer {token}"}
            async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
                load = Load(client, bodies)
                workers = [asyncio.create_task(load.worker(w)) for w in range(16)]
                try:
                    await load.until("a measured floor", 30, lambda: load.last(floor) > 0)
                    await load.until("200 accepted", 60, lambda: load.by_phase["up"][202] >= 200)
                    assert MINIMUM <= load.last(limit) <= 32

                    load.phase = "down"
                    up.__exit__(None, None, None)  # the node is gone for the service
                    await load.until("the minimum", 30, lambda: load.last(limit) == MINIMUM)

                    load.phase = "back"
                    up = relay(cql_port, node)  # the same service process all along
                    up.__enter__()
                    await load.until("accepted again", 60, lambda: load.by_phase["back"][202] >= 50)
                    await load.until("the limit climbing", 30, lambda: load.last(limit) > MINIMUM)
                finally:
                    load.stop.set()
                    await asyncio.gather(*workers, return_exceptions=True)
            assert child.stop() in (0, -15)
    finally:
        up.__exit__(None, None, None)
    by_phase = load.by_phase
    # Writes already at the node when it went away may still finish 202; the rest get 503.
    assert by_phase["down"][503] > 0, by_phase
    assert "Traceback" not in child.output, child.tail()
    limits = sorted({int(s[limit]) for s in load.seen if limit in s})
    print(f"\nadaptive limit through a lost node: {by_phase}; limits seen {limits}")

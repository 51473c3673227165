"""Sequential ingest latency: the service end to end against the driver alone.

Usage: python bench/ingest_latency.py [--requests 1000] [--url http://127.0.0.1:8080]

Needs a running node with the schema applied and `kv-reco serve` listening.
Every request carries a fresh random vector (a repeated vector costs Cassandra
almost nothing). The baseline, measured in the same run against the same
table, is the same LWT UPDATE done directly with the driver.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import socket
import time
import uuid
from urllib.parse import urlsplit

import numpy as np

from killrvideo_reco.auth import CREATOR, mint_token
from killrvideo_reco.config import load_settings
from killrvideo_reco.domain.vectors import pack_vector
from killrvideo_reco.domain.videos import Video
from killrvideo_reco.storage import CassandraStore


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    a = np.asarray(samples_ms)
    return {f"p{q}": float(np.percentile(a, q)) for q in (50, 95, 99)} | {"max": float(a.max())}


def fmt(name: str, stats: dict[str, float]) -> str:
    return f"{name:<28}" + "  ".join(f"{k}={v:6.2f} ms" for k, v in stats.items())


class Client:
    """A keep-alive HTTP/1.1 client with TCP_NODELAY and little overhead of its own."""

    def __init__(self, url: str, token: str) -> None:
        parts = urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=10)
        self.conn.connect()
        self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        self.conn.request("POST", path, body=body, headers=self.headers)
        resp = self.conn.getresponse()
        return resp.status, resp.read()


def body_for(vid: uuid.UUID, vector: np.ndarray) -> bytes:
    return ('{"videoId":"%s","vector":[%s]}' % (vid, ",".join(map(repr, vector.tolist())))).encode()


async def run(
    store: CassandraStore, client: Client, ids: list[uuid.UUID], rng: np.random.Generator
) -> tuple[list[float], list[float]]:
    """Alternate one driver write and one service write, so both meet the same index size."""
    spec = store.spec
    assert spec is not None
    base, svc = [], []
    for driver_id, service_id in zip(ids[0::2], ids[1::2], strict=True):
        packed = pack_vector(rng.standard_normal(spec.dimension).tolist(), spec)
        t0 = time.perf_counter()
        await store.set_content_features(driver_id, packed)
        base.append((time.perf_counter() - t0) * 1000)
        body = body_for(service_id, rng.standard_normal(spec.dimension).astype(np.float32))
        t0 = time.perf_counter()
        status, payload = await asyncio.to_thread(client.post, "/api/v1/reco/ingest", body)
        svc.append((time.perf_counter() - t0) * 1000)
        if status != 202:
            raise SystemExit(f"unexpected {status}: {payload!r}")
    return base, svc


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    args = ap.parse_args()
    settings = load_settings()
    store = CassandraStore.open(settings)
    spec = store.load_schema()
    rng = np.random.default_rng()
    videos = [Video(name=f"latency bench {i}") for i in range(2 * args.requests)]
    store.insert_videos(videos)
    ids = [v.videoid for v in videos]
    token = mint_token(settings, roles=[CREATOR], ttl_s=3600)
    base, svc = asyncio.run(run(store, Client(args.url, token), ids, rng))
    print(
        f"{args.requests} sequential ingests, {spec.cql_type}, {spec.similarity.value}, fresh vectors"
    )
    print(fmt("driver only (LWT UPDATE)", percentiles(base)))
    print(fmt("service over HTTP", percentiles(svc)))
    b, s = percentiles(base), percentiles(svc)
    print("service/driver: " + "  ".join(f"{k}={s[k] / b[k]:.2f}x" for k in ("p50", "p95", "p99")))
    store.close()


if __name__ == "__main__":
    main()

"""Sequential ingest latency: the service end to end against the driver alone.

    python bench/ingest_latency.py [--requests 1000] [--warmup 500] [--similarity cosine]

Self-contained: it uses a fresh keyspace (dropped at the end) on the running
local node, starts `kv-reco serve` on a free port against it, and alternates
one write through the driver with one write through the service, so both meet
the same index size and the same background load. Every request carries a
fresh random vector: a repeated vector costs Cassandra almost nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import os
import secrets
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np

from _common import cpu_times, drop_keyspace, free_port
from _results import table, write_summary
from killrvideo_reco.auth import CREATOR, mint_token
from killrvideo_reco.config import Settings
from killrvideo_reco.domain.vectors import Similarity, pack_vector
from killrvideo_reco.domain.videos import Video
from killrvideo_reco.storage import CassandraStore

KV = str(Path(sys.executable).with_name("kv-reco"))


class Client:
    """A keep-alive HTTP/1.1 client with TCP_NODELAY and little overhead of its own."""

    def __init__(self, port: int, token: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        self.conn.connect()
        self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        self.conn.request("POST", path, body=body, headers=self.headers)
        resp = self.conn.getresponse()
        return resp.status, resp.read()


def body_for(vid: uuid.UUID, vector: np.ndarray) -> bytes:
    return ('{"videoId":"%s","vector":[%s]}' % (vid, ",".join(map(repr, vector.tolist())))).encode()


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    a = np.asarray(samples_ms)
    return {f"p{q}": float(np.percentile(a, q)) for q in (50, 95, 99)} | {"max": float(a.max())}


def fmt(name: str, stats: dict[str, float]) -> str:
    return f"{name:<26}" + "  ".join(f"{k}={v:6.2f} ms" for k, v in stats.items())


async def run(
    store: CassandraStore, client: Client, ids: list[uuid.UUID], rng: np.random.Generator
) -> tuple[list[float], list[float]]:
    spec = store.spec
    assert spec is not None
    base, svc = [], []
    for driver_id, service_id in zip(ids[0::2], ids[1::2], strict=True):
        packed = pack_vector(rng.standard_normal(spec.dimension).tolist(), spec)
        t0 = time.perf_counter()
        await store.writer.set_content_features(driver_id, packed)
        base.append((time.perf_counter() - t0) * 1000)
        body = body_for(service_id, rng.standard_normal(spec.dimension).astype(np.float32))
        t0 = time.perf_counter()
        status, payload = client.post("/api/v1/reco/ingest", body)
        svc.append((time.perf_counter() - t0) * 1000)
        if status != 202:
            raise SystemExit(f"unexpected {status}: {payload!r}")
    return base, svc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument(
        "--warmup", type=int, default=500, help="ingests each way before the measured ones"
    )
    ap.add_argument("--dimension", type=int, default=1536)
    ap.add_argument("--similarity", type=Similarity, default=Similarity.COSINE)
    args = ap.parse_args()
    settings = Settings(
        keyspace=f"kv_bench_{secrets.token_hex(3)}", jwt_secret=secrets.token_urlsafe(40)
    )
    store = CassandraStore.open(settings)
    store.schema.apply(dimension=args.dimension, similarity=args.similarity, replication_factor=1)
    spec = store.load_schema()
    port = free_port()
    env = {
        **os.environ,
        "KV_KEYSPACE": settings.keyspace,
        "KV_JWT_SECRET": settings.jwt_secret.get_secret_value(),
    }  # type: ignore[union-attr]
    cmd = [KV, "serve", "--port", str(port)]
    if os.environ.get("BENCH_TASKSET"):
        cmd = ["taskset", "-c", os.environ["BENCH_TASKSET"], *cmd]
    server = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL)
    try:
        total = args.warmup + args.requests
        videos = [Video(name=f"latency bench {i}") for i in range(2 * total)]
        store.videos.insert(videos)
        client = None
        for _ in range(100):
            try:
                client = Client(port, mint_token(settings, roles=[CREATOR]))
                break
            except OSError:
                time.sleep(0.1)
        assert client is not None, "the service did not start"
        rng = np.random.default_rng()
        ids = [v.videoid for v in videos]
        cold_base, cold_svc = (
            asyncio.run(run(store, client, ids[: 2 * args.warmup], rng))
            if args.warmup
            else ([], [])
        )
        server_cpu0 = cpu_times(server.pid)
        base, svc = asyncio.run(run(store, client, ids[2 * args.warmup :], rng))
        user1, sys1 = cpu_times(server.pid)
        server_user, server_sys = user1 - server_cpu0[0], sys1 - server_cpu0[1]
    finally:
        server.terminate()
        server.wait(30)
        drop_keyspace(store, settings.keyspace)
        store.close()
    # The graph options decide most of the latency: name the live ones.
    g = spec.graph
    index = f"{spec.similarity.value} index" + (
        f" (beam width {g.beam_width}, max connections {g.max_connections})" if g else ""
    )
    print(
        f"{args.requests} sequential ingests each way, {spec.cql_type}, {index}, fresh vectors, "
        f"one node, after {args.warmup} each way"
    )
    # Percentiles of the warm-up, printed and kept in the summary alike.
    warmup = (
        [("driver alone", percentiles(cold_base)), ("the service", percentiles(cold_svc))]
        if args.warmup
        else []
    )
    for name, stats in warmup:
        print(fmt(f"warm-up: {name}", stats))
    print(fmt("driver only (LWT UPDATE)", percentiles(base)))
    print(fmt("service over HTTP", percentiles(svc)))
    b, s = percentiles(base), percentiles(svc)
    print("service/driver: " + "  ".join(f"{k}={s[k] / b[k]:.2f}x" for k in ("p50", "p95", "p99")))
    per = 1e6 / args.requests
    print(
        f"service CPU per ingest: {(server_user + server_sys) * per:.0f} µs "
        f"(user {server_user * per:.0f}, system {server_sys * per:.0f}; process CPU time / requests)"
    )
    budget = "holds" if s["p99"] < 25 else "is missed"
    print(f"the spec's budget (p99 < 25 ms for the whole ingest) {budget}: p99 = {s['p99']:.2f} ms")
    warmup_rows = [
        [f"warm-up, {name} (first {args.warmup}), ms", *stats.values()] for name, stats in warmup
    ]
    write_summary(
        "ingest_latency",
        title="Sequential ingest latency: the service against the driver alone",
        tables=[
            table(
                ["", "p50", "p95", "p99", "max"],
                [
                    ["driver alone (`UPDATE … IF EXISTS`), ms", *b.values()],
                    ["the service over HTTP, ms", *s.values()],
                    ["service/driver", *(f"{s[k] / b[k]:.2f}x" for k in b)],
                    *warmup_rows,
                ],
            )
        ],
        notes=[
            f"{args.requests} sequential ingests each way, alternating, {spec.cql_type}, "
            f"{index}, fresh vectors, one node, after {args.warmup} each way (the warm-up rows, "
            "not counted in the others)",
            f"service CPU per ingest: {(server_user + server_sys) * per:.0f} µs",
            f"the spec's budget (p99 < 25 ms) {budget}",
        ],
    )


if __name__ == "__main__":
    main()

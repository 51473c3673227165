"""SAI vector graph options: what each costs the node per vector, and the recall it keeps.

    python bench/index.py [--vectors 8000] [--grid 100x16,100x8,40x8]
                          [--compaction stcs|ucs] [--rounds 1] [--queries 100]

Run it against a node of its own (KV_CONTACT_POINTS, KV_STATE_DIR: nodetool
and the node's CPU time are read there), started with
-Dcassandra.sai.vector.allow_custom_parameters=true (`kv-reco cassandra start`
does). Each configuration "BEAMxCONNECTIONS" gets a fresh keyspace, and the
configurations run in turn, `--rounds` times over, so that every one meets the
same background load; on a shared machine compare them within one run.

For each it reports:
- raw-driver writes/s: plain prepared INSERTs of packed vectors, 8 in flight;
- node CPU per vector over that load (the JVM's utime + stime, /proc/PID/stat);
- recall@10 in the memtable, against exact cosine over the stored float32
  vectors, through the service's own related-videos read (store.related), the
  index's own top 10 (overfetch 1) and the service's default (overfetch 3);
- sequential p50/p99: alternately one `UPDATE … IF EXISTS` through the driver
  and one POST /api/v1/reco/ingest through `kv-reco serve`;
- service writes/s: the batch endpoint, 4 batches of 100 in flight;
- the bulk load's whole node CPU per vector: the load, the flush (PQ training)
  and the compactions the strategy starts by itself, until none is pending;
- after a major compaction (a graph rebuilt by compaction, PQ segments),
  recall@10 on disk with optimize_for LATENCY (the default), then again after
  dropping and recreating the index with optimize_for RECALL. The time from the
  DROP until an ANN query answers again is the window a drop-and-recreate of
  an index leaves related videos without answers.

The vectors stand in for real embeddings (docs/index-options.md says why): a
mixture of 40 Gaussians in a 24-d latent space, mapped linearly to 1536-d,
with a little full-rank noise, unit length. Seeded: every run and every
configuration sees the same vectors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from cassandra.cluster import Cluster
from cassandra.concurrent import execute_concurrent_with_args
from pydantic import SecretStr

from _common import cpu_times, drop_keyspace, free_port
from killrvideo_reco.auth import CREATOR, mint_token
from killrvideo_reco.client import Item, RecoClient
from killrvideo_reco.config import Settings
from killrvideo_reco.devnode import DevCluster, DevClusterConfig, NodeError
from killrvideo_reco.domain.vectors import GraphOptions, Similarity, pack_vector
from killrvideo_reco.domain.videos import Video
from killrvideo_reco.storage import CassandraStore
from killrvideo_reco.storage._codec import bind_packed_vectors
from killrvideo_reco.storage.schema import index_name

RESULTS = Path(__file__).resolve().parent / "results"
KV = str(Path(sys.executable).with_name("kv-reco"))
K = 10
# The index's own top 10, the service's default (KV_RELATED_OVERFETCH=3), and
# what a larger overfetch buys back on a graph that lost recall.
OVERFETCHES = (1, 3, 10)
COLUMN = "content_features"


def latent_mixture(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    """Unit vectors shaped more like text embeddings than isotropic clusters.

    Real embeddings occupy a low-dimensional, lumpy part of their space: here
    40 Gaussian components of varied spread in 24 latent dimensions, one fixed
    linear map to ``dim``, and noise of about a tenth of the signal in every
    dimension, so that no direction is exactly empty.
    """
    latent, components = 24, 40
    maps = np.random.default_rng(7).standard_normal((latent, dim)) / np.sqrt(latent)
    centres = np.random.default_rng(8).standard_normal((components, latent))
    spread = np.random.default_rng(9).uniform(0.3, 0.8, components)
    label = rng.integers(0, components, n)
    z = centres[label] + spread[label, None] * rng.standard_normal((n, latent))
    x = z @ maps
    x += (
        0.1
        * np.linalg.norm(x, axis=1, keepdims=True)
        / np.sqrt(dim)
        * rng.standard_normal((n, dim))
    )
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def exact_top(vectors: np.ndarray, query: int, k: int) -> list[int]:
    """The exact k nearest by cosine (the vectors are unit length), the query itself left out."""
    score = vectors @ vectors[query]
    score[query] = -np.inf
    return np.argsort(-score)[:k].tolist()


@dataclass
class Node:
    cluster: DevCluster
    pid: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Node:
        cluster = DevCluster(
            DevClusterConfig(
                version=settings.cassandra_version,
                cache_dir=settings.cache_dir,
                state_dir=settings.state_dir,
                native_port=settings.cassandra_port,
                first_address=settings.contact_point_list[0],
            )
        )
        pid = cluster.status()[0].pid
        if pid is None:
            raise SystemExit(
                f"no node of ours runs from {settings.state_dir} at "
                f"{settings.contact_points}: set KV_STATE_DIR and KV_CONTACT_POINTS"
            )
        return cls(cluster=cluster, pid=pid)

    def cpu_s(self) -> float:
        user, system = cpu_times(self.pid)
        return user + system

    def nodetool(self, *args: str, timeout_s: float = 1800) -> str:
        return self.cluster.nodetool(*args, timeout_s=timeout_s)

    def sstables(self, keyspace: str) -> int:
        out = self.nodetool("tablestats", f"{keyspace}.videos")
        match = re.search(r"SSTable count:\s+(\d+)", out)
        return int(match.group(1)) if match else -1

    def wait_for_no_compactions(self, *, timeout_s: float = 3600) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                out = self.nodetool("compactionstats", timeout_s=120)
            except (NodeError, subprocess.TimeoutExpired) as e:
                # A node busy building a graph can miss JMX's deadline; the
                # question is asked again, not answered with a guess.
                print(f"(nodetool compactionstats: {e}; asking again)", flush=True)
                time.sleep(5)
                continue
            match = re.search(r"pending tasks:?\s+(\d+)", out)
            # A running compaction is listed under a header naming "compaction type".
            if match and int(match.group(1)) == 0 and "compaction type" not in out.lower():
                return
            time.sleep(2)
        raise SystemExit(f"compactions still pending after {timeout_s:.0f} s")


COMPACTION_CLASSES = {"stcs": "SizeTieredCompactionStrategy", "ucs": "UnifiedCompactionStrategy"}


class Table:
    """One configuration's fresh keyspace: the stored vectors and their ids, in write order."""

    def __init__(self, settings: Settings, graph: GraphOptions, compaction: str) -> None:
        self.keyspace = f"kv_index_{secrets.token_hex(3)}"
        self.settings = settings.model_copy(
            update={
                "keyspace": self.keyspace,
                "index_beam_width": graph.beam_width,
                "index_max_connections": graph.max_connections,
                "max_in_flight": 16,
                "request_timeout_s": 30,
            }
        )
        self.graph = graph
        self.store = CassandraStore.open(self.settings)
        self.store.schema.apply(
            dimension=1536, similarity=Similarity.COSINE, replication_factor=1, graph_explicit=True
        )
        # Said outright either way: a new table gets the schema's strategy,
        # and a run named stcs must not quietly measure another one.
        strategy = COMPACTION_CLASSES[compaction]
        self.store.schema.execute(
            f"ALTER TABLE {self.keyspace}.videos WITH compaction = {{'class': '{strategy}'}}"
        )
        self.store.load_schema()
        self.ids: list[uuid.UUID] = []
        self.vectors: list[np.ndarray] = []

    def stored(self) -> np.ndarray:
        return np.concatenate(self.vectors)

    def close(self) -> None:
        drop_keyspace(self.store, self.keyspace)
        self.store.close()


def driver_load(session: Any, table: Table, vectors: np.ndarray) -> float:
    """Plain INSERTs, 8 in flight; returns writes/s."""
    insert = session.prepare(
        f"INSERT INTO {table.keyspace}.videos (videoid, name, {COLUMN}) VALUES (?, ?, ?)"
    )
    bind_packed_vectors(insert, column=COLUMN)
    ids = [uuid.uuid4() for _ in range(len(vectors))]
    args = [
        (vid, "index bench", v.astype(">f4").tobytes()) for vid, v in zip(ids, vectors, strict=True)
    ]
    t0 = time.perf_counter()
    # A large load outruns the memtable: while a flush trains PQ, writes can
    # time out at the node. An INSERT is idempotent, so the timed-out ones are
    # sent again (counted in the rate's time), as a pipeline's client would.
    pending = args
    for _ in range(20):
        results = execute_concurrent_with_args(
            session, insert, pending, concurrency=8, raise_on_first_error=False
        )
        failed = [a for a, (ok, _) in zip(pending, results, strict=True) if not ok]
        if not failed:
            break
        print(f"({len(failed)} of {len(pending)} writes timed out; sending them again)", flush=True)
        pending = failed
    else:
        raise SystemExit("writes kept failing after 20 rounds")
    rate = len(ids) / (time.perf_counter() - t0)
    table.ids += ids
    table.vectors.append(vectors)
    return rate


def recall(table: Table, sample: np.ndarray, overfetch: int) -> tuple[float, float, float]:
    """Mean recall@10 over the sample, and the read's p50/p99 in ms."""
    stored = table.stored()
    index_of = {vid: i for i, vid in enumerate(table.ids)}

    async def run() -> tuple[list[float], list[float]]:
        recalls, latencies = [], []
        for q in sample.tolist():
            t0 = time.perf_counter()
            items = await table.store.related.nearest(table.ids[q], limit=K, overfetch=overfetch)
            latencies.append((time.perf_counter() - t0) * 1000)
            found = {index_of[item.video_id] for item in items}
            recalls.append(len(found & set(exact_top(stored, q, K))) / K)
        return recalls, latencies

    recalls, latencies = asyncio.run(run())
    return (
        float(np.mean(recalls)),
        float(np.percentile(latencies, 50)),
        float(np.percentile(latencies, 99)),
    )


class Service:
    """`kv-reco serve` on a free port, against one configuration's keyspace."""

    def __init__(self, table: Table) -> None:
        secret = secrets.token_urlsafe(40)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "KV_KEYSPACE": table.keyspace,
            "KV_JWT_SECRET": secret,
            "KV_LOG_LEVEL": "WARNING",
        }
        self.token = mint_token(
            table.settings.model_copy(update={"jwt_secret": SecretStr(secret)}), roles=[CREATOR]
        )
        self.proc = subprocess.Popen(
            [KV, "serve", "--port", str(self.port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise SystemExit("the service did not become ready within 60 s")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def sequential(table: Table, service: Service, vectors: np.ndarray) -> dict[str, float]:
    """Alternately one driver `UPDATE … IF EXISTS` and one service ingest; p50/p99 of each."""
    videos = [Video(name=f"sequential {i}") for i in range(len(vectors))]
    table.store.videos.insert(videos)
    spec = table.store.spec
    assert spec is not None
    driver, served = [], []
    with httpx.Client(
        base_url=service.url, headers={"Authorization": f"Bearer {service.token}"}
    ) as http:

        async def one(vid: uuid.UUID, packed: bytes) -> None:
            await table.store.writer.set_content_features(vid, packed)

        for i, (video, vector) in enumerate(zip(videos, vectors, strict=True)):
            if i % 2 == 0:
                packed = pack_vector(vector.tolist(), spec)
                t0 = time.perf_counter()
                asyncio.run(one(video.videoid, packed))
                driver.append((time.perf_counter() - t0) * 1000)
            else:
                body = {"videoId": str(video.videoid), "vector": vector.tolist()}
                t0 = time.perf_counter()
                response = http.post("/api/v1/reco/ingest", json=body)
                served.append((time.perf_counter() - t0) * 1000)
                if response.status_code != 202:
                    raise SystemExit(f"ingest answered {response.status_code}: {response.text}")
    table.ids += [v.videoid for v in videos]
    table.vectors.append(vectors)
    return {
        "driver_p50_ms": float(np.percentile(driver, 50)),
        "driver_p99_ms": float(np.percentile(driver, 99)),
        "service_p50_ms": float(np.percentile(served, 50)),
        "service_p99_ms": float(np.percentile(served, 99)),
    }


def service_load(table: Table, service: Service, vectors: np.ndarray) -> float:
    videos = [Video(name=f"service {i}") for i in range(len(vectors))]
    table.store.videos.insert(videos)
    items = [Item(str(v.videoid), x) for v, x in zip(videos, vectors, strict=True)]
    with RecoClient(service.url, service.token) as client:
        t0 = time.perf_counter()
        summary = client.ingest_many(items, batch_size=100, concurrency=4)
        rate = len(items) / (time.perf_counter() - t0)
    if summary.accepted != len(items):
        raise SystemExit(f"the service accepted {summary.accepted} of {len(items)}")
    table.ids += [v.videoid for v in videos]
    table.vectors.append(vectors)
    return rate


def recreate_index(table: Table, optimize_for: str) -> float:
    """DROP then CREATE the index with ``optimize_for``; seconds until ANN answers again."""
    ks, graph = table.keyspace, table.graph
    options = {"similarity_function": "COSINE", "optimize_for": optimize_for}
    options |= graph.cql_options()
    body = ", ".join(f"'{k}': '{v}'" for k, v in options.items())
    probe = table.stored()[0].tolist()
    t0 = time.perf_counter()
    table.store.schema.execute(f"DROP INDEX {ks}.{index_name(COLUMN)}")
    table.store.schema.execute(
        f"CREATE CUSTOM INDEX {index_name(COLUMN)} ON {ks}.videos({COLUMN}) "
        f"USING 'StorageAttachedIndex' WITH OPTIONS = {{{body}}}"
    )
    deadline = time.monotonic() + 3600
    while time.monotonic() < deadline:
        try:
            table.store.schema.execute(
                f"SELECT videoid FROM {ks}.videos ORDER BY {COLUMN} ANN OF %s LIMIT 1", (probe,)
            )
            window = time.perf_counter() - t0
            table.store.load_schema()  # the reads are prepared again for the new index
            return window
        except Exception:  # not queryable while it builds: that is the window
            time.sleep(0.5)
    raise SystemExit("the recreated index did not become queryable in 60 min")


def run_config(
    *,
    node: Node,
    session: Any,
    settings: Settings,
    graph: GraphOptions,
    data: dict[str, np.ndarray],
    sample: np.ndarray,
    compaction: str,
    recreate: bool,
    major: bool,
) -> dict[str, Any]:
    table = Table(settings, graph, compaction)
    row: dict[str, Any] = {
        "beam_width": graph.beam_width,
        "max_connections": graph.max_connections,
        "compaction": compaction,
        "vectors": len(data["load"]),
    }
    try:
        cpu0 = node.cpu_s()
        row["driver_writes_per_s"] = driver_load(session, table, data["load"])
        cpu_load = node.cpu_s() - cpu0
        row["cpu_ms_per_vector_insert"] = 1000 * cpu_load / len(data["load"])
        # Past the memtable's share of the heap the load has already flushed:
        # "memtable" recall is then over the memtable and these sstables.
        row["sstables_after_load"] = node.sstables(table.keyspace)
        for of in OVERFETCHES:
            r, _, _ = recall(table, sample, of)
            row[f"recall_memtable_of{of}"] = r
        if len(data["sequential"]) or len(data["service"]):
            service = Service(table)
            try:
                if len(data["sequential"]):
                    row |= sequential(table, service, data["sequential"])
                if len(data["service"]):
                    row["service_writes_per_s"] = service_load(table, service, data["service"])
            finally:
                service.stop()
        cpu1, t1 = node.cpu_s(), time.perf_counter()
        node.nodetool("flush", table.keyspace, "videos")
        row["flush_s"] = time.perf_counter() - t1
        node.wait_for_no_compactions()
        row["flush_and_compactions_s"] = time.perf_counter() - t1
        row["sstables_after_compactions"] = node.sstables(table.keyspace)
        # The whole bulk load: every vector written, flushed, and compacted as
        # the strategy chose; the sequential and service writes included.
        bulk_cpu = cpu_load + node.cpu_s() - cpu1
        row["bulk_cpu_ms_per_vector"] = 1000 * bulk_cpu / len(table.ids)
        for of in OVERFETCHES:
            r, _, _ = recall(table, sample, of)
            row[f"recall_flushed_of{of}"] = r
        if not major:
            return row
        cpu2, t2 = node.cpu_s(), time.perf_counter()
        node.nodetool("compact", table.keyspace, "videos", timeout_s=7200)
        row["major_compaction_s"] = time.perf_counter() - t2
        row["major_compaction_cpu_ms_per_vector"] = 1000 * (node.cpu_s() - cpu2) / len(table.ids)
        for of in OVERFETCHES:
            r, p50, p99 = recall(table, sample, of)
            row[f"recall_disk_latency_of{of}"] = r
            row[f"related_disk_p50_ms_of{of}"], row[f"related_disk_p99_ms_of{of}"] = p50, p99
        if recreate:
            row["recreate_window_s"] = recreate_index(table, "RECALL")
            for of in OVERFETCHES:
                r, _, _ = recall(table, sample, of)
                row[f"recall_disk_recall_of{of}"] = r
    finally:
        table.close()
    return row


def parse_grid(text: str) -> list[GraphOptions]:
    out = []
    for item in text.split(","):
        beam, conn = item.lower().split("x")
        out.append(GraphOptions(beam_width=int(beam), max_connections=int(conn)))
    return out


def show(row: dict[str, Any]) -> str:
    def g(key: str, fmt: str = ".3f") -> str:
        return format(row[key], fmt) if key in row else "-"

    return (
        f"{row['beam_width']:>4}/{row['max_connections']:<3} {row['compaction']:<4} "
        f"driver {g('driver_writes_per_s', '6.0f')}/s  service {g('service_writes_per_s', '5.0f')}/s  "
        f"seq p50/p99 driver {g('driver_p50_ms', '5.1f')}/{g('driver_p99_ms', '5.1f')} "
        f"service {g('service_p50_ms', '5.1f')}/{g('service_p99_ms', '5.1f')} ms  "
        f"CPU/vector insert {g('cpu_ms_per_vector_insert', '5.2f')} ms "
        f"(sstables after load {g('sstables_after_load', 'd')}, "
        f"after compactions {g('sstables_after_compactions', 'd')}) "
        f"bulk {g('bulk_cpu_ms_per_vector', '5.2f')} ms  "
        f"recall@10 (overfetch 1/3/10) memtable {g('recall_memtable_of1')}/{g('recall_memtable_of3')}/{g('recall_memtable_of10')} "
        f"flushed {g('recall_flushed_of1')}/{g('recall_flushed_of3')}/{g('recall_flushed_of10')} "
        f"disk LATENCY {g('recall_disk_latency_of1')}/{g('recall_disk_latency_of3')}/{g('recall_disk_latency_of10')} "
        f"RECALL {g('recall_disk_recall_of1')}/{g('recall_disk_recall_of3')}/{g('recall_disk_recall_of10')}  "
        f"flush {g('flush_s', '.0f')} s, major compaction {g('major_compaction_s', '.0f')} s, "
        f"recreate window {g('recreate_window_s', '.0f')} s"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vectors", type=int, default=8000)
    ap.add_argument("--grid", type=parse_grid, default=parse_grid("100x16,100x8,40x8"))
    ap.add_argument(
        "--compaction", choices=["stcs", "ucs"], action="append", help="default: ucs, the schema's"
    )
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--sequential", type=int, default=300, help="alternating writes, both ways")
    ap.add_argument("--service-writes", type=int, default=800)
    ap.add_argument(
        "--no-recreate",
        action="store_true",
        help="skip the optimize_for RECALL rebuild (and the drop-and-recreate window)",
    )
    ap.add_argument(
        "--no-major",
        action="store_true",
        help="stop after the strategy's own compactions (no major compaction, no rebuild)",
    )
    ap.add_argument("--tag", default="")
    args = ap.parse_args()
    settings = Settings()
    node = Node.from_settings(settings)
    rng = np.random.default_rng(2026)
    total = args.vectors + args.sequential + args.service_writes
    everything = latent_mixture(rng, total, 1536)
    data = {
        "load": everything[: args.vectors],
        "sequential": everything[args.vectors : args.vectors + args.sequential],
        "service": everything[args.vectors + args.sequential :],
    }
    sample = rng.choice(args.vectors, size=min(args.queries, args.vectors), replace=False)
    # TCP_NODELAY: without it every ~6 KiB vector frame waits ~40 ms on Nagle
    # and delayed ACK (shared notes, trap 1), as the service's own session knows.
    cluster = Cluster(
        settings.contact_point_list,
        port=settings.cassandra_port,
        protocol_version=4,
        sockopts=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
    )
    session = cluster.connect()
    rows = []
    name = f"index-{args.vectors}{args.tag}"
    RESULTS.mkdir(exist_ok=True)
    try:
        for round_ in range(args.rounds):
            for compaction in args.compaction or ["ucs"]:  # the schema's own
                for graph in args.grid:
                    row = run_config(
                        node=node,
                        session=session,
                        settings=settings,
                        graph=graph,
                        data=data,
                        sample=sample,
                        compaction=compaction,
                        recreate=not args.no_recreate and not args.no_major,
                        major=not args.no_major,
                    ) | {"round": round_}
                    rows.append(row)
                    print(show(row), flush=True)
                    (RESULTS / f"{name}.json").write_text(json.dumps(rows, indent=2))
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    main()

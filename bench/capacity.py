"""Capacity on paper: Cassandra's CPU per stored vector, by similarity and RF.

    python bench/capacity.py [--vectors 1000] [--concurrency 16]
                             [--similarities dot_product,euclidean,cosine]
                             [--graphs 100x16]

Three nodes of their own (127.0.0.21-23, state in KV_STATE_DIR/capacity; the
shared dev node is never touched, and the nodes are stopped at the end). For
each similarity and replication factor it writes fresh 1536-dim vectors
straight through the driver (the service adds no Cassandra work) and reads the
CPU that the three Cassandra processes spent, from /proc, including the flush
that builds the on-disk vector index. CPU per vector per replica is what a
node spends; it does not depend on how many nodes share this machine's cores,
which raw vectors/s here would.

--graphs takes SAI graph build options as BEAMxCONNECTIONS
(construction_beam_width x maximum_node_connections; 100x16 is Cassandra's
stock graph, 100x8 ours: docs/index-options.md), so the stock and the chosen
options are measured side by side in one run.
"""

from __future__ import annotations

import argparse
import shutil
import time
import uuid

import numpy as np
from cassandra import ConsistencyLevel
from cassandra.cluster import Cluster
from cassandra.concurrent import execute_concurrent_with_args

from _common import cpu_times
from _results import table, write_summary
from killrvideo_reco.config import Settings
from killrvideo_reco.devnode import DevCluster, DevClusterConfig

DIM = 1536
FIRST = "127.0.0.21"
STOCK = (100, 16)


def parse_graphs(text: str) -> list[tuple[int, int]]:
    return [(int(b), int(c)) for b, c in (item.lower().split("x") for item in text.split(","))]


def jvm_cpu(cluster: DevCluster) -> float:
    total = 0.0
    for status in cluster.status():
        assert status.pid is not None, f"{status.name} is not running"
        user, system = cpu_times(status.pid)
        total += user + system
    return total


def flush_all(cluster: DevCluster, keyspace: str) -> None:
    for node in range(1, len(cluster.layouts) + 1):
        cluster.nodetool("flush", keyspace, node=node, timeout_s=600)


def measure(
    session: object, cluster: DevCluster, *, similarity: str, rf: int, lwt: bool, n: int,
    concurrency: int, rng: np.random.Generator, graph: tuple[int, int] = STOCK,
) -> dict[str, float]:  # fmt: skip
    beam, conn = graph
    ks = f"cap_{similarity[:3]}_rf{rf}_{'lwt' if lwt else 'plain'}_g{beam}x{conn}"
    options = f"'similarity_function': '{similarity}'"
    if graph != STOCK:  # stock values are left out: a stock cluster refuses any
        options += f", 'construction_beam_width': '{beam}', 'maximum_node_connections': '{conn}'"
    run = session.execute  # type: ignore[attr-defined]
    run(f"DROP KEYSPACE IF EXISTS {ks}", timeout=300)
    run(
        f"CREATE KEYSPACE {ks} WITH replication = "
        f"{{'class': 'SimpleStrategy', 'replication_factor': {rf}}}",
        timeout=60,
    )
    run(f"CREATE TABLE {ks}.videos (videoid uuid PRIMARY KEY, name text, v vector<float, {DIM}>)")
    run(
        f"CREATE CUSTOM INDEX ON {ks}.videos (v) USING 'StorageAttachedIndex' "
        f"WITH OPTIONS = {{{options}}}",
        timeout=120,
    )
    ids = [uuid.uuid4() for _ in range(n)]
    insert = session.prepare(f"INSERT INTO {ks}.videos (videoid, name) VALUES (?, ?)")  # type: ignore[attr-defined]
    insert.consistency_level = ConsistencyLevel.QUORUM
    execute_concurrent_with_args(session, insert, [(i, "v") for i in ids], concurrency=64)
    flush_all(cluster, ks)  # the rows' own flush is not the vectors' cost
    cql = f"UPDATE {ks}.videos SET v = ? WHERE videoid = ?" + (" IF EXISTS" if lwt else "")
    write = session.prepare(cql)  # type: ignore[attr-defined]
    write.consistency_level = ConsistencyLevel.QUORUM
    write.serial_consistency_level = ConsistencyLevel.SERIAL
    vectors = rng.standard_normal((n, DIM)).astype(np.float32)
    args = [(vectors[i].tolist(), ids[i]) for i in range(n)]
    cpu0, t0 = jvm_cpu(cluster), time.monotonic()
    results = execute_concurrent_with_args(
        session, write, args, concurrency=concurrency, raise_on_first_error=False
    )
    wall = time.monotonic() - t0
    cpu_write = jvm_cpu(cluster) - cpu0
    failed = sum(1 for ok, _ in results if not ok)
    flush_all(cluster, ks)
    cpu_all = jvm_cpu(cluster) - cpu0
    run(f"DROP KEYSPACE {ks}", timeout=300)
    replicas = n * rf
    return {
        "vectors_per_s": n / wall,
        "cpu_ms_per_replica_write": 1000 * cpu_write / replicas,
        "cpu_ms_per_replica_total": 1000 * cpu_all / replicas,
        "failed": failed,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--vectors", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--similarities", default="dot_product,euclidean,cosine")
    parser.add_argument("--graphs", type=parse_graphs, default=[STOCK])
    args = parser.parse_args()
    state = Settings().state_dir / "capacity"
    cluster = DevCluster(DevClusterConfig(nodes=3, first_address=FIRST, state_dir=state))
    cluster.stop(timeout_s=60)
    shutil.rmtree(state / "cluster", ignore_errors=True)
    cluster.start(timeout_s=600)
    driver = Cluster(cluster.contact_points, protocol_version=5)
    try:
        session = driver.connect()
        rng = np.random.default_rng(5)
        rows = []
        # The first writes pay for the JVMs' JIT compilation: a discarded run first.
        measure(
            session, cluster, similarity="cosine", rf=3, lwt=True, n=args.vectors // 2,
            concurrency=args.concurrency, rng=rng,
        )  # fmt: skip
        # Plain and IF EXISTS side by side, per similarity and RF: their ratio is Paxos.
        plan = [
            (s, rf, lwt, g)
            for s in args.similarities.split(",")
            for rf in (1, 3)
            for lwt in (False, True)
            for g in args.graphs
        ]
        for similarity, rf, lwt, graph in plan:
            r = measure(
                session, cluster, similarity=similarity, rf=rf, lwt=lwt, n=args.vectors,
                concurrency=args.concurrency, rng=rng, graph=graph,
            )  # fmt: skip
            rows.append((similarity, rf, lwt, graph, r))
            print(
                f"{similarity:<12} RF={rf} {'IF EXISTS' if lwt else 'plain    '} "
                f"graph {graph[0]}/{graph[1]} "
                f"{r['vectors_per_s']:7.1f} vectors/s on this machine, "
                f"CPU per vector per replica {r['cpu_ms_per_replica_write']:6.2f} ms writing, "
                f"{r['cpu_ms_per_replica_total']:6.2f} ms with flush, failed {r['failed']:.0f}",
                flush=True,
            )
    finally:
        driver.shutdown()
        for status in cluster.stop(timeout_s=120):
            print(f"{status.name} {status.state}")
    write_summary(
        "capacity",
        title="Cassandra's CPU per stored vector, per replica (3 local nodes)",
        tables=[
            table(
                [
                    "similarity",
                    "RF",
                    "statement",
                    "graph (beam / connections)",
                    "vectors/s on this machine",
                    "CPU ms per vector per replica, writing",
                    "with flush",
                    "failed",
                ],
                [
                    [
                        sim,
                        rf,
                        "IF EXISTS" if lwt else "plain UPDATE",
                        f"{graph[0]} / {graph[1]}",
                        r["vectors_per_s"],
                        r["cpu_ms_per_replica_write"],
                        r["cpu_ms_per_replica_total"],
                        r["failed"],
                    ]
                    for sim, rf, lwt, graph, r in rows
                ],
            )
        ],
        notes=[
            f"{args.vectors} fresh {DIM}-dim vectors per line after a discarded warm-up run, "
            f"{args.concurrency} in flight, writes at QUORUM (serial SERIAL)"
        ],
    )


if __name__ == "__main__":
    main()

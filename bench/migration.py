"""Two ways to fill a new model's vector column, timed on the same node.

1. indexed: the column has its SAI index first; every write indexes its vector.
2. index after: the writes go to an unindexed column, then CREATE INDEX builds
   it over the stored vectors; done when the index is queryable.

The indexed way is queryable at once from the memtable, but its flush must
still build the on-disk index, so both are timed until the index is on disk.

Both write the same fresh vectors with the same concurrency, into their own
new column of one table, and report wall time and Cassandra's CPU seconds.
Run it with the node up: `python bench/migration.py --vectors 5000 --dimension 384`.
"""

from __future__ import annotations

import argparse
import json
import secrets
import time
from pathlib import Path

import numpy as np

from _common import drop_keyspace, nodetool
from killrvideo_reco.config import Settings
from killrvideo_reco.storage import CassandraStore

RESULTS = Path(__file__).with_name("results")


def cassandra_cpu_s() -> float:
    """CPU seconds of the local CassandraDaemon process(es)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if b"CassandraDaemon" in stat.read_bytes():
                fields = stat.with_name("stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / 100
        except OSError:
            continue
    return total


def wait_queryable(store: CassandraStore, keyspace: str, index: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rows = store.schema.execute(
            "SELECT is_queryable, is_building FROM system_views.sai_column_indexes "
            "WHERE keyspace_name = %s AND index_name = %s ALLOW FILTERING",
            (keyspace, index),
        )
        if rows and rows[0][0] and not rows[0][1]:
            return
        time.sleep(0.05)
    raise TimeoutError(f"{index} not queryable after {timeout_s} s")


def fill(store: CassandraStore, table: str, column: str, ids: list, vectors: np.ndarray) -> None:
    from cassandra.concurrent import execute_concurrent_with_args

    stmt = store._session.prepare(f"UPDATE {table} SET {column} = ? WHERE videoid = ?")
    rows = [(v.tolist(), vid) for v, vid in zip(vectors, ids, strict=True)]
    for ok, result in execute_concurrent_with_args(store._session, stmt, rows, concurrency=8):
        if not ok:
            raise result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=int, default=5000)
    parser.add_argument("--dimension", type=int, default=384)
    args = parser.parse_args()
    keyspace = f"kv_bench_mig_{secrets.token_hex(3)}"
    store = CassandraStore.open(Settings(keyspace=keyspace))
    rng = np.random.default_rng(7)
    try:
        store.schema.execute(
            f"CREATE KEYSPACE {keyspace} WITH replication = "
            "{'class': 'SimpleStrategy', 'replication_factor': 1}"
        )
        table = f"{keyspace}.videos"
        store.schema.execute(
            f"CREATE TABLE {table} (videoid uuid PRIMARY KEY, name text, "
            f"a vector<float, {args.dimension}>, b vector<float, {args.dimension}>)"
        )
        import uuid

        ids = [uuid.uuid4() for _ in range(args.vectors)]
        results = {}
        for column, index_first in (("a", True), ("b", False)):
            vectors = rng.standard_normal((args.vectors, args.dimension)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            index = f"mig_{column}_idx"
            ddl = (
                f"CREATE CUSTOM INDEX {index} ON {table}({column}) USING 'StorageAttachedIndex' "
                "WITH OPTIONS = {'similarity_function': 'COSINE'}"
            )
            cpu0, t0 = cassandra_cpu_s(), time.perf_counter()
            if index_first:
                store.schema.execute(ddl)
                wait_queryable(store, keyspace, index, 60)
            fill(store, table, column, ids, vectors)
            written = time.perf_counter() - t0
            if index_first:
                # Queryable already (memtable index), but the flush still has to
                # build the on-disk index: count it, or this way looks too cheap.
                queryable = time.perf_counter() - t0
                nodetool("flush", keyspace, "videos")
            else:
                store.schema.execute(ddl)
                wait_queryable(store, keyspace, index, 1800)
            wall = time.perf_counter() - t0
            name = "indexed column" if index_first else "index afterwards"
            results[name] = {
                "write_s": round(written, 2),
                "queryable_s": round(queryable if index_first else wall, 2),
                "until_on_disk_s": round(wall, 2),
                "vectors_per_s": round(args.vectors / wall, 1),
                "cassandra_cpu_s": round(cassandra_cpu_s() - cpu0, 1),
            }
            print(
                f"{name:18} writes {written:6.1f} s, queryable after {results[name]['queryable_s']:6.1f} s, "
                f"indexed on disk after {wall:6.1f} s "
                f"= {args.vectors / wall:7.1f} vectors/s, Cassandra CPU {results[name]['cassandra_cpu_s']:6.1f} s"
            )
        first, after = results["indexed column"], results["index afterwards"]
        print(
            f"index afterwards / indexed column, time until indexed on disk: "
            f"{after['until_on_disk_s'] / first['until_on_disk_s']:.2f}x"
        )
        RESULTS.mkdir(exist_ok=True)
        out = RESULTS / f"migration-{args.vectors}x{args.dimension}.json"
        out.write_text(
            json.dumps({"vectors": args.vectors, "dimension": args.dimension, **results}, indent=2)
        )
        print(f"wrote {out}")
    finally:
        drop_keyspace(store, keyspace)
        store.close()


if __name__ == "__main__":
    main()

"""ANN recall and latency of the related-videos query, against exact numpy search.

    python bench/recall.py [--vectors 20000] [--queries 200] [--dimension 1536]

For each similarity function the schema offers, it loads clustered unit vectors
(uniform random vectors have no neighbourhood structure, so their recall means
nothing), then asks for the related videos of a sample of them through the service's own
read path (the stored vector, then `ORDER BY content_features ANN OF ? LIMIT n`
through the SAI index, n = 10 x overfetch + 1, the best 10 by exact score, the
video itself dropped) and compares with the exact
top-10 computed with numpy over the same stored float32 vectors. It reports
recall@10 and p50/p99 query latency twice: right after loading (the vectors are
in the memtable index) and after a flush and a major compaction (the on-disk
index is built). Queries run while no writes are running.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import time
import uuid
from pathlib import Path

import numpy as np

from _common import drop_keyspace, nodetool
from killrvideo_reco.config import Settings
from killrvideo_reco.domain.vectors import Similarity, VectorSpec, pack_vector
from killrvideo_reco.domain.videos import Video
from killrvideo_reco.errors import StorageUnavailable
from killrvideo_reco.storage import CassandraStore

RESULTS = Path(__file__).resolve().parent / "results"
K = 10


def clustered(rng: np.random.Generator, n: int, dim: int, clusters: int) -> np.ndarray:
    centres = rng.standard_normal((clusters, dim))
    points = centres[rng.integers(0, clusters, n)] + 0.35 * rng.standard_normal((n, dim))
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


def exact_top(
    vectors: np.ndarray, query: np.ndarray, similarity: Similarity, k: int = K
) -> np.ndarray:
    """The exact k nearest, over the values as stored (float32)."""
    v = vectors.astype(np.float32).astype(np.float64)
    q = query.astype(np.float32).astype(np.float64)
    if similarity is Similarity.EUCLIDEAN:
        score = -((v - q) ** 2).sum(axis=1)
    elif similarity is Similarity.COSINE:
        score = (v @ q) / (np.linalg.norm(v, axis=1) * np.linalg.norm(q))
    else:
        score = v @ q
    return np.argsort(-score)[:k]


async def load(
    store: CassandraStore, spec: VectorSpec, ids: list[uuid.UUID], vectors: np.ndarray
) -> float:
    queue = iter(range(len(ids)))
    retries: list[int] = []
    t0 = time.perf_counter()

    async def worker() -> None:
        for i in queue:
            packed = pack_vector(vectors[i].tolist(), spec)
            for attempt in range(10):  # as a pipeline would: the write is idempotent
                try:
                    await store.writer.set_content_features(ids[i], packed)
                    break
                except StorageUnavailable:
                    retries.append(i)
                    await asyncio.sleep(0.2 * 2**attempt)
            else:
                raise SystemExit(f"vector {i} could not be written after 10 tries")

    await asyncio.gather(*(worker() for _ in range(8)))
    if retries:
        print(f"({len(retries)} writes retried after a timeout or overload)", flush=True)
    return len(ids) / (time.perf_counter() - t0)


def measure(
    store: CassandraStore,
    ids: list[uuid.UUID],
    vectors: np.ndarray,
    sample: np.ndarray,
    similarity: Similarity,
    overfetch: int,
) -> dict[str, float]:
    """Recall@10 and latency of the related-videos read path itself (store.related).

    That is what GET /related runs: read the video's stored vector, then the
    prepared ANN query for 10 x ``overfetch`` + 1 candidates, the best 10 by
    exact score, the video itself dropped. The exact answer is the top 10 of
    the other stored vectors, by numpy.
    """
    index_of = {vid: i for i, vid in enumerate(ids)}

    async def run() -> tuple[list[float], list[float]]:
        recalls, latencies = [], []
        for q in sample:
            t0 = time.perf_counter()
            items = await store.related.nearest(ids[q], limit=K, overfetch=overfetch)
            latencies.append((time.perf_counter() - t0) * 1000)
            found = {index_of[item.video_id] for item in items}
            exact = [
                i for i in exact_top(vectors, vectors[q], similarity, K + 1).tolist() if i != q
            ][:K]
            recalls.append(len(found & set(exact)) / K)
        return recalls, latencies

    recalls, latencies = asyncio.run(run())
    lat = np.asarray(latencies)
    return {
        "overfetch": overfetch,
        "recall_at_10": float(np.mean(recalls)),
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vectors", type=int, default=20000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--dimension", type=int, default=1536)
    ap.add_argument(
        "--similarity",
        action="append",
        choices=[s.value for s in Similarity],
        help="only these (repeat); default: every function the schema offers",
    )
    ap.add_argument(
        "--overfetch",
        type=lambda text: [int(f) for f in text.split(",")],
        default=[1, 3],
        help="candidates asked per video wanted, compared (default 1,3: the index's own "
        "top 10, and the service's default)",
    )
    args = ap.parse_args()
    similarities = [Similarity(s) for s in args.similarity] if args.similarity else list(Similarity)
    rng = np.random.default_rng(2026)
    vectors = clustered(rng, args.vectors, args.dimension, clusters=max(20, args.vectors // 100))
    sample = rng.choice(args.vectors, size=min(args.queries, args.vectors), replace=False)
    results = []
    for similarity in similarities:
        keyspace = f"kv_recall_{secrets.token_hex(3)}"
        store = CassandraStore.open(
            Settings(keyspace=keyspace, limit_mode="fixed", max_in_flight=64, request_timeout_s=30)
        )
        try:
            spec = store.schema.apply(
                dimension=args.dimension, similarity=similarity, replication_factor=1
            )
            store.load_schema()
            videos = [Video(name=f"recall {i}") for i in range(args.vectors)]
            store.videos.insert(videos, concurrency=64)
            ids = [v.videoid for v in videos]
            rate = asyncio.run(load(store, spec, ids, vectors))
            fresh = [measure(store, ids, vectors, sample, similarity, f) for f in args.overfetch]
            t0 = time.perf_counter()
            nodetool("flush", keyspace, "videos")
            flushed_s = time.perf_counter() - t0
            nodetool("compact", keyspace, "videos")
            built_s = time.perf_counter() - t0
            print(
                f"{similarity.value}: flush {flushed_s:.0f} s, flush+compact {built_s:.0f} s",
                flush=True,
            )
            on_disk = [measure(store, ids, vectors, sample, similarity, f) for f in args.overfetch]
        finally:
            drop_keyspace(store, keyspace)
            store.close()
        for phase, measured in (("memtable", fresh), ("on-disk", on_disk)):
            for m in measured:
                row = {
                    "similarity": similarity.value,
                    "phase": phase,
                    "vectors": args.vectors,
                    "load_per_s": rate,
                    "flush_compact_s": built_s,
                    **m,
                }
                results.append(row)
                print(
                    f"{similarity.value:<12}{phase:<9} overfetch {m['overfetch']:>2}  "
                    f"recall@10={m['recall_at_10']:.3f}  p50={m['p50_ms']:6.1f} ms  "
                    f"p99={m['p99_ms']:6.1f} ms  (loaded at {rate:.0f}/s; "
                    f"flush+compact {built_s:.0f} s)",
                    flush=True,
                )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"recall-{args.vectors}.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

"""`make bench`: the service against a raw-driver ceiling and a naive endpoint.

One run, one node, one machine. For each similarity (cosine, dot_product) it
creates a fresh keyspace, then at each concurrency level measures:

- ceiling: the same ingest (LWT UPDATE of pre-packed float32) done directly
  with the driver, concurrent, no HTTP;
- service: `kv-reco serve` under wrk (bench/ingest.lua), a fresh random unit
  vector in every request;
- naive: bench/naive_app.py (FastAPI + pydantic list[float], driver default
  binding, SELECT then UPDATE) under the same wrk script;

then an overload run of the service at three times its peak concurrency, and
the ceiling on a table without the vector index. It prints a table and the
ratios, and writes bench/results/bench.json and bench/results/bench.png.

Environment: BENCH_DURATION (seconds per run, default 8), BENCH_LEVELS
(default "1,4,16,64"), BENCH_TABLES (default "cosine,dot_product,none": the
indexes to measure, none being the table without one). The service takes its
KV_* settings from the environment, so a run can compare KV_MAX_IN_FLIGHT or
KV_QUEUE_TIMEOUT_MS values. BENCH_VARIANT="KV_X=a KV_Y=b" adds a second
service with those settings, which takes its turn at each level right after
the first: two configurations compared in one run.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from _common import cpu_times, drop_keyspace, free_port
from _results import table as results_table
from _results import write_summary
from killrvideo_reco.auth import CREATOR, mint_token
from killrvideo_reco.config import Settings
from killrvideo_reco.domain.vectors import Similarity, VectorSpec, pack_vector
from killrvideo_reco.domain.videos import Video
from killrvideo_reco.storage import CassandraStore

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
BIN = Path(sys.executable).parent
DIM = 1536
DURATION = float(os.environ.get("BENCH_DURATION", "8"))
LEVELS = [int(x) for x in os.environ.get("BENCH_LEVELS", "1,4,16,64").split(",")]
TABLES = os.environ.get("BENCH_TABLES", "cosine,dot_product,none").split(",")
VARIANT = dict(x.split("=", 1) for x in os.environ.get("BENCH_VARIANT", "").split())
VIDEOS = 4000


@dataclass
class Run:
    impl: str
    similarity: str
    concurrency: int
    ingests_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    cpu_us_per_ingest: float | None = None
    peak_rss_mb: float | None = None
    accepted: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    timeouts: int = 0
    accepted_p99_ms: float | None = None  # from the service's own histogram
    reused_vectors: int = 0  # requests past the pool of fresh bodies (should be 0)
    limit_at_end: float | None = None  # the service's in-flight limit when the run ended


# -- processes ------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and its descendants (the workers of `serve --workers N`)."""
    total = sum(cpu_times(pid))
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return total
    return total + sum(cpu_seconds(int(child)) for child in children)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Server:
    def __init__(self, cmd: list[str], env: dict[str, str], port: int) -> None:
        self.port = port
        self.proc = subprocess.Popen(
            cmd, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    raise SystemExit(f"{cmd} exited with {self.proc.returncode}") from None
                time.sleep(0.2)
        raise SystemExit(f"{cmd} did not listen on {port}")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def wrk(
    port: int, concurrency: int, *, ids_file: Path, token: str, duration: float, pool: int
) -> dict[str, Any]:
    env = {
        **os.environ,
        "BENCH_IDS": str(ids_file),
        "BENCH_TOKEN": token,
        "BENCH_DIM": str(DIM),
        "BENCH_POOL": str(pool),
    }
    cmd = [
        "wrk", "-t1", f"-c{concurrency}", f"-d{duration:.0f}s", "--timeout", "10s",
        "-s", str(ROOT / "ingest.lua"), f"http://127.0.0.1:{port}",
    ]  # fmt: skip
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("BENCH_JSON "))
    return json.loads(line.removeprefix("BENCH_JSON "))  # type: ignore[no-any-return]


def accepted_histogram(port: int) -> dict[float, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    buckets = {}
    for line in text.splitlines():
        if line.startswith("kv_reco_ingest_accepted_seconds_bucket"):
            le = line.split('le="')[1].split('"')[0]
            buckets[float("inf") if le == "+Inf" else float(le)] = float(line.rsplit(" ", 1)[1])
    return buckets


def write_limit(port: int) -> float | None:
    """The service's in-flight limit now (adaptive or fixed), from /metrics."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith("kv_reco_write_limit "):
            return float(line.split()[1])
    return None


def histogram_p99_ms(before: dict[float, float], after: dict[float, float]) -> float | None:
    counts = {le: after[le] - before.get(le, 0.0) for le in after}
    total = counts.get(float("inf"), 0.0)
    if total == 0:
        return None
    for le in sorted(counts):
        if counts[le] >= 0.99 * total:
            return le * 1000  # upper bound of the bucket holding the 99th percentile
    return None


def http_run(
    impl: str,
    spec: VectorSpec,
    server: Server,
    c: int,
    *,
    ids_file: Path,
    token: str,
    duration: float,
    pool: int,
) -> Run:
    ours = impl in ("service", "variant")
    hist0 = accepted_histogram(server.port) if ours else {}
    cpu0 = cpu_seconds(server.proc.pid)
    result = wrk(server.port, c, ids_file=ids_file, token=token, duration=duration, pool=pool)
    cpu = cpu_seconds(server.proc.pid) - cpu0
    accepted = int(result["statuses"].get("202", 0))
    run = Run(
        impl=impl,
        similarity=spec.similarity.value,
        concurrency=c,
        ingests_per_s=accepted / result["duration_s"],
        p50_ms=result["p50_ms"],
        p95_ms=result["p95_ms"],
        p99_ms=result["p99_ms"],
        cpu_us_per_ingest=cpu / accepted * 1e6 if accepted else None,
        peak_rss_mb=peak_rss_mb(server.proc.pid),
        accepted=accepted,
        statuses=result["statuses"],
        timeouts=result["timeouts"],
        reused_vectors=result["reused"],
    )
    if ours:
        run.accepted_p99_ms = histogram_p99_ms(hist0, accepted_histogram(server.port))
        run.limit_at_end = write_limit(server.port)
    return run


# -- the raw-driver ceiling -------------------------------------------------------------------


def unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.uniform(-1, 1, (n, DIM))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


async def ceiling(
    store: CassandraStore, spec: VectorSpec, ids: list[Any], c: int, duration: float, label: str
) -> Run:
    rng = np.random.default_rng()
    latencies: list[float] = []
    deadline = time.perf_counter() + duration
    counter = iter(range(10**9))

    async def worker() -> None:
        while time.perf_counter() < deadline:
            i = next(counter)
            packed = pack_vector(unit_vectors(rng, 1)[0].tolist(), spec)
            t0 = time.perf_counter()
            await store.writer.set_content_features(ids[i % len(ids)], packed)
            latencies.append((time.perf_counter() - t0) * 1000)

    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(c)))
    elapsed = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    a = np.asarray(latencies)
    return Run(
        impl=label,
        similarity=spec.similarity.value,
        concurrency=c,
        ingests_per_s=len(a) / elapsed,
        p50_ms=float(np.percentile(a, 50)),
        p95_ms=float(np.percentile(a, 95)),
        p99_ms=float(np.percentile(a, 99)),
        cpu_us_per_ingest=cpu / len(a) * 1e6,
        accepted=len(a),
        statuses={"202": len(a)},
    )


# -- the batch endpoint -----------------------------------------------------------------------

BATCH_SIZE, BATCH_IN_FLIGHT = 100, 2


async def batch_run(port: int, token: str, ids: list[Any], duration: float, similarity: str) -> Run:
    """Fresh vectors through /ingest/batch with the project's own client, for ``duration``."""
    from killrvideo_reco.client import AsyncRecoClient, Item

    rng = np.random.default_rng()
    latencies: list[float] = []
    accepted = 0
    deadline = time.perf_counter() + duration
    counter = iter(range(10**9))

    async with AsyncRecoClient(f"http://127.0.0.1:{port}", token) as client:

        async def worker() -> None:
            nonlocal accepted
            while time.perf_counter() < deadline:
                vectors = unit_vectors(rng, BATCH_SIZE).astype(np.float32)
                items = [Item(str(ids[next(counter) % len(ids)]), v) for v in vectors]
                t0 = time.perf_counter()
                results = await client.ingest_batch(items)
                latencies.append((time.perf_counter() - t0) * 1000)
                accepted += sum(r.accepted for r in results)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(BATCH_IN_FLIGHT)))
        elapsed = time.perf_counter() - t0
    a = np.asarray(latencies)
    return Run(
        impl="service-batch",
        similarity=similarity,
        concurrency=BATCH_IN_FLIGHT,
        ingests_per_s=accepted / elapsed,
        p50_ms=float(np.percentile(a, 50)),
        p95_ms=float(np.percentile(a, 95)),
        p99_ms=float(np.percentile(a, 99)),
        accepted=accepted,
        statuses={"202": accepted},
    )


# -- orchestration ----------------------------------------------------------------------------


def fresh_store(base: Settings, keyspace: str, similarity: Similarity | None) -> CassandraStore:
    settings = base.model_copy(
        update={"keyspace": keyspace, "limit_mode": "fixed", "max_in_flight": 1024}
    )
    store = CassandraStore.open(settings)
    store.schema.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")
    if similarity is None:  # the table alone, no vector index
        store.schema.apply(dimension=DIM, similarity=Similarity.COSINE, replication_factor=1)
        store.schema.execute(f"DROP INDEX {keyspace}.videos_content_features_idx")
        store.writer.prepare(VectorSpec(DIM, Similarity.EUCLIDEAN))
    else:
        store.schema.apply(dimension=DIM, similarity=similarity, replication_factor=1)
        store.load_schema()
    return store


def seed_videos(store: CassandraStore, ids_file: Path) -> list[Any]:
    videos = [Video(name=f"bench {i}") for i in range(VIDEOS)]
    store.videos.insert(videos, concurrency=64)
    ids_file.write_text("\n".join(str(v.videoid) for v in videos) + "\n")
    return [v.videoid for v in videos]


def bench_similarity(base: Settings, similarity: Similarity, tmp: Path) -> list[Run]:
    """Ceiling, service and naive, level by level, on one fresh table.

    The three take turns at each level rather than one after the other: the
    table grows through the run and its flushes (which build the on-disk vector
    index) land on whoever is running, so turns share that cost fairly.
    """
    keyspace = f"kv_bench_{similarity.value}"
    store = fresh_store(base, keyspace, similarity)
    runs: list[Run] = []
    service = naive = variant = None
    try:
        spec = store.spec
        assert spec is not None
        ids_file = tmp / f"{keyspace}.ids"
        ids = seed_videos(store, ids_file)
        token = mint_token(base, roles=[CREATOR], ttl_s=3600)
        env = {"KV_KEYSPACE": keyspace, "KV_JWT_SECRET": base.jwt_secret.get_secret_value()}  # type: ignore[union-attr]
        # A probe of the ceiling sizes the pools of fresh bodies: enough for a run
        # at its rate, with room for the refused requests of high levels.
        probe = asyncio.run(ceiling(store, spec, ids, 4, 3, "probe"))
        pool = int(probe.ingests_per_s * DURATION * 4) + 100
        port = free_port()
        service = Server([str(BIN / "kv-reco"), "serve", "--port", str(port)], env, port)
        naive_port = free_port()
        naive_cmd = [
            str(BIN / "uvicorn"), "naive_app:app", "--app-dir", str(ROOT),
            "--port", str(naive_port), "--log-level", "warning",
        ]  # fmt: skip
        naive = Server(naive_cmd, env, naive_port)
        if VARIANT:
            variant_port = free_port()
            variant_cmd = [str(BIN / "kv-reco"), "serve", "--port", str(variant_port)]
            variant = Server(variant_cmd, {**env, **VARIANT}, variant_port)
        http = {"ids_file": ids_file, "token": token, "duration": DURATION, "pool": pool}
        for c in LEVELS:
            runs.append(asyncio.run(ceiling(store, spec, ids, c, DURATION, "ceiling")))
            report(runs[-1])
            runs.append(http_run("service", spec, service, c, **http))  # type: ignore[arg-type]
            report(runs[-1])
            if variant is not None:
                runs.append(http_run("variant", spec, variant, c, **http))  # type: ignore[arg-type]
                report(runs[-1])
            runs.append(http_run("naive", spec, naive, c, **http))  # type: ignore[arg-type]
            report(runs[-1])
        peak = max((r for r in runs if r.impl == "service"), key=lambda r: r.ingests_per_s)
        overload = {**http, "pool": 2 * pool}  # the overload run is refused most of the time
        level = 3 * max(peak.concurrency, 16)
        over = http_run("service", spec, service, level, **overload)  # type: ignore[arg-type]
        over.impl = "service-overload"
        runs.append(over)
        report(over)
        batch = asyncio.run(batch_run(port, token, ids, DURATION, similarity.value))
        runs.append(batch)
        report(batch)
    finally:
        for server in (service, naive, variant):
            if server is not None:
                server.stop()
        drop_keyspace(store, keyspace)
        store.close()
    return runs


def bench_no_index(base: Settings, tmp: Path) -> list[Run]:
    keyspace = "kv_bench_noindex"
    store = fresh_store(base, keyspace, None)
    try:
        ids = seed_videos(store, tmp / f"{keyspace}.ids")
        spec = VectorSpec(DIM, Similarity.EUCLIDEAN)  # no zero rule; vectors are unit anyway
        runs = [
            asyncio.run(ceiling(store, spec, ids, c, DURATION, "ceiling-no-index")) for c in LEVELS
        ]
        for r in runs:
            report(r)
        return runs
    finally:
        drop_keyspace(store, keyspace)
        store.close()


def report(r: Run) -> None:
    cpu = f"{r.cpu_us_per_ingest:7.0f}" if r.cpu_us_per_ingest else "      -"
    rss = f"{r.peak_rss_mb:6.0f}" if r.peak_rss_mb else "     -"
    other = {k: v for k, v in r.statuses.items() if k != "202"}
    extra = f" other={other}" if other else ""
    extra += f" timeouts={r.timeouts}" if r.timeouts else ""
    extra += f" REUSED-VECTORS={r.reused_vectors}" if r.reused_vectors else ""
    extra += f" accepted_p99<={r.accepted_p99_ms:.0f}ms" if r.accepted_p99_ms else ""
    extra += f" limit={r.limit_at_end:.0f}" if r.limit_at_end else ""
    print(
        f"{r.impl:<17}{r.similarity:<12}c={r.concurrency:<4}{r.ingests_per_s:8.1f}/s "
        f"p50={r.p50_ms:7.1f} p95={r.p95_ms:7.1f} p99={r.p99_ms:7.1f} ms  cpu/ingest={cpu} µs  rss={rss} MB{extra}",
        flush=True,
    )


def variant_ratios(by: dict[tuple[str, str, int], Run]) -> list[str]:
    lines = []
    named = " ".join(f"{k}={x}" for k, x in VARIANT.items())
    for sim in ("cosine", "dot_product"):
        for c in LEVELS:
            s, v, ceil = (by.get((i, sim, c)) for i in ("service", "variant", "ceiling"))
            if not (s and v and ceil):
                continue
            cpu = ""
            if s.cpu_us_per_ingest and v.cpu_us_per_ingest:
                cpu = (
                    f"  cpu/ingest variant/service={v.cpu_us_per_ingest / s.cpu_us_per_ingest:.2f}x"
                )
            lines.append(
                f"{sim:<12}c={c:<4}variant ({named}): "
                f"throughput variant/service={v.ingests_per_s / s.ingests_per_s:.2f}x "
                f"variant/ceiling={v.ingests_per_s / ceil.ingests_per_s:.2f}x{cpu}"
            )
    return lines


def ratios(runs: list[Run]) -> list[str]:
    lines = []
    by = {(r.impl, r.similarity, r.concurrency): r for r in runs}
    for sim in ("cosine", "dot_product"):
        for c in LEVELS:
            s, ceil, naive = (by.get((i, sim, c)) for i in ("service", "ceiling", "naive"))
            if not (s and ceil and naive):
                continue
            cpu = ""
            if s.cpu_us_per_ingest and ceil.cpu_us_per_ingest and naive.cpu_us_per_ingest:
                cpu = (
                    f"  cpu/ingest service/ceiling={s.cpu_us_per_ingest / ceil.cpu_us_per_ingest:.2f}x"
                    f" service/naive={s.cpu_us_per_ingest / naive.cpu_us_per_ingest:.2f}x"
                )
            lines.append(
                f"{sim:<12}c={c:<4}throughput service/ceiling={s.ingests_per_s / ceil.ingests_per_s:.2f}x"
                f" service/naive={s.ingests_per_s / max(naive.ingests_per_s, 1e-9):.2f}x{cpu}"
            )
    lines += variant_ratios(by)
    for sim in ("cosine", "dot_product"):
        batch = by.get(("service-batch", sim, BATCH_IN_FLIGHT))
        best = max(
            (r.ingests_per_s for r in runs if r.impl == "ceiling" and r.similarity == sim),
            default=0,
        )
        if batch and best:
            lines.append(
                f"{sim:<12}batch endpoint ({BATCH_SIZE} vectors x {BATCH_IN_FLIGHT} in flight): "
                f"{batch.ingests_per_s:.0f} vectors/s = {batch.ingests_per_s / best:.2f}x the best ceiling level"
            )
    return lines


def chart(runs: list[Run], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    series: dict[tuple[str, str], list[Run]] = {}
    for r in runs:
        if r.impl not in ("service-overload", "service-batch"):
            series.setdefault((r.impl, r.similarity), []).append(r)
    for (impl, sim), rs in sorted(series.items()):
        rs.sort(key=lambda r: r.concurrency)
        xs = [r.concurrency for r in rs]
        label = f"{impl} ({sim})"
        left.plot(xs, [r.ingests_per_s for r in rs], marker="o", label=label)
        right.plot(xs, [r.p99_ms for r in rs], marker="o", label=label)
    for ax, title, unit in ((left, "Throughput", "ingests/s"), (right, "p99 latency", "ms")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("concurrent requests")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=7)
    fig.suptitle("killrvideo-reco ingest, 1536-dim vectors, one Cassandra 5.0 node, 2 cores")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: run `make bench`, which says how to install it")
    RESULTS.mkdir(exist_ok=True)
    tmp = RESULTS / ".tmp"
    tmp.mkdir(exist_ok=True)
    base = Settings(jwt_secret=secrets.token_urlsafe(40))
    started = time.monotonic()
    runs: list[Run] = []
    for table in TABLES:
        if table == "none":
            runs += bench_no_index(base, tmp)
        else:
            runs += bench_similarity(base, Similarity(table), tmp)
    shutil.rmtree(tmp, ignore_errors=True)
    print("\nratios (same run, same node):")
    lines = ratios(runs)
    for line in lines:
        print("  " + line)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    payload = {
        "commit": commit,
        "duration_s_per_run": DURATION,
        "levels": LEVELS,
        "elapsed_s": round(time.monotonic() - started, 1),
        "runs": [asdict(r) for r in runs],
        "ratios": lines,
    }
    (RESULTS / "bench.json").write_text(json.dumps(payload, indent=2))
    chart(runs, RESULTS / "bench.png")
    write_summary(
        "run",
        title="Throughput under wrk: the service, the driver's ceiling and a naive endpoint",
        tables=[
            results_table(
                [
                    "implementation",
                    "similarity",
                    "concurrency",
                    "ingests/s",
                    "p50 ms",
                    "p99 ms",
                    "CPU µs per ingest",
                    "peak RSS MB",
                ],
                [
                    [
                        r.impl,
                        r.similarity,
                        r.concurrency,
                        r.ingests_per_s,
                        r.p50_ms,
                        r.p99_ms,
                        r.cpu_us_per_ingest or "-",
                        r.peak_rss_mb or "-",
                    ]
                    for r in runs
                ],
            )
        ],
        notes=[f"{DURATION} s per run, levels {LEVELS}", *lines],
    )
    print(
        f"\nwrote {RESULTS / 'bench.json'} and {RESULTS / 'bench.png'} (commit {commit}, {payload['elapsed_s']} s)"
    )


if __name__ == "__main__":
    main()

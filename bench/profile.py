"""Where the service's CPU goes under load: py-spy samples `kv-reco serve` while wrk drives it.

    python bench/profile.py [--concurrency 4] [--seconds 20]

py-spy leaves idle threads out (no ``--idle``): a thread blocked in
epoll_wait or a lock is not counted as busy. ``--native`` adds the C frames
(libev, uvloop, httptools), where the driver's and the loop's cost hides.

Same set-up as `make bench` (fresh keyspace, 1536-dim cosine, fresh vectors
per request). Prints the share of CPU samples by layer (our code, the HTTP
server, the web framework, msgspec, the event loop, the driver) and the top
functions by own time, and writes the collapsed stacks (flamegraph.pl and
speedscope read them) to bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

from _common import drop_keyspace, free_port
from killrvideo_reco.auth import CREATOR, mint_token
from killrvideo_reco.config import Settings
from killrvideo_reco.domain.vectors import Similarity
from run import (
    BIN,
    DIM,
    RESULTS,
    Server,
    ceiling,
    fresh_store,
    http_run,
    report,
    seed_videos,
)

# Layers, matched against a frame's file path, first match wins.
LAYERS = [
    ("our code: decode, validate, pack", ("killrvideo_reco/domain",)),
    ("our code: route, auth, store", ("killrvideo_reco/",)),
    ("msgspec / numpy", ("msgspec", "numpy")),
    ("uvicorn + httptools (HTTP)", ("uvicorn", "httptools", "h11")),
    ("starlette + fastapi (framework)", ("starlette", "fastapi", "pydantic", "anyio")),
    ("cassandra driver", ("cassandra/",)),
    ("prometheus metrics", ("prometheus_client",)),
    ("asyncio / uvloop event loop", ("asyncio", "uvloop")),
]


def layer_of(stack: list[str]) -> str:
    """The innermost frame that belongs to a known layer decides."""
    for frame in reversed(stack):
        for name, needles in LAYERS:
            if any(n in frame for n in needles):
                return name
    return "other (interpreter, stdlib)"


def summarise(raw: Path) -> list[str]:
    by_layer: Counter[str] = Counter()
    by_function: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack_text, _, count_text = line.rpartition(" ")
        if not stack_text:
            continue
        count = int(count_text)
        stack = stack_text.split(";")
        total += count
        by_layer[layer_of(stack)] += count
        by_function[stack[-1]] += count
    lines = [f"{total} samples"]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in by_layer.most_common()]
    lines.append("top functions by own time:")
    lines += [f"  {n / total:6.1%}  {name[:110]}" for name, n in by_function.most_common(15)]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument(
        "--native", action="store_true", help="py-spy --native: C frames (libev, uvloop) too"
    )
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    tmp = RESULTS / ".tmp"
    tmp.mkdir(exist_ok=True)
    base = Settings(jwt_secret=secrets.token_urlsafe(40))
    keyspace = "kv_bench_profile"
    store = fresh_store(base, keyspace, Similarity.COSINE)
    spec = store.spec
    assert spec is not None
    ids_file = tmp / f"{keyspace}.ids"
    ids = seed_videos(store, ids_file)
    best = asyncio.run(ceiling(store, spec, ids, args.concurrency, 5, "ceiling"))
    report(best)
    token = mint_token(base, roles=[CREATOR], ttl_s=3600)
    env = {"KV_KEYSPACE": keyspace, "KV_JWT_SECRET": base.jwt_secret.get_secret_value()}  # type: ignore[union-attr]
    raw = RESULTS / "profile.collapsed.txt"
    raw.unlink(missing_ok=True)  # a failed py-spy must not leave an old profile to summarise
    port = free_port()
    service = Server([str(BIN / "kv-reco"), "serve", "--port", str(port)], env, port)
    spy = subprocess.Popen(
        [str(BIN / "py-spy"), "record", "--pid", str(service.proc.pid), "--rate", "200",
         "--format", "raw", "--output", str(raw),
         # --native unwinds C stacks, which needs the process paused per sample.
         *(["--native"] if args.native else ["--nonblocking"])],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        pool = int(best.ingests_per_s * args.seconds * 3) + 100
        run = http_run(
            "service", spec, service, args.concurrency,
            ids_file=ids_file, token=token, duration=args.seconds, pool=pool,
        )  # fmt: skip
        report(run)
    finally:
        spy.send_signal(signal.SIGINT)
        spy.wait(60)
        service.stop()
        drop_keyspace(store, keyspace)
        store.close()
    lines = summarise(raw)
    print(f"\nservice CPU by layer, {DIM}-dim cosine, c={args.concurrency} (py-spy, {raw}):")
    for line in lines:
        print(line)
    (RESULTS / "profile.txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    os.chdir(Path(__file__).resolve().parent)
    sys.exit(main())

"""Service CPU per accepted ingest for several configurations, in one run, against the raw driver.

    python bench/cpu_options.py [--concurrency 4] [--seconds 8] [--rounds 2] \\
        'adaptive=' 'fixed=KV_LIMIT_MODE=fixed' 'two=WORKERS=2' ...

Each variant is ``name=KV_A=x KV_B=y`` (the service's environment on top of
the bench's; ``WORKERS=2`` runs it as ``serve --workers 2``). Same set-up as `make bench` (fresh keyspace, 1536-dim cosine,
fresh vectors per request). Rounds take turns: in each, the raw-driver client
(the same ``UPDATE … IF EXISTS``), then every variant, so that a table that
grows and a machine that others share weigh on all alike. Prints, per
variant, the CPU per accepted ingest and the goodput, and their ratios to the
raw driver's of the same round.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import sys
from pathlib import Path

from _common import drop_keyspace, free_port
from killrvideo_reco.auth import CREATOR, mint_token
from killrvideo_reco.config import Settings
from killrvideo_reco.domain.vectors import Similarity
from run import BIN, RESULTS, Server, ceiling, fresh_store, http_run, report, seed_videos


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1, help="`serve --workers` for all")
    parser.add_argument("variants", nargs="+", help="name=KV_A=x KV_B=y")
    args = parser.parse_args()
    variants = {}
    for text in args.variants:
        name, _, envs = text.partition("=")
        variants[name] = dict(x.split("=", 1) for x in envs.split())
    tmp = RESULTS / ".tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    base = Settings(jwt_secret=secrets.token_urlsafe(40))
    keyspace = "kv_bench_cpu"
    store = fresh_store(base, keyspace, Similarity.COSINE)
    spec = store.spec
    assert spec is not None
    ids_file = tmp / f"{keyspace}.ids"
    ids = seed_videos(store, ids_file)
    token = mint_token(base, roles=[CREATOR], ttl_s=3600)
    env = {"KV_KEYSPACE": keyspace, "KV_JWT_SECRET": base.jwt_secret.get_secret_value()}  # type: ignore[union-attr]
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    rate: dict[str, list[float]] = {name: [] for name in variants}
    c = args.concurrency
    try:
        for _ in range(args.rounds):
            raw = asyncio.run(ceiling(store, spec, ids, c, args.seconds, "ceiling"))
            report(raw)
            pool = int(raw.ingests_per_s * args.seconds * 4) + 200
            for name, extra in variants.items():
                port = free_port()
                cmd = [str(BIN / "kv-reco"), "serve", "--port", str(port)]
                extra = dict(extra)
                workers = int(extra.pop("WORKERS", args.workers))
                if workers > 1:
                    cmd += ["--workers", str(workers)]
                server = Server(cmd, {**env, **extra}, port)
                try:
                    run = http_run(
                        "service", spec, server, c,
                        ids_file=ids_file, token=token, duration=args.seconds, pool=pool,
                    )  # fmt: skip
                finally:
                    server.stop()
                run.impl = name[:16]
                report(run)
                if run.cpu_us_per_ingest and raw.cpu_us_per_ingest:
                    cpu[name].append(run.cpu_us_per_ingest / raw.cpu_us_per_ingest)
                    cpu[name + " µs"] = [*cpu.get(name + " µs", []), run.cpu_us_per_ingest]
                rate[name].append(run.ingests_per_s / raw.ingests_per_s)
    finally:
        drop_keyspace(store, keyspace)
        store.close()
    print(f"\nc={c}, {args.rounds} rounds of {args.seconds:g} s, median over rounds:")
    for name in variants:
        us = statistics.median(cpu.get(name + " µs", [float("nan")]))
        print(
            f"  {name:<20} cpu/ingest {us:6.0f} µs = "
            f"{statistics.median(cpu[name] or [float('nan')]):.2f}x raw driver   "
            f"goodput {statistics.median(rate[name]):.2f}x raw driver   ({variants[name]})"
        )


if __name__ == "__main__":
    os.chdir(Path(__file__).resolve().parent)
    sys.exit(main())
